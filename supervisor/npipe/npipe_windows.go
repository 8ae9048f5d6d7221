package npipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// bufSize is the size of each instance's in and out buffers.
const bufSize = 64 << 10

// ErrInUse is returned by Listen when the pipe name is held by another
// listener (another daemon).
var ErrInUse = errors.New("the pipe name is in use by another process")

// Addr is a pipe's name as a net.Addr.
type Addr string

func (a Addr) Network() string { return "pipe" }
func (a Addr) String() string  { return string(a) }

// DefaultSDDL is the security descriptor of a listener: full access for
// SYSTEM, the Administrators and the current process's user, nobody else,
// nothing inherited.
func DefaultSDDL() (string, error) {
	sid, err := CurrentUserSID()
	if err != nil {
		return "", err
	}
	return "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + sid + ")", nil
}

// CurrentUserSID is the user SID of the current process's token.
func CurrentUserSID() (string, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("read the process token's user: %w", err)
	}
	return u.User.Sid.String(), nil
}

// Listener accepts connections on a named pipe. Its methods may be called
// from any goroutine.
type Listener struct {
	name    string
	name16  *uint16
	sa      *windows.SecurityAttributes
	conns   chan accepted
	done    chan struct{}
	closeEv windows.Handle // set on Close: ends a pending ConnectNamedPipe
	once    sync.Once
	wg      sync.WaitGroup
}

type accepted struct {
	c   *Conn
	err error
}

// Listen creates the first instance of the pipe name with the security
// descriptor sddl ("" takes DefaultSDDL) and starts waiting for clients.
// A name already in use, by this process or another, is refused with
// ErrInUse.
func Listen(name, sddl string) (*Listener, error) {
	if !IsPipeName(name) {
		return nil, fmt.Errorf("%q is not a pipe name (use \\\\.\\pipe\\NAME)", name)
	}
	if sddl == "" {
		var err error
		if sddl, err = DefaultSDDL(); err != nil {
			return nil, err
		}
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("security descriptor %q: %w", sddl, err)
	}
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	// FILE_FLAG_FIRST_PIPE_INSTANCE refuses a name in use on Windows; wine
	// ignores it, so a listener that answers is looked for first.
	if inUse(name16) {
		return nil, fmt.Errorf("listen on %s: %w", name, ErrInUse)
	}
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("create an event: %w", err)
	}
	l := &Listener{
		name:    name,
		name16:  name16,
		sa:      &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd},
		conns:   make(chan accepted),
		done:    make(chan struct{}),
		closeEv: ev,
	}
	h, err := l.instance(true)
	if err != nil {
		windows.CloseHandle(ev)
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("listen on %s: %w", name, ErrInUse)
		}
		return nil, fmt.Errorf("listen on %s: %w", name, err)
	}
	l.wg.Add(1)
	go l.loop(h)
	return l, nil
}

// inUse reports whether a listener holds name: opening it as a client
// succeeds, finds every instance busy, or is refused.
func inUse(name16 *uint16) bool {
	h, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
		windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
	if err == nil {
		windows.CloseHandle(h)
		return true
	}
	return errors.Is(err, windows.ERROR_PIPE_BUSY) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
}

// instance creates one instance of the pipe, waiting for a client.
func (l *Listener) instance(first bool) (windows.Handle, error) {
	flags := uint32(windows.PIPE_ACCESS_DUPLEX | windows.FILE_FLAG_OVERLAPPED)
	if first {
		flags |= windows.FILE_FLAG_FIRST_PIPE_INSTANCE
	}
	mode := uint32(windows.PIPE_TYPE_BYTE | windows.PIPE_READMODE_BYTE | windows.PIPE_WAIT | windows.PIPE_REJECT_REMOTE_CLIENTS)
	return windows.CreateNamedPipe(l.name16, flags, mode, windows.PIPE_UNLIMITED_INSTANCES, bufSize, bufSize, 0, l.sa)
}

// loop connects one instance after the other: as soon as a client is
// connected, the next instance is made (so that clients find one waiting)
// and the connected one is handed to Accept.
func (l *Listener) loop(h windows.Handle) {
	defer l.wg.Done()
	for {
		err := l.connect(h)
		if errors.Is(err, net.ErrClosed) {
			windows.CloseHandle(h)
			return
		}
		var c *Conn
		if err == nil {
			c = newConn(h, l.name)
		} else {
			// The client went away before it was seen (ERROR_NO_DATA),
			// or the instance failed: drop it, make another.
			windows.CloseHandle(h)
		}
		if h, err = l.next(); err != nil {
			if c != nil {
				c.Close()
			}
			return
		}
		if c == nil {
			continue
		}
		select {
		case l.conns <- accepted{c: c}:
		case <-l.done:
			c.Close()
			windows.CloseHandle(h)
			return
		}
	}
}

// next makes a further instance, retrying while the system refuses
// (all instances busy, or out of resources) until Close.
func (l *Listener) next() (windows.Handle, error) {
	wait := 10 * time.Millisecond
	for {
		h, err := l.instance(false)
		if err == nil {
			return h, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return 0, net.ErrClosed
		}
		if wait < time.Second {
			wait *= 2
		}
	}
}

// connect waits for a client on h, or for Close (net.ErrClosed).
func (l *Listener) connect(h windows.Handle) error {
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	defer runtime.KeepAlive(ov)
	switch err := windows.ConnectNamedPipe(h, ov); {
	case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		return nil
	case !errors.Is(err, windows.ERROR_IO_PENDING):
		return err
	}
	r, err := windows.WaitForMultipleObjects([]windows.Handle{ev, l.closeEv}, false, windows.INFINITE)
	var n uint32
	if err == nil && r == windows.WAIT_OBJECT_0 {
		return windows.GetOverlappedResult(h, ov, &n, false)
	}
	// Closing (or the wait failed): cancel, and wait for the cancel to
	// land before ov goes away.
	windows.CancelIoEx(h, ov)
	if err := windows.GetOverlappedResult(h, ov, &n, true); err == nil {
		// A client came in as we cancelled: it is dropped with the
		// instance.
		windows.DisconnectNamedPipe(h)
	}
	return net.ErrClosed
}

// Accept waits for the next client.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.conns:
		if a.err != nil {
			return nil, a.err
		}
		return a.c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "pipe", Addr: Addr(l.name), Err: net.ErrClosed}
	}
}

// Close stops listening: a pending Accept returns, the waiting instance is
// closed, and Close returns once the listener's goroutine has ended.
// Connections already accepted stay open.
func (l *Listener) Close() error {
	first := false
	l.once.Do(func() {
		first = true
		close(l.done)
		windows.SetEvent(l.closeEv)
	})
	l.wg.Wait()
	if first {
		windows.CloseHandle(l.closeEv)
	}
	return nil
}

// Addr is the pipe's name.
func (l *Listener) Addr() net.Addr { return Addr(l.name) }

// Conn is one end of a pipe connection.
type Conn struct {
	f    *os.File
	h    windows.Handle
	name string
}

func newConn(h windows.Handle, name string) *Conn {
	// The handle is overlapped: os.NewFile puts it on the runtime's
	// completion port, so reads and writes park no thread and deadlines
	// work.
	return &Conn{f: os.NewFile(uintptr(h), name), h: h, name: name}
}

// Read reads from the pipe; the other end's closing reads as io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	return n, c.mapErr("read", err)
}

// Write writes to the pipe.
func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	return n, c.mapErr("write", err)
}

func (c *Conn) mapErr(op string, err error) error {
	switch {
	case err == nil, err == io.EOF:
		return err
	case errors.Is(err, windows.ERROR_BROKEN_PIPE), errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED), errors.Is(err, windows.ERROR_NO_DATA):
		if op == "read" {
			return io.EOF
		}
		return &net.OpError{Op: op, Net: "pipe", Addr: Addr(c.name), Err: io.ErrClosedPipe}
	case errors.Is(err, os.ErrClosed):
		return &net.OpError{Op: op, Net: "pipe", Addr: Addr(c.name), Err: net.ErrClosed}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &net.OpError{Op: op, Net: "pipe", Addr: Addr(c.name), Err: err}
}

// Close closes this end; what was written and not yet read stays readable
// by the other end.
func (c *Conn) Close() error { return c.f.Close() }

func (c *Conn) LocalAddr() net.Addr                { return Addr(c.name) }
func (c *Conn) RemoteAddr() net.Addr               { return Addr(c.name) }
func (c *Conn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// ClientProcessID is the process id of the client of a server end.
func (c *Conn) ClientProcessID() (uint32, error) {
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(c.h, &pid); err != nil {
		return 0, err
	}
	return pid, nil
}

// Peer is the client of a server end: its process id and the user SID of
// its token.
func (c *Conn) Peer() (pid uint32, sid string, err error) {
	if pid, err = c.ClientProcessID(); err != nil {
		return 0, "", fmt.Errorf("client process id: %w", err)
	}
	sid, err = ProcessUserSID(pid)
	return pid, sid, err
}

// ProcessUserSID is the user SID of process pid's token.
func ProcessUserSID(pid uint32) (string, error) {
	p, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return "", fmt.Errorf("open process %d: %w", pid, err)
	}
	defer windows.CloseHandle(p)
	var tok windows.Token
	if err := windows.OpenProcessToken(p, windows.TOKEN_QUERY, &tok); err != nil {
		return "", fmt.Errorf("open the token of process %d: %w", pid, err)
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("read the user of process %d: %w", pid, err)
	}
	return u.User.Sid.String(), nil
}

// Dial connects to the pipe name, waiting while every instance is busy
// until ctx ends. A name nobody listens on fails at once (an error
// matching os.ErrNotExist); one the caller may not open fails with an
// error matching os.ErrPermission.
func Dial(ctx context.Context, name string) (*Conn, error) {
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	wait := 5 * time.Millisecond
	for {
		// SECURITY_IDENTIFICATION: the daemon may learn who we are,
		// not act as us.
		h, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
			windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
		if err == nil {
			return newConn(h, name), nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, &net.OpError{Op: "dial", Net: "pipe", Addr: Addr(name), Err: os.NewSyscallError("open", err)}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &net.OpError{Op: "dial", Net: "pipe", Addr: Addr(name), Err: ctx.Err()}
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

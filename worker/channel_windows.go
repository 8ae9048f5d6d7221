package worker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/windows"
)

// nodeChannel: Node.js on Windows speaks a framed protocol of its own on its channel and finds
// it through the C runtime's inherited descriptors, so no NODE_CHANNEL_FD is given there.
const nodeChannel = false

// pipeBuffer is the size of each direction's buffer in a channel's pipe.
const pipeBuffer = 64 << 10

// socketpair makes a connected duplex named pipe under a random name, with one instance that
// admits no remote client. The daemon's end is overlapped, so that its writes can time out; the
// worker's end is synchronous, the kind any program can read with plain ReadFile and WriteFile.
// Neither end is inheritable: the runner hands the worker's end to the child it starts.
func socketpair() (parent, child *os.File, err error) {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, nil, fmt.Errorf("pipe name: %w", err)
	}
	name := `\\.\pipe\opsvc-ipc-` + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:])
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, nil, err
	}
	server, err := windows.CreateNamedPipe(name16,
		windows.PIPE_ACCESS_DUPLEX|windows.FILE_FLAG_OVERLAPPED|windows.FILE_FLAG_FIRST_PIPE_INSTANCE,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS,
		1, pipeBuffer, pipeBuffer, 0, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("create pipe %s: %w", name, err)
	}
	client, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		windows.CloseHandle(server)
		return nil, nil, fmt.Errorf("open pipe %s: %w", name, err)
	}
	return os.NewFile(uintptr(server), "opsvc-ipc-daemon"), os.NewFile(uintptr(client), "opsvc-ipc-worker"), nil
}

// fileConn makes a connection of f, one end of a channel's pipe, and takes f over.
func fileConn(f *os.File) (net.Conn, error) {
	if f == nil {
		return nil, errors.New("no pipe")
	}
	return &pipeConn{f: f}, nil
}

// pipeConn is a pipe end as a net.Conn. Deadlines work on the daemon's (overlapped) end; on the
// worker's, SetWriteDeadline fails and writes wait for the daemon, which always reads.
type pipeConn struct{ f *os.File }

func (c *pipeConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED) {
		err = io.EOF
	}
	return n, err
}
func (c *pipeConn) Write(b []byte) (int, error)        { return c.f.Write(b) }
func (c *pipeConn) Close() error                       { return c.f.Close() }
func (c *pipeConn) LocalAddr() net.Addr                { return pipeAddr(c.f.Name()) }
func (c *pipeConn) RemoteAddr() net.Addr               { return pipeAddr(c.f.Name()) }
func (c *pipeConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// pipeAddr names a channel's pipe.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

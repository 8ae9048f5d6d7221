package sdnotify

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// maxFDs is how many fds one datagram may carry before it counts as truncated (systemd's
// NOTIFY_FD_MAX). The kernel closes the ones that do not fit.
const maxFDs = 768

// maxPathLen is the longest socket path sun_path holds with its terminating NUL.
const maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// Server is one unit's notify socket (SOCK_DGRAM, SO_PASSCRED). One goroutine reads it and calls the
// handler for each accepted datagram, in arrival order. Every fd that arrives is closed once the
// handler has returned for its datagram, so a BARRIER=1 fd is released only after all earlier
// messages were handled.
type Server struct {
	addr     string
	abstract bool
	dev, ino uint64 // identity of the socket file, so Close removes only its own
	conn     *net.UnixConn
	handler  func(Message)
	dropped  atomic.Uint64
	done     chan struct{}

	closeOnce sync.Once
	closeErr  error
	detaching atomic.Bool // Detach: the reader stops at its next read
}

// Listen binds a notify socket at path and starts reading it. path is a filesystem path, made absolute;
// a stale socket there is removed first, any other file is an error. A path starting with "@" is a Linux
// abstract socket name instead. handler is called from the one reader goroutine, one message at a time;
// it must not call Close.
func Listen(path string, handler func(Message)) (*Server, error) {
	if handler == nil {
		return nil, errors.New("sdnotify: listen: nil handler")
	}
	if path == "" {
		return nil, errors.New("sdnotify: listen: empty socket path")
	}
	s := &Server{handler: handler, done: make(chan struct{}), abstract: path[0] == '@'}
	if !s.abstract {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("sdnotify: listen %s: %w", path, err)
		}
		path = abs
	}
	s.addr = path
	if len(path) > maxPathLen {
		return nil, fmt.Errorf("sdnotify: listen %s: the path is %d bytes, a unix socket takes at most %d (use a shorter runtime directory)",
			path, len(path), maxPathLen)
	}
	if !s.abstract {
		if err := removeStale(path); err != nil {
			return nil, err
		}
	}
	conn, err := bind(path)
	if err != nil {
		return nil, err
	}
	if !s.abstract {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			conn.Close()
			os.Remove(path)
			return nil, fmt.Errorf("sdnotify: listen %s: stat the new socket: %w", path, err)
		}
		s.dev, s.ino = st.Dev, st.Ino
	}
	s.conn = conn
	go s.run()
	return s, nil
}

// removeStale removes a socket left at path by an earlier run. It refuses to remove anything else.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sdnotify: listen %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("sdnotify: listen %s: a %s that is not a socket is in the way (move it away or choose another path)",
			path, fileKind(fi.Mode()))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sdnotify: listen %s: remove the stale socket: %w", path, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m.Type() == fs.ModeSymlink:
		return "symbolic link"
	default:
		return "file"
	}
}

// bind creates the socket with SO_PASSCRED set before it is bound, so no datagram can arrive without
// credentials.
func bind(path string) (*net.UnixConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: listen %s: socket: %w", path, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sdnotify: listen %s: set SO_PASSCRED: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sdnotify: listen %s: bind: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	pc, err := net.FilePacketConn(f) // dups the fd
	f.Close()
	if err != nil {
		if path[0] != '@' {
			os.Remove(path)
		}
		return nil, fmt.Errorf("sdnotify: listen %s: %w", path, err)
	}
	return pc.(*net.UnixConn), nil
}

// Addr returns the NOTIFY_SOCKET value to give the child.
func (s *Server) Addr() string { return s.addr }

// Dropped returns how many datagrams were dropped: over MaxMessageSize, truncated (payload or
// control data), with a NUL byte, or without valid credentials.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Close stops the reader goroutine, waits for it (and so for a running handler) and removes the socket
// file if it is still the one Listen made. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.conn.Close(); err != nil {
			s.closeErr = fmt.Errorf("sdnotify: close %s: %w", s.addr, err)
		}
		<-s.done
		if s.abstract {
			return
		}
		var st unix.Stat_t
		if unix.Lstat(s.addr, &st) != nil || st.Dev != s.dev || st.Ino != s.ino {
			return // gone, or replaced by another listener: not ours to remove
		}
		if err := os.Remove(s.addr); err != nil && !errors.Is(err, fs.ErrNotExist) && s.closeErr == nil {
			s.closeErr = fmt.Errorf("sdnotify: close %s: remove the socket: %w", s.addr, err)
		}
	})
	return s.closeErr
}

func (s *Server) run() {
	defer close(s.done)
	buf := make([]byte, MaxMessageSize+1)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*maxFDs))
	for {
		// On Linux ReadMsgUnix passes MSG_CMSG_CLOEXEC, so received fds never leak into children.
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || (s.detaching.Load() && errors.Is(err, os.ErrDeadlineExceeded)) {
				return
			}
			continue // a failed receive consumed nothing; the next one may succeed
		}
		s.dispatch(buf[:n], oob[:oobn], flags)
	}
}

// dispatch handles one datagram and then closes every fd it carried.
func (s *Server) dispatch(payload, oob []byte, flags int) {
	cred, fds := parseControl(oob)
	defer closeFDs(fds)
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || len(payload) > MaxMessageSize || cred == nil || cred.Pid <= 0 {
		s.dropped.Add(1)
		return
	}
	msg, err := Parse(payload)
	if err != nil {
		s.dropped.Add(1)
		return
	}
	if isBarrier(msg) {
		return // the deferred close is the answer
	}
	msg.PID, msg.UID, msg.GID = int(cred.Pid), int(cred.Uid), int(cred.Gid)
	// Read now, while the sender most likely still exists (systemd-notify exits right after
	// sending): the handler may run later.
	msg.Ancestors = Ancestors(msg.PID)
	s.handler(msg)
}

// parseControl returns the credentials (nil if none) and every fd in the control data. It keeps what
// it parsed before a malformed header, so no received fd is ever left open.
func parseControl(oob []byte) (*unix.Ucred, []int) {
	var cred *unix.Ucred
	var fds []int
	for len(oob) >= unix.CmsgLen(0) {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		if hdr.Level != unix.SOL_SOCKET {
			continue
		}
		scm := unix.SocketControlMessage{Header: hdr, Data: data}
		switch hdr.Type {
		case unix.SCM_RIGHTS:
			if r, err := unix.ParseUnixRights(&scm); err == nil {
				fds = append(fds, r...)
			}
		case unix.SCM_CREDENTIALS:
			if c, err := unix.ParseUnixCredentials(&scm); err == nil {
				cred = c
			}
		}
	}
	return cred, fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

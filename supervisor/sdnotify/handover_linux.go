package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Detach hands the socket over: it stops the reader at its next read (the
// handler has returned for every datagram read before), and returns a
// duplicate of the socket, close-on-exec. Datagrams not read yet stay in it,
// and its address stays bound, for Adopt (here or in another process). The
// Server is closed; the socket file, if any, is left in place.
func (s *Server) Detach() (*os.File, error) {
	s.detaching.Store(true)
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	<-s.done
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sdnotify: detach %s: %w", s.addr, err)
	}
	dup := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	}); err != nil {
		derr = err
	}
	if derr != nil {
		return nil, fmt.Errorf("sdnotify: detach %s: dup: %w", s.addr, derr)
	}
	s.closeOnce.Do(func() { s.conn.Close() })
	return os.NewFile(uintptr(dup), s.addr), nil
}

// Adopt reads a notify socket that Detach handed over; addr is its address
// (the Addr it had). It takes over f.
func Adopt(f *os.File, addr string, handler func(Message)) (*Server, error) {
	if handler == nil {
		f.Close()
		return nil, errors.New("sdnotify: adopt: nil handler")
	}
	if addr == "" {
		f.Close()
		return nil, errors.New("sdnotify: adopt: empty socket address")
	}
	pc, err := net.FilePacketConn(f) // dups the fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sdnotify: adopt %s: %w", addr, err)
	}
	conn, ok := pc.(*net.UnixConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("sdnotify: adopt %s: not a unix socket", addr)
	}
	s := &Server{addr: addr, abstract: addr[0] == '@', handler: handler, done: make(chan struct{}), conn: conn}
	if !s.abstract {
		var st unix.Stat_t
		if err := unix.Lstat(addr, &st); err == nil {
			s.dev, s.ino = st.Dev, st.Ino
		}
	}
	go s.run()
	return s, nil
}

//go:build !linux

package sdnotify

import "fmt"

// Server is one unit's notify socket. Only Linux has one: the protocol needs SCM_CREDENTIALS.
type Server struct{ addr string }

// Listen fails on this platform: sd_notify needs SCM_CREDENTIALS, which only Linux provides.
func Listen(path string, handler func(Message)) (*Server, error) {
	return nil, fmt.Errorf("sdnotify: listen %s: notify sockets need SCM_CREDENTIALS, which only Linux has (use an ipc worker instead)", path)
}

// Addr returns the NOTIFY_SOCKET value to give the child.
func (s *Server) Addr() string { return s.addr }

// Dropped returns how many datagrams were dropped.
func (s *Server) Dropped() uint64 { return 0 }

// Close does nothing on this platform.
func (s *Server) Close() error { return nil }

// Package netlimit caps the connections a listener of the daemon holds at
// once: the control socket and the console's TCP listener.
package netlimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// busyBody is the answer to a connection past the cap.
const busyBody = `{"error": "too many connections to the daemon", "hint": "close idle clients of the daemon and try again"}` + "\n"

const busyResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Connection: close\r\n" +
	"Retry-After: 1\r\n" +
	"Content-Length: " + busyLen + "\r\n\r\n" + busyBody

// busyLen is len(busyBody), checked by a test.
const busyLen = "106"

// maxRefusing bounds the connections being refused at once; past it a
// connection is closed without an answer.
const maxRefusing = 64

// Listener returns a listener that holds at most n connections (at least
// one) at once. A connection past the cap is not queued: it gets a 503 answer
// and is closed, so a flood of clients cannot take the daemon's file
// descriptors nor starve the clients already connected.
func Listener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, max: int64(max(n, 1))}
}

type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing atomic.Int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		return &limitConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
	}
}

// refuse answers c with 503 and closes it, without blocking Accept.
func (l *limitListener) refuse(c net.Conn) {
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(busyResponse)); err != nil {
			return
		}
		// Half-close and read what the client sent, so the answer is not
		// lost to a reset on TCP.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		buf := make([]byte, 4096)
		for n := 0; n < 64<<10; {
			m, err := c.Read(buf)
			n += m
			if err != nil {
				return
			}
		}
	}()
}

// limitConn gives its place back when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the connection underneath (ConnContext reads the peer's
// credentials from it).
func (c *limitConn) Unwrap() net.Conn { return c.Conn }

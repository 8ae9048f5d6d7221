//go:build unix

package worker

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StopReading stops the channel's reader at its next read, without closing
// the channel: what the worker writes from then on stays in the socket.
// Messages is closed once the reader has stopped, after every message it had
// read whole was delivered; keep draining it until then. Sending still works.
func (c *Channel) StopReading() {
	c.p.detaching.Store(true)
	_ = c.p.conn.SetReadDeadline(time.Unix(1, 0))
	<-c.p.done
}

// Detach hands the channel over: it stops reading (StopReading), waits for
// the answers Go started, and returns a duplicate of the daemon's end
// (close-on-exec) with the bytes read of a message not yet complete. This
// Channel is closed, but the worker sees nothing: the socket stays open
// through the file, for AdoptChannel (here or in another process) to go on
// reading where this one stopped. Command calls still waiting fail.
func (c *Channel) Detach() (*os.File, []byte, error) {
	c.StopReading()
	c.smu.Lock()
	c.closed = true
	c.smu.Unlock()
	c.serving.Wait()
	sc, ok := c.p.conn.(syscall.Conn)
	if !ok {
		return nil, nil, errors.New("worker: detach channel: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("worker: detach channel: %w", err)
	}
	dup := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	}); err != nil {
		derr = err
	}
	if derr != nil {
		return nil, nil, fmt.Errorf("worker: detach channel: dup: %w", derr)
	}
	unread := c.p.unread
	c.p.close()
	return os.NewFile(uintptr(dup), "opsvc-ipc-daemon"), unread, nil
}

// AdoptChannel takes over the daemon's end of a channel that Detach handed
// over, with the bytes it had read of an incomplete message, and goes on
// reading it as NewChannel's Channel would.
func AdoptChannel(f *os.File, unread []byte) (*Channel, error) {
	c, err := newChannelFrom(f, unread)
	if err != nil {
		return nil, fmt.Errorf("worker: adopt channel: %w", err)
	}
	return c, nil
}

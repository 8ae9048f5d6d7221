//go:build unix

package worker

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// DupFile returns a second descriptor of the daemon's end of the channel, close-on-exec; the channel
// goes on as before. It is for keeping the channel open elsewhere, such as in a service manager's
// file store, so that a daemon started after a crash can reopen it.
func (c *Channel) DupFile() (*os.File, error) {
	sc, ok := c.p.conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("worker: duplicate the channel: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("worker: duplicate the channel: %w", err)
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("worker: duplicate the channel: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("worker: duplicate the channel: %w", derr)
	}
	return os.NewFile(uintptr(nfd), "opsvc-ipc-daemon"), nil
}

//go:build unix && !linux

package worker

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketpair makes a connected unix stream pair, close-on-exec on both ends; the child's end loses
// the flag only where exec.Cmd places it as fd 3. Without SOCK_CLOEXEC, the flags are set under
// the fork lock, so that no process started meanwhile inherits the ends.
func socketpair() (parent, child *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "opsvc-ipc-daemon"), os.NewFile(uintptr(fds[1]), "opsvc-ipc-worker"), nil
}

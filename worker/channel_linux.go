//go:build linux

package worker

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// socketpair makes a connected unix stream pair, close-on-exec on both ends; the child's end loses
// the flag only where exec.Cmd places it as fd 3.
func socketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "opsvc-ipc-daemon"), os.NewFile(uintptr(fds[1]), "opsvc-ipc-worker"), nil
}

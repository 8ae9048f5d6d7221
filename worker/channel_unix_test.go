//go:build unix

package worker

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChannelCloseOnExec: neither end may leak into other processes the daemon starts.
func TestChannelCloseOnExec(t *testing.T) {
	r := newRawPair(t)
	flags, err := unix.FcntlInt(r.worker.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("worker end flags %#x (%v), want FD_CLOEXEC until exec places it", flags, err)
	}
	rc, err := r.ch.p.conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0) }); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("daemon end flags %#x, want FD_CLOEXEC", flags)
	}
}

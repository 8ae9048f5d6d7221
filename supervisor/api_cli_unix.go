//go:build unix

package supervisor

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalByName reads TERM, SIGTERM or 15; "" is SIGTERM.
func signalByName(s string) (syscall.Signal, bool) {
	s = strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if s == "" {
		return syscall.SIGTERM, true
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	sig := unix.SignalNum("SIG" + s)
	return sig, sig != 0
}

func killSignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// killMain signals one process, not its group.
func killMain(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

//go:build unix

package supervisor

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds (sd_notify's MONOTONIC_USEC).
func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// SignalName is "SIGTERM" for syscall.SIGTERM.
func SignalName(sig syscall.Signal) string {
	n := unix.SignalName(sig)
	if n == "" {
		return fmt.Sprintf("SIG%d", int(sig))
	}
	return n
}

// ParseSignal reads "SIGTERM" or "TERM".
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	if s := unix.SignalNum(n); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("supervisor: unknown signal %q", name)
}

// resume continues a stopped process group, so that a stop signal is acted on.
func resume(p Process) { p.Signal(syscall.SIGCONT) }

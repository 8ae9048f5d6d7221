package supervisor

import (
	"fmt"
	"strings"
	"syscall"
)

// monotonicUsec is for sd_notify, which windows does not have.
func monotonicUsec() int64 { return 0 }

// windowsSignals are the signals the syscall package names on windows.
func windowsSignals() []syscall.Signal {
	return []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL, syscall.SIGTERM}
}

func windowsSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return ""
}

// SignalName is "SIGTERM" for syscall.SIGTERM.
func SignalName(sig syscall.Signal) string {
	if n := windowsSignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("SIG%d", int(sig))
}

// ParseSignal reads "SIGTERM" or "TERM".
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	for _, s := range windowsSignals() {
		if windowsSignalName(s) == n {
			return s, nil
		}
	}
	return 0, fmt.Errorf("supervisor: unknown signal %q", name)
}

// resume does nothing: windows has no stopped process groups to continue.
func resume(p Process) {}

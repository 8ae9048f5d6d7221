package main

import (
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// dupConn duplicates a listener's socket, close-on-exec.
func dupConn(l *net.UnixListener) (*os.File, error) {
	raw, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 3) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(fd), "control"), nil
}

func closeOnExec(f *os.File) { unix.CloseOnExec(int(f.Fd())) }

// monotonicUsec is CLOCK_MONOTONIC in microseconds, for sd_notify.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// notifyReexec relays SIGUSR2, the signal to re-exec, to c.
func notifyReexec(c chan<- os.Signal) { signal.Notify(c, syscall.SIGUSR2) }

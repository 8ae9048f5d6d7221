//go:build !linux

package main

import (
	"errors"
	"net"
	"os"
)

func dupConn(l *net.UnixListener) (*os.File, error) {
	return nil, errors.New("a handover is only supported on Linux")
}

func closeOnExec(f *os.File) {}

func monotonicUsec() int64 { return 0 }

func notifyReexec(c chan<- os.Signal) {}

//go:build !unix

package supervisor

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
)

// signalByName knows TERM and KILL off unix, where processes take no others.
func signalByName(s string) (syscall.Signal, bool) {
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "", "TERM", "15":
		return syscall.SIGTERM, true
	case "KILL", "9":
		return syscall.SIGKILL, true
	}
	return 0, false
}

func killSignalName(sig syscall.Signal) string { return "SIG" + strconv.Itoa(int(sig)) }

func killMain(pid int, sig syscall.Signal) error {
	return errors.New("signalling one process is only supported on unix")
}

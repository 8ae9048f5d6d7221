//go:build !linux

package orchestrator

import (
	"errors"
	"fmt"
	"io"
)

const (
	envGuard = "OPSVC_SESSION_GUARD"
	selfExe  = ""
)

var errNoGuard = errors.New("sessions run only on Linux for now (they need PR_SET_PDEATHSIG and /proc/self/exe)")

func startGuarded(exe string, argv []string, dir string, env []string, stdin io.Reader, stdout, stderr io.Writer) (*guarded, error) {
	return nil, errNoGuard
}

func guardMain(stderr io.Writer) int {
	fmt.Fprintf(stderr, "opsvc session guard: %v\n", errNoGuard)
	return 127
}

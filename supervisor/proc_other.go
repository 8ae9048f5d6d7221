//go:build !linux && !windows

package supervisor

import (
	"errors"
	goruntime "runtime"

	"github.com/opsvc/opsvc/supervisor/api"
)

// ExecRunner forks real processes. Supervising them (a subreaper, process
// tracking, output polling) is only implemented for Linux so far.
type ExecRunner struct{}

func errNoRunner() error {
	return errors.New("supervisor: running units: not supported on " + goruntime.GOOS + " (run the daemon on Linux; validate and the other commands work here)")
}

// NewExecRunner fails on this system.
func NewExecRunner(reapAll bool) (*ExecRunner, error) { return nil, errNoRunner() }

// Start fails on this system.
func (r *ExecRunner) Start(spec Spec) (Process, error) { return nil, errNoRunner() }

// Track fails on this system.
func (r *ExecRunner) Track(stateDir string, publish func(unit string, data api.EventData), logf func(string, ...any)) (string, error) {
	return "", errNoRunner()
}

// Close does nothing.
func (r *ExecRunner) Close() error { return nil }

//go:build !linux

package supervisor

import (
	"context"
	"errors"
	"os/exec"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/handover"
)

// Frozen is a supervisor paused for a handover (Linux only).
type Frozen struct {
	Record *handover.Record
	Files  handover.Files
}

// Freeze fails on this system.
func (s *Supervisor) Freeze(ctx context.Context) (*Frozen, error) {
	return nil, errNoHandover()
}

// Thaw does nothing on this system.
func (f *Frozen) Thaw() {}

func (s *Supervisor) restoreHandover(rec *handover.Record, files handover.Files) {
	files.Close()
	s.loadSpend()
	s.restoreInstances()
	s.reload("start")
}

func (s *Supervisor) adoptNone() {}

// TrackKeeping is Track when nothing was handed over; a handover fails on
// this system.
func (r *ExecRunner) TrackKeeping(stateDir string, rec *handover.Record, publish func(unit string, data api.EventData), logf func(string, ...any)) (string, error) {
	if rec == nil {
		return r.Track(stateDir, publish, logf)
	}
	return "", errNoHandover()
}

// Exec fails on this system.
func (r *ExecRunner) Exec(path string, argv, env []string) error { return errNoHandover() }

func errNoHandover() error {
	return errors.New("supervisor: handover: only supported on Linux (stop and start the daemon instead)")
}

// NewExecRunnerOnMain is NewExecRunner on this system (no re-exec here).
func NewExecRunnerOnMain(reapAll bool, forks chan func()) (*ExecRunner, error) {
	return NewExecRunner(reapAll)
}

// RunChild runs cmd to its end and returns its output, stdout and stderr
// together, as exec.Cmd.CombinedOutput does; when ctx ends, it is killed.
func (r *ExecRunner) RunChild(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	return combinedOutput(ctx, cmd)
}

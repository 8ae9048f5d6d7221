//go:build !linux

package supervisor

import (
	"context"
	"errors"

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
	return nil, errors.New("supervisor: handover: only supported on Linux (stop and start the daemon instead)")
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

// TrackKeeping is Track when there is nothing handed over; a handover fails
// on this system.
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

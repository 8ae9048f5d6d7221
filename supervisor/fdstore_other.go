//go:build !linux

package supervisor

import "github.com/opsvc/opsvc/supervisor/handover"

// FDStore keeps workers' files in a service manager's file descriptor store:
// Linux only.
type FDStore struct{}

// NewFDStore returns nil on this system: there is no store to push to.
func NewFDStore(string, func(string, ...any)) *FDStore { return nil }

func (s *Supervisor) startFDStore() func()          { return func() {} }
func (s *Supervisor) fdStarted(string, *unitRecord) {}
func (s *Supervisor) fdEnded(string)                {}
func (s *Supervisor) fdChanged()                    {}

// FromFDStore finds nothing on this system.
func FromFDStore(string) (*handover.Record, handover.Files, error) { return nil, nil, nil }

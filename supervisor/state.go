package supervisor

import (
	"fmt"

	"github.com/opsvc/opsvc/supervisor/api"
)

// State is a unit's active state, in systemd's words (api.State: the API
// and the events carry it).
type State = api.State

// Unit states.
const (
	Inactive     = api.StateInactive
	Activating   = api.StateActivating
	Active       = api.StateActive
	Deactivating = api.StateDeactivating
	Failed       = api.StateFailed
)

// ParseState is the inverse of State.String.
func ParseState(name string) (State, error) { return api.ParseState(name) }

// legal reports whether a unit may go from one state to another.
func legal(from, to State) bool {
	if from == to {
		return true
	}
	switch from {
	case Inactive:
		return to == Activating || to == Failed
	case Activating, Active:
		return to != 0 && to <= Failed
	case Deactivating:
		return to == Inactive || to == Failed || to == Activating
	case Failed:
		return to == Activating || to == Inactive
	}
	return false
}

// CheckTransition returns an error sentence for an illegal change of state.
func CheckTransition(from, to State) error {
	if legal(from, to) {
		return nil
	}
	return fmt.Errorf("supervisor: illegal transition %s -> %s", from, to)
}

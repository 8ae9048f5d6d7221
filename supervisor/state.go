package supervisor

import (
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

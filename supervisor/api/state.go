package api

import "fmt"

// State is a unit's active state, in systemd's words. The values are
// explicit because they cross process boundaries; on the wire a state is its
// name.
type State uint8

// The unit states.
const (
	StateInactive     State = 1
	StateActivating   State = 2
	StateActive       State = 3
	StateDeactivating State = 4
	StateFailed       State = 5
)

func (s State) String() string {
	switch s {
	case StateInactive:
		return "inactive"
	case StateActivating:
		return "activating"
	case StateActive:
		return "active"
	case StateDeactivating:
		return "deactivating"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(name string) (State, error) {
	for s := StateInactive; s <= StateFailed; s++ {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("parse state %q: want inactive, activating, active, deactivating or failed", name)
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

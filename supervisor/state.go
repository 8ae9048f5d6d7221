package supervisor

import (
	"fmt"
)

// State is a unit's active state, in systemd's words. The values are explicit
// because they cross process boundaries (API, events).
type State uint8

// Unit states.
const (
	Inactive     State = 1
	Activating   State = 2
	Active       State = 3
	Deactivating State = 4
	Failed       State = 5
)

func (s State) String() string {
	switch s {
	case Inactive:
		return "inactive"
	case Activating:
		return "activating"
	case Active:
		return "active"
	case Deactivating:
		return "deactivating"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(name string) (State, error) {
	for s := Inactive; s <= Failed; s++ {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("supervisor: parse state %q: want inactive, activating, active, deactivating or failed", name)
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

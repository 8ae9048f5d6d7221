package supervisor

import "errors"

// Credential is the user and groups a worker runs as; windows has no such
// switch, and userSwitching says so.
type Credential struct {
	Uid, Gid    uint32
	Groups      []uint32
	NoSetGroups bool
}

// userSwitching reports whether workers can run as another user.
func userSwitching() error {
	return errors.New("supervisor: user and group: not supported on windows (remove user and group from the unit)")
}

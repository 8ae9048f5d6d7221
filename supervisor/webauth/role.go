package webauth

import "context"

// Role is what a request may do. The values are explicit: they cross the
// process boundary in GET /v1/whoami.
type Role int

const (
	RoleNone     Role = 0 // not authenticated
	RoleReadOnly Role = 1 // GET and HEAD only
	RoleAdmin    Role = 2 // everything
	RoleLocal    Role = 3 // a peer on the control socket, checked by its credentials
)

func (r Role) String() string {
	switch r {
	case RoleReadOnly:
		return "read-only"
	case RoleAdmin:
		return "admin"
	case RoleLocal:
		return "local"
	}
	return "none"
}

// ParseRole is the inverse of String.
func ParseRole(s string) (Role, bool) {
	for _, r := range []Role{RoleNone, RoleReadOnly, RoleAdmin, RoleLocal} {
		if r.String() == s {
			return r, true
		}
	}
	return RoleNone, false
}

// MayChange reports whether the role may send requests that change state.
func (r Role) MayChange() bool { return r == RoleAdmin || r == RoleLocal }

type roleKey struct{}

// WithRole returns ctx carrying the role of the request's sender.
func WithRole(ctx context.Context, r Role) context.Context {
	return context.WithValue(ctx, roleKey{}, r)
}

// RoleFrom returns the role the middleware found for a request; a request
// that did not pass through it (the control socket) has none.
func RoleFrom(ctx context.Context) (Role, bool) {
	r, ok := ctx.Value(roleKey{}).(Role)
	return r, ok
}

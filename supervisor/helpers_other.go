//go:build !linux

package supervisor

import (
	"os/user"
	"strconv"
)

// inGroup reports whether a peer's primary gid is the named group's: without
// /proc, supplementary groups of another process are not known.
func inGroup(p Peer, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	gid, err := strconv.Atoi(g.Gid)
	return err == nil && p.GID == gid
}

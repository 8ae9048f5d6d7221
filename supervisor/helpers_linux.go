package supervisor

import (
	"os"
	"os/user"
	"strconv"
	"strings"
)

// inGroup reports whether a peer belongs to the named group, by its primary
// gid or its supplementary groups (/proc/PID/status).
func inGroup(p Peer, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	gid, _ := strconv.Atoi(g.Gid)
	if p.GID == gid {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(rest) {
				if f == g.Gid {
					return true
				}
			}
		}
	}
	return false
}

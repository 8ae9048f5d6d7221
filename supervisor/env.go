package supervisor

import (
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"

	"github.com/opsvc/opsvc/unit"
)

// scrubbed reports whether an inherited variable belongs to the daemon's own
// supervisor (systemd, or an opsvc above us) and must not reach a worker.
func scrubbed(key string) bool {
	switch key {
	case "NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "MAINPID", "MANAGERPID",
		"OPSVC_IPC_FD", "OPSVC_UNIT", "OPSVC_HEARTBEAT_USEC", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE":
		return true
	}
	return strings.HasPrefix(key, "WATCHDOG_") || strings.HasPrefix(key, "LISTEN_")
}

// BaseEnv is the daemon's environment without what belongs to its own supervisor.
func BaseEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !scrubbed(k) {
			out = append(out, kv)
		}
	}
	return out
}

// unitEnv builds a worker's environment: base, then environment_files, then
// the unit's environment table, then extra (opsvc's own variables). A later
// value for a key replaces an earlier one. An inherited variable kept as it is
// shares its string with base.
func unitEnv(base []string, svc unit.Service, extra map[string]string) ([]string, error) {
	m := make(map[string]string, len(base)+len(svc.Environment)+len(extra)) // key -> "key=value"
	order := make([]string, 0, len(base))
	put := func(k, kv string) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = kv
	}
	set := func(k, v string) { put(k, k+"="+v) }
	for _, kv := range base {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			kv += "="
		}
		put(k, kv)
	}
	keys := make([]string, 0, len(svc.Environment))
	for k := range svc.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, svc.Environment[k])
	}
	for _, f := range svc.EnvironmentFiles {
		vars, err := unit.ReadEnvironmentFile(f)
		if err != nil {
			return nil, err
		}
		for _, kv := range vars {
			set(kv[0], kv[1])
		}
	}
	keys = keys[:0]
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, extra[k])
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, m[k])
	}
	return out, nil
}

// credential resolves user and group names for a worker; nil when neither is set.
func credential(svc unit.Service) (*Credential, error) {
	if svc.User == "" && svc.Group == "" {
		return nil, nil
	}
	if err := userSwitching(); err != nil {
		return nil, err
	}
	c := &Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	if svc.User != "" {
		u, err := lookupUser(svc.User)
		if err != nil {
			return nil, err
		}
		if c.Uid, err = parseID("user", svc.User, u.Uid); err != nil {
			return nil, err
		}
		if c.Gid, err = parseID("user", svc.User, u.Gid); err != nil {
			return nil, err
		}
	}
	if svc.Group != "" {
		g, err := user.LookupGroup(svc.Group)
		if err != nil {
			if _, numeric, _ := unit.ParseID(svc.Group); numeric {
				if c.Gid, err = parseID("group", svc.Group, svc.Group); err != nil {
					return nil, err
				}
			} else {
				return nil, fmt.Errorf("supervisor: group %q: %w (create it, or fix group in the unit)", svc.Group, err)
			}
		} else {
			if c.Gid, err = parseID("group", svc.Group, g.Gid); err != nil {
				return nil, err
			}
		}
	}
	c.Groups = []uint32{c.Gid}
	return c, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, numeric, e := unit.ParseID(name); numeric {
		if e != nil { // user.LookupId would wrap it around
			return nil, fmt.Errorf("supervisor: user %q: %v (fix user in the unit)", name, e)
		}
		if u, e := user.LookupId(name); e == nil {
			return u, nil
		}
		return &user.User{Uid: name, Gid: name}, nil
	}
	return nil, fmt.Errorf("supervisor: user %q: %w (create it, or fix user in the unit)", name, err)
}

// parseID reads the id that a unit's user or group resolved to, refusing
// one that would wrap around to another id or mean "no change" (and so run
// the worker as the daemon's own user).
func parseID(what, name, id string) (uint32, error) {
	n, numeric, err := unit.ParseID(id)
	if err == nil && !numeric {
		err = fmt.Errorf("%q is not a number", id)
	}
	if err != nil {
		return 0, fmt.Errorf("supervisor: %s %q: %v (fix %s in the unit)", what, name, err, what)
	}
	return n, nil
}

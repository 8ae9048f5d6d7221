package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"syscall"

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
// value for a key replaces an earlier one.
func unitEnv(base []string, svc unit.Service, extra map[string]string) ([]string, error) {
	m := make(map[string]string, len(base)+len(svc.Environment)+len(extra))
	order := make([]string, 0, len(base))
	set := func(k, v string) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
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
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		vars, err := readEnvFile(f)
		if err != nil {
			if optional && os.IsNotExist(err) {
				continue
			}
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
		out = append(out, k+"="+m[k])
	}
	return out, nil
}

// readEnvFile reads KEY=VALUE lines; '#' and ';' start comments; values may
// be quoted with ' or ".
func readEnvFile(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("supervisor: read %s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, [2]string{k, v})
	}
	return out, sc.Err()
}

// credential resolves user and group names for a worker; nil when neither is set.
func credential(svc unit.Service) (*syscall.Credential, error) {
	if svc.User == "" && svc.Group == "" {
		return nil, nil
	}
	c := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	if svc.User != "" {
		u, err := lookupUser(svc.User)
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.Uid, c.Gid = uint32(uid), uint32(gid)
	}
	if svc.Group != "" {
		g, err := user.LookupGroup(svc.Group)
		if err != nil {
			if id, e := strconv.Atoi(svc.Group); e == nil {
				c.Gid = uint32(id)
			} else {
				return nil, fmt.Errorf("supervisor: group %q: %w (create it, or fix group in the unit)", svc.Group, err)
			}
		} else {
			gid, _ := strconv.Atoi(g.Gid)
			c.Gid = uint32(gid)
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
	if _, e := strconv.Atoi(name); e == nil {
		if u, e := user.LookupId(name); e == nil {
			return u, nil
		}
		return &user.User{Uid: name, Gid: name}, nil
	}
	return nil, fmt.Errorf("supervisor: user %q: %w (create it, or fix user in the unit)", name, err)
}

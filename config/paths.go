package config

import (
	"os"
	"path/filepath"
)

// Paths are where the daemon finds its units, keeps its state and listens.
type Paths struct {
	Units  string `json:"units"`
	State  string `json:"state"`
	Socket string `json:"socket"`
	Config string `json:"config"`
}

// Env is the slice of the environment paths are resolved from; os.Getenv in
// production, a map in tests.
type Env func(key string) string

// DefaultPaths resolves the daemon's paths for a process with effective
// uid euid: the OPSVC_* variable, then systemd's $RUNTIME_DIRECTORY,
// $STATE_DIRECTORY and $CONFIGURATION_DIRECTORY, then the root or XDG
// defaults. Flags, when given, override the result field by field.
func DefaultPaths(euid int, getenv Env) Paths {
	var p Paths
	if base, ok := platformPaths(euid, getenv); ok {
		p = base
	} else if euid == 0 {
		p = Paths{
			Units:  "/etc/opsvc/units",
			State:  "/var/lib/opsvc",
			Socket: "/run/opsvc/opsvc.sock",
			Config: "/etc/opsvc/opsvc.toml",
		}
	} else {
		home := getenv("HOME")
		cfg := xdg(getenv, "XDG_CONFIG_HOME", filepath.Join(home, ".config"))
		state := xdg(getenv, "XDG_STATE_HOME", filepath.Join(home, ".local", "state"))
		run := xdg(getenv, "XDG_RUNTIME_DIR", filepath.Join(os.TempDir(), "opsvc-"+itoa(os.Getuid())))
		p = Paths{
			Units:  filepath.Join(cfg, "opsvc", "units"),
			State:  filepath.Join(state, "opsvc"),
			Socket: filepath.Join(run, "opsvc", "opsvc.sock"),
			Config: filepath.Join(cfg, "opsvc", "opsvc.toml"),
		}
	}
	if d := firstDir(getenv("CONFIGURATION_DIRECTORY")); d != "" {
		p.Units = filepath.Join(d, "units")
		p.Config = filepath.Join(d, "opsvc.toml")
	}
	if d := firstDir(getenv("STATE_DIRECTORY")); d != "" {
		p.State = d
	}
	if d := firstDir(getenv("RUNTIME_DIRECTORY")); d != "" {
		p.Socket = filepath.Join(d, "opsvc.sock")
	}
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&p.Units, "OPSVC_UNITS")
	set(&p.State, "OPSVC_STATE")
	set(&p.Socket, "OPSVC_SOCKET")
	set(&p.Config, "OPSVC_CONFIG")
	return p
}

// RuntimeDir is the directory for per-unit sockets: beside the control socket.
func (p Paths) RuntimeDir() string { return filepath.Dir(p.Socket) }

func xdg(getenv Env, key, fallback string) string {
	if v := getenv(key); v != "" && filepath.IsAbs(v) {
		return v
	}
	return fallback
}

// firstDir returns the first of systemd's colon-separated directory list.
func firstDir(list string) string {
	for i := 0; i < len(list); i++ {
		if list[i] == ':' {
			return list[:i]
		}
	}
	return list
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

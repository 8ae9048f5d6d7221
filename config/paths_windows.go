package config

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// systemPipe is the control pipe of a daemon run as a service (SYSTEM).
const systemPipe = `\\.\pipe\opsvc`

// platformPaths are Windows's defaults: %ProgramData%\opsvc for a daemon run
// as a service (SYSTEM; euid 0 stands for it, and -1, what os.Geteuid gives
// on Windows, asks the process token), %LOCALAPPDATA%\opsvc for a user. The
// control pipe is \\.\pipe\opsvc for the service and \\.\pipe\opsvc-USERNAME
// for a user, so that a user's daemon and the service's do not meet.
func platformPaths(euid int, getenv Env) (Paths, bool) {
	if euid == 0 || (euid == -1 && runningAsSystem()) {
		dir := filepath.Join(winDir(getenv, "ProgramData", `C:\ProgramData`), "opsvc")
		return Paths{
			Units:  filepath.Join(dir, "units"),
			State:  filepath.Join(dir, "state"),
			Socket: systemPipe,
			Config: filepath.Join(dir, "opsvc.toml"),
		}, true
	}
	local := winDir(getenv, "LOCALAPPDATA", "")
	if local == "" {
		local = filepath.Join(winDir(getenv, "USERPROFILE", `C:\`), "AppData", "Local")
	}
	dir := filepath.Join(local, "opsvc")
	return Paths{
		Units:  filepath.Join(dir, "units"),
		State:  filepath.Join(dir, "state"),
		Socket: systemPipe + "-" + pipeWord(getenv("USERNAME")),
		Config: filepath.Join(dir, "opsvc.toml"),
	}, true
}

// winDir is the absolute directory in the variable key, or fallback.
func winDir(getenv Env, key, fallback string) string {
	if v := getenv(key); v != "" && filepath.IsAbs(v) {
		return v
	}
	return fallback
}

// pipeWord makes a user name fit in a pipe name: lower case, and anything
// but letters, digits, '-', '_' and '.' turned into '_'.
func pipeWord(s string) string {
	if s == "" {
		return "user"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// runningAsSystem reports whether this process runs as LocalSystem, as a
// service does by default.
func runningAsSystem() bool {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return false
	}
	return u.User.Sid.IsWellKnown(windows.WinLocalSystemSid)
}

package unit

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// TestWindowsRefusals: what has no meaning on Windows is refused at its
// position, with a hint; what has one passes.
func TestWindowsRefusals(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return "'" + s + "'" } // a TOML literal string keeps backslashes
	fsys := fstest.MapFS{
		"notify.toml":  {Data: []byte("[service]\ntype = \"notify\"\nexec = [" + q(exe) + "]\n")},
		"user.toml":    {Data: []byte("[service]\nexec = [" + q(exe) + "]\nuser = \"www\"\ngroup = \"www\"\n")},
		"hup.toml":     {Data: []byte("[service]\nexec = [" + q(exe) + "]\nstop_signal = \"SIGHUP\"\n")},
		"access.toml":  {Data: []byte("[service]\ntype = \"ipc\"\nexec = [" + q(exe) + "]\nnotify_access = \"all\"\n")},
		"watch.toml":   {Data: []byte("[service]\nexec = [" + q(exe) + "]\nwatchdog = \"10s\"\n")},
		"ok.toml":      {Data: []byte("[service]\ntype = \"ipc\"\nexec = [" + q(exe) + "]\nstop_signal = \"INT\"\nwatchdog = \"10s\"\n")},
		"simple.toml":  {Data: []byte("[service]\nexec = [\"cmd\", \"/c\", \"exit\"]\nstop_signal = \"SIGKILL\"\n")},
		"badpath.toml": {Data: []byte("[service]\nexec = ['C:\\no\\such\\program.exe']\n")},
	}
	s, err := LoadFS(fsys, `C:\units`)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, ps := range s.Problems {
		for _, p := range ps {
			all = append(all, p.Error())
		}
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{
		`notify.toml:2:8: type = "notify" is not supported on Windows`,
		`user.toml:3:8: user = "www" is not supported on Windows`,
		`user.toml:4:9: group = "www" is not supported on Windows`,
		`hup.toml:3:15: stop_signal = "SIGHUP" has no meaning on Windows`,
		`access.toml:4:17: notify_access = "all" is not supported on Windows`,
		`watch.toml:3:12: watchdog on a simple unit is not supported on Windows`,
		`badpath.toml:2:9: exec[0] "C:\\no\\such\\program.exe" does not exist`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q; got:\n%s", want, got)
		}
	}
	for _, name := range []string{"ok", "simple"} {
		if s.Problems[name] != nil || s.Units[name] == nil {
			t.Errorf("%s.toml refused: %v", name, s.Problems[name])
		}
	}
}

package config

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultPathsWindows(t *testing.T) {
	env := map[string]string{
		"ProgramData":  `D:\PD`,
		"LOCALAPPDATA": `C:\Users\Ann\AppData\Local`,
		"USERPROFILE":  `C:\Users\Ann`,
		"USERNAME":     "Ann Lee",
	}
	tests := []struct {
		name string
		euid int
		env  map[string]string
		want Paths
	}{
		{"service", 0, env, Paths{`D:\PD\opsvc\units`, `D:\PD\opsvc\state`, `\\.\pipe\opsvc`, `D:\PD\opsvc\opsvc.toml`}},
		{"service without ProgramData", 0, nil, Paths{`C:\ProgramData\opsvc\units`, `C:\ProgramData\opsvc\state`, `\\.\pipe\opsvc`, `C:\ProgramData\opsvc\opsvc.toml`}},
		{"user", 1000, env, Paths{`C:\Users\Ann\AppData\Local\opsvc\units`, `C:\Users\Ann\AppData\Local\opsvc\state`, `\\.\pipe\opsvc-ann_lee`, `C:\Users\Ann\AppData\Local\opsvc\opsvc.toml`}},
		{"user without LOCALAPPDATA", 1000, map[string]string{"USERPROFILE": `C:\Users\Bo`}, Paths{`C:\Users\Bo\AppData\Local\opsvc\units`, `C:\Users\Bo\AppData\Local\opsvc\state`, `\\.\pipe\opsvc-user`, `C:\Users\Bo\AppData\Local\opsvc\opsvc.toml`}},
		{"env wins", 0, map[string]string{"OPSVC_SOCKET": `\\.\pipe\mine`, "OPSVC_STATE": `E:\st`, "OPSVC_UNITS": `E:\u`, "OPSVC_CONFIG": `E:\c.toml`}, Paths{`E:\u`, `E:\st`, `\\.\pipe\mine`, `E:\c.toml`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultPaths(tt.euid, func(k string) string { return tt.env[k] })
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DefaultPaths (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDefaultPathsOfThisProcess: the test does not run as SYSTEM, so the
// process's own defaults (os.Geteuid is -1 on Windows) are the user's, under
// the real %LOCALAPPDATA%.
func TestDefaultPathsOfThisProcess(t *testing.T) {
	if runningAsSystem() {
		t.Skip("runs as SYSTEM")
	}
	if os.Geteuid() != -1 {
		t.Fatalf("os.Geteuid() = %d on Windows, want -1", os.Geteuid())
	}
	local := os.Getenv("LOCALAPPDATA")
	if local == "" {
		t.Fatal("LOCALAPPDATA is not set")
	}
	got := DefaultPaths(os.Geteuid(), os.Getenv)
	if want := local + `\opsvc\state`; got.State != want {
		t.Errorf("State = %s, want %s", got.State, want)
	}
	if want := `\\.\pipe\opsvc-` + pipeWord(os.Getenv("USERNAME")); got.Socket != want {
		t.Errorf("Socket = %s, want %s", got.Socket, want)
	}
	// The directories can be made where the defaults point.
	if err := os.MkdirAll(got.State, 0o750); err != nil {
		t.Fatalf("make %s: %v", got.State, err)
	}
}

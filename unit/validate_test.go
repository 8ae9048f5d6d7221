package unit

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateDirectory(t *testing.T) {
	got := problemText(Validate("testdata"))
	for _, want := range []string{
		"testdata/syntax.toml:3:1: syntax error",
		"testdata/dropin-bad.d/10-override.toml:2:1: unknown key",
		"testdata/cycle-a.toml:2:13: dependency cycle",
		"testdata/tmpl@b.toml:3:15: stop_signal must be",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Validate(testdata) lacks %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "testdata/ok.toml") || strings.Contains(got, "testdata/tmpl@a.toml") {
		t.Errorf("Validate(testdata) reports valid units:\n%s", got)
	}
	if n := strings.Count(got, "exce"); n != 1 {
		t.Errorf("a problem is reported %d times, want once:\n%s", n, got)
	}
}

func TestValidateFile(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"testdata/dropin-bad.d/10-override.toml", `testdata/dropin-bad.d/10-override.toml:2:1: unknown key "stop_timout"`},
		{"testdata/dropin-bad.d/20-reset.toml", "testdata/dropin-bad.d/20-reset.toml:2:1: missing exec"},
		{"testdata/no-such.toml", "testdata/no-such.toml:1:1: cannot read: no such file or directory"},
		{"testdata/tick.sh", "not a unit file"},
	} {
		if got := problemText(Validate(tt.path)); !strings.Contains(got, tt.want) {
			t.Errorf("Validate(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	if got := Validate("testdata/ok.toml"); got != nil {
		t.Errorf("Validate(ok.toml) = %v, want nil", got)
	}

	// A drop-in whose unit is missing is still checked.
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gone.d", "1.toml"), "[service]\nexce = []\n")
	if got := problemText(Validate(filepath.Join(dir, "gone.d", "1.toml"))); !strings.Contains(got, `unknown key "exce"`) {
		t.Errorf("Validate(orphan drop-in) = %q", got)
	}
}

// TestNoExec keeps os/exec out of package unit: it never starts processes.
func TestNoExec(t *testing.T) {
	goTool, err := exec.LookPath("go") // go test puts $GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to list dependencies with: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed too little:\n%s", out)
	}
	for _, d := range deps {
		if d == "os/exec" {
			t.Errorf("package unit depends on os/exec; it must never start processes")
		}
	}
}

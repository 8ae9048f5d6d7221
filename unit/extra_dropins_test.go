package unit

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadWithDropins reads drop-ins kept outside the units directory after
// the directory's own, for instances and for units with a file.
func TestLoadWithDropins(t *testing.T) {
	dir := t.TempDir()
	units, extra := filepath.Join(dir, "units"), filepath.Join(dir, "state", "instances")
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(units, "web.toml"), "[service]\nexec = [\"/bin/sh\"]\n")
	write(filepath.Join(units, "web.d", "a.toml"), "[unit]\ndescription = \"from units\"\n")
	write(filepath.Join(units, "orch@.toml"), "[orchestrator]\nproject_dir = \"/\"\ntask = \"default %i\"\nagent = [\"/bin/sh\"]\n")
	write(filepath.Join(extra, "web.d", "z.toml"), "[unit]\ndescription = \"from state\"\n")
	kept := filepath.Join(extra, "orch@x.d", "instance.toml")
	write(kept, "[orchestrator]\ntask = \"kept task\"\nmax_turns = 9\n")
	write(filepath.Join(extra, "orch@bad.d", "instance.toml"), "[orchestrator]\nmax_turns = 900\n")

	s, err := LoadWithDropins(units, extra, filepath.Join(dir, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Units["web"]; u == nil || u.Description != "from state" || len(u.Sources) != 3 {
		t.Fatalf("web = %+v, want the state directory's drop-in applied last", u)
	}
	u, err := s.Instance("orch@x")
	if err != nil || u.Orchestrator.Task != "kept task" || u.Orchestrator.MaxTurns != 9 {
		t.Fatalf("orch@x = %+v, %v; want the kept values", u, err)
	}
	ann, err := s.Annotate("orch@x")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range ann {
		if a.Key == "task" && a.Source == kept {
			found = true
		}
	}
	if !found {
		t.Errorf("Annotate(orch@x) does not name %s as the task's source: %+v", kept, ann)
	}
	if u, err := s.Instance("orch@y"); err != nil || u.Orchestrator.Task != "default y" {
		t.Errorf("orch@y = %+v, %v; want the template's values", u, err)
	}
	if _, err := s.Instance("orch@bad"); err == nil {
		t.Error("an out-of-range kept value was accepted")
	}

	plain, err := LoadWithDropins(units)
	if err != nil {
		t.Fatal(err)
	}
	if u := plain.Units["web"]; u == nil || u.Description != "from units" {
		t.Errorf("without extra directories web = %+v", u)
	}
}

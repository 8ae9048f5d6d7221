package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/unit"
)

// TestChoicesPersist: enable/disable is kept in the state directory and read
// back by a new daemon on the same directory; a damaged file falls back to
// the unit files' settings.
func TestChoicesPersist(t *testing.T) {
	dir := t.TempDir()
	logf := func(string, ...any) {}
	s := &Supervisor{opts: Options{Paths: config.Paths{State: dir}}, logf: logf}
	on := &unit.Unit{Enabled: true}
	if !s.startsWithDaemon("web", on) {
		t.Fatal("no choice: the file's enabled = true should decide")
	}
	if err := s.setChoice("web", false); err != nil {
		t.Fatal(err)
	}
	s2 := &Supervisor{opts: Options{Paths: config.Paths{State: dir}}, logf: logf}
	if s2.startsWithDaemon("web", on) {
		t.Error("disable did not outlive the daemon")
	}
	if err := s2.setChoice("web", true); err != nil {
		t.Fatal(err)
	}
	if !s2.startsWithDaemon("web", &unit.Unit{Enabled: false}) {
		t.Error("enable did not win over the file's enabled = false")
	}
	os.WriteFile(filepath.Join(dir, choicesFile), []byte("{not json"), 0o640)
	if s2.startsWithDaemon("web", &unit.Unit{Enabled: false}) {
		t.Error("a damaged choices file should fall back to the unit file")
	}
}

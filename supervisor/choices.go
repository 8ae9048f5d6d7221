package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/unit/regfile"
)

// choicesFile, in the state directory, keeps what opsvc enable and disable
// chose, so it outlives reloads and daemon restarts.
const choicesFile = "unit-choices.json"

// maxChoicesSize bounds the choices file; it holds one short entry a unit.
const maxChoicesSize = 1 << 20

type choicesDoc struct {
	Enabled map[string]bool `json:"enabled"`
}

func (s *Supervisor) choicesPath() string {
	if s.opts.Paths.State == "" {
		return ""
	}
	return filepath.Join(s.opts.Paths.State, choicesFile)
}

// readChoices reads the choices file; a missing file is no choices.
func readChoices(path string) (choicesDoc, error) {
	doc := choicesDoc{Enabled: map[string]bool{}}
	if path == "" {
		return doc, nil
	}
	// A regular file only, opened without waiting: a FIFO put in its place cannot stall the loop.
	data, err := regfile.ReadFile(path, maxChoicesSize)
	if errors.Is(err, os.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return choicesDoc{Enabled: map[string]bool{}}, fmt.Errorf("%s: %v", path, err)
	}
	if doc.Enabled == nil {
		doc.Enabled = map[string]bool{}
	}
	for name := range doc.Enabled {
		if unit.ValidName(name) != nil {
			delete(doc.Enabled, name)
		}
	}
	return doc, nil
}

// choice is the enable/disable choice for a unit, if one was made.
func (s *Supervisor) choice(name string) (enabled, ok bool) {
	doc, err := readChoices(s.choicesPath())
	if err != nil {
		s.logf("enable/disable choices unreadable, using the unit files' settings: %v", err)
		return false, false
	}
	enabled, ok = doc.Enabled[name]
	return enabled, ok
}

// setChoice records enable (true) or disable (false) for a unit.
func (s *Supervisor) setChoice(name string, enabled bool) error {
	path := s.choicesPath()
	if path == "" {
		return errors.New("no state directory to keep the choice in")
	}
	doc, err := readChoices(path)
	if err != nil {
		s.logf("enable/disable choices unreadable, starting them afresh: %v", err)
	}
	doc.Enabled[name] = enabled
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o640)
}

// startsWithDaemon says whether a unit is started when it is loaded: the
// choice of opsvc enable/disable when one was made, else its file's
// [unit] enabled.
func (s *Supervisor) startsWithDaemon(name string, u *unit.Unit) bool {
	return wantAtLoad(s.choicesSnapshot(), name, u)
}

// choicesSnapshot reads every enable/disable choice at once, for a reload
// that sets many units' wants: wantAtLoad(snapshot, name, u).
func (s *Supervisor) choicesSnapshot() map[string]bool {
	doc, err := readChoices(s.choicesPath())
	if err != nil {
		s.logf("enable/disable choices unreadable, using the unit files' settings: %v", err)
	}
	return doc.Enabled
}

// wantAtLoad is whether a unit loaded now should run: the choice made with
// opsvc enable/disable, else the file's [unit] enabled.
func wantAtLoad(choices map[string]bool, name string, u *unit.Unit) bool {
	if v, ok := choices[name]; ok {
		return v
	}
	return u != nil && u.Enabled
}

package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/unit/regfile"
)

// keptInstancesFile lists, in the state directory, the template instances
// started by name (opsvc start orchestrator@X, without a file of their own)
// that are wanted running, so that the next daemon on the directory starts
// them again, with the values kept for them (STATE/instances).
const keptInstancesFile = "runtime-instances.json"

// maxKeptInstancesSize bounds the file as it is read back.
const maxKeptInstancesSize = 1 << 20

type keptInstancesDoc struct {
	Instances []string `json:"instances"`
}

func (s *Supervisor) keptInstancesPath() string {
	if s.opts.Paths.State == "" {
		return ""
	}
	return filepath.Join(s.opts.Paths.State, keptInstancesFile)
}

// readKeptInstances reads the file; a missing file is none. Names that are
// not instances are left out.
func readKeptInstances(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	// A regular file only, opened without waiting: a FIFO put in its place cannot stall the loop.
	data, err := regfile.ReadFile(path, maxKeptInstancesSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc keptInstancesDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var out []string
	for _, name := range doc.Instances {
		if unit.ValidName(name) == nil && strings.Count(name, "@") == 1 && !strings.HasSuffix(name, "@") {
			out = append(out, name)
		}
	}
	return out, nil
}

// restoreInstances makes the instances the last daemon kept wanted again;
// called before the first load.
func (s *Supervisor) restoreInstances() {
	names, err := readKeptInstances(s.keptInstancesPath())
	if err != nil {
		s.logf("instances started by name are not started again: %v (the file is rewritten when one starts)", err)
		return
	}
	for _, name := range names {
		s.instances[name] = true
	}
	s.kept = names
}

// keepInstances writes the instances started by name that are wanted and
// not over for good, when that list changed. Nothing is written while the
// daemon stops, so that a clean restart starts them again.
func (s *Supervisor) keepInstances() {
	if s.shutdown || s.keptInstancesPath() == "" {
		return
	}
	var names []string
	for name := range s.instances {
		d, ok := s.desired[name]
		if !ok || !d.Want {
			continue
		}
		if rec := s.units[name]; rec != nil && rec.Settled {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if slices.Equal(names, s.kept) {
		return
	}
	data, _ := json.MarshalIndent(keptInstancesDoc{Instances: append([]string{}, names...)}, "", "  ")
	if err := atomicfile.Write(s.keptInstancesPath(), append(data, '\n'), 0o640); err != nil {
		s.logf("keep instances started by name: %v (they are not started again by the next daemon)", err)
		return
	}
	s.kept = names
}

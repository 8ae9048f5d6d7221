package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opsvc/opsvc/config/atomicfile"
)

// RuntimeInstancesFile, in the state directory, lists the instances started by name without a
// file of their own (opsvc start orchestrator@X with only the template), so that they start again
// with the daemon.
const RuntimeInstancesFile = "runtime-instances.json"

// maxRuntimeInstances bounds the file: its size and its entries.
const (
	maxRuntimeInstancesBytes = 1 << 20
	maxRuntimeInstances      = 10000
)

type runtimeInstances struct {
	Version   int      `json:"version"`
	Instances []string `json:"instances"`
}

// instancesWriter writes the runtime instances file off the loop, newest list last.
type instancesWriter struct {
	mu  sync.Mutex
	gen uint64 // of the newest list handed over
	did uint64 // of the list last written
}

// loadRuntimeInstances reads the runtime instances of an earlier run of the daemon, before the
// units are loaded: each is started again, as a started instance would be.
func (s *Supervisor) loadRuntimeInstances() {
	if s.opts.Paths.State == "" {
		return
	}
	path := filepath.Join(s.opts.Paths.State, RuntimeInstancesFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.logf("runtime instances: %v", err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRuntimeInstancesBytes+1))
	var ri runtimeInstances
	switch {
	case err != nil:
	case len(data) > maxRuntimeInstancesBytes:
		err = fmt.Errorf("over %d bytes", maxRuntimeInstancesBytes)
	default:
		err = json.Unmarshal(data, &ri)
	}
	if err != nil {
		s.logf("runtime instances: %s: %v (the instances started by name before are not started again; start them with opsvc start)", path, err)
		return
	}
	for _, name := range ri.Instances[:min(len(ri.Instances), maxRuntimeInstances)] {
		if strings.Contains(name, "@") && len(name) <= 256 {
			s.instances[name] = true
		}
	}
}

// saveRuntimeInstances records, off the loop, the runtime instances the daemon is to run. It
// runs on the loop after a start or stop of one.
func (s *Supervisor) saveRuntimeInstances() {
	if s.opts.Paths.State == "" {
		return
	}
	var names []string
	for name := range s.instances {
		if s.desired[name].Want {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	w := &s.rtiSaver
	w.mu.Lock()
	w.gen++
	gen := w.gen
	w.mu.Unlock()
	path := filepath.Join(s.opts.Paths.State, RuntimeInstancesFile)
	go func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if gen < w.did {
			return // a newer list is written already
		}
		w.did = gen
		data, _ := json.Marshal(runtimeInstances{Version: 1, Instances: names})
		if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
			s.logf("runtime instances: %v (they are not started again after a daemon restart)", err)
		}
	}()
}

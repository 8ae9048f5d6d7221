package supervisor

import (
	"path/filepath"
	"sync"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/unit"
)

// Preload reads the unit files while the daemon still starts (opens its
// logs, takes over the workers of the daemon before it), instead of after:
// the first load is the longest step of a start with many units. It starts
// watching the units directory before it reads, as Run would, so that no
// change made meanwhile is missed. Pass it to New in Options.Preload; Run
// takes its load as the first one.
type Preload struct {
	parsed  *unit.Cache
	watcher *unit.Watcher
	werr    error
	result  chan loadResult // one value: the load
	closing sync.Once
}

// StartPreload starts reading the unit files of paths (and, when watch is
// set, watching them) for a supervisor with these settings.
func StartPreload(paths config.Paths, settings config.Settings, watch bool) *Preload {
	p := &Preload{parsed: unit.NewCache(), result: make(chan loadResult, 1)}
	p.parsed.SetValidModels(settings.Orchestrator.ValidModels)
	if watch {
		p.watcher, p.werr = unit.NewWatcher(paths.Units, defaultDebounce)
	}
	instances := ""
	if paths.State != "" {
		instances = filepath.Join(paths.State, "instances")
	}
	go func() { // ends on its own: result has room for its one value
		set, err := unit.LoadCached(p.parsed, paths.Units, instances)
		p.result <- loadResult{set: set, err: err}
	}()
	return p
}

// Close stops the watcher, for a daemon that ends without Run (Run closes
// it otherwise); it may be called more than once.
func (p *Preload) Close() {
	if p == nil {
		return
	}
	p.closing.Do(func() {
		if p.watcher != nil {
			p.watcher.Close()
		}
	})
}

// firstLoad is the load Run starts from: the preload's, when there is one,
// else a load now. On the loop.
func (s *Supervisor) firstLoad() loadResult {
	p := s.opts.Preload
	if p == nil {
		return s.loadUnits()
	}
	r := <-p.result
	r.gen, r.choices = s.preloadGen, s.choicesSnapshot()
	return r
}

package unit

import (
	"crypto/sha256"
	"io/fs"
	"slices"
	"sync"
	"time"
)

// racyWindow is how close to the time it was read a file's mtime may be
// for its size and mtime alone to be trusted on the next load: file times
// have a coarse clock, so a file written again within this window after it
// was read may keep both.
const racyWindow = 50 * time.Millisecond

// Cache keeps what loads of a units directory parsed, per file, so that a
// load parses only the files that changed. A file's entry is reused when
// its path, size and mtime are as they were (and its mtime was older than
// racyWindow when it was read), or else when its content hashes the same.
// Entries of files a load did not see are dropped. A Cache is safe for
// concurrent use.
type Cache struct {
	mu     sync.Mutex
	files  map[string]*cached // by path as shown (Set.Dir joined with the name)
	builds map[string]*built  // by unit name: a valid unit built from these very layers
	models []string           // SetValidModels
	stats  CacheStats
}

// CacheStats counts how files were found by loads through a Cache.
type CacheStats struct {
	Parsed int // read and parsed
	Hashed int // read, and found the same by content
	Stat   int // found the same by size and mtime, not read
	Built  int // units built
	Reused int // units reused: built before from the same files, and valid then
}

// built is a unit built from layers that had no problems of its own.
type built struct {
	layers     []*layer
	noTemplate bool
	u          *Unit
	e          *effective
}

type cached struct {
	size  int64
	mtime time.Time
	read  time.Time // when it was read
	sum   [sha256.Size]byte
	dir   string
	lay   *layer
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{files: make(map[string]*cached), builds: make(map[string]*built)}
}

// Stats returns the counts so far.
// SetValidModels sets the models an [orchestrator] model may name in loads
// through c: opsvc.toml's valid_models (nil: the default list). Units built
// under another list are built again.
func (c *Cache) SetValidModels(models []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.Equal(c.models, models) {
		return
	}
	c.models = slices.Clone(models)
	clear(c.builds)
}

func (c *Cache) validModels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.models
}

func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// LoadCached is LoadWithDropins, reusing the parse of files unchanged since
// an earlier load through c.
func LoadCached(c *Cache, dir string, extra ...string) (*Set, error) {
	return loadWithDropins(c, dir, extra...)
}

// byStat returns the layer of src when fi shows the file as it was read.
func (c *Cache) byStat(src *source, fi fs.FileInfo) *layer {
	if c == nil || fi == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.files[src.path]
	if e == nil || e.dir != src.dir || e.size != fi.Size() || !e.mtime.Equal(fi.ModTime()) || e.read.Sub(e.mtime) < racyWindow {
		return nil
	}
	c.stats.Stat++
	return e.lay
}

// byContent returns the layer of src when data is what was parsed before,
// and records fi's size and mtime for it.
func (c *Cache) byContent(src *source, fi fs.FileInfo, data []byte, now time.Time) (*layer, [sha256.Size]byte) {
	sum := sha256.Sum256(data)
	if c == nil {
		return nil, sum
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.files[src.path]
	if e == nil || e.dir != src.dir || e.sum != sum {
		return nil, sum
	}
	e.size, e.read = -1, now
	if fi != nil {
		e.size, e.mtime = fi.Size(), fi.ModTime()
	}
	c.stats.Hashed++
	return e.lay, sum
}

// put records the parse of src. A file that could not be used at all is
// not kept: its problem may be the machine's (a decode given up under load).
func (c *Cache) put(src *source, fi fs.FileInfo, sum [sha256.Size]byte, lay *layer, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Parsed++
	if lay.failed[""] {
		delete(c.files, src.path)
		return
	}
	e := &cached{size: -1, read: now, sum: sum, dir: src.dir, lay: lay} // size -1: by content only
	if fi != nil {
		e.size, e.mtime = fi.Size(), fi.ModTime()
	}
	c.files[src.path] = e
}

// forget drops the entry of a file that is gone.
func (c *Cache) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.files, path)
}

// keep drops the entries of files not in seen, and the units built from
// files no longer kept.
func (c *Cache) keep(seen map[string]bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.files {
		if !seen[p] {
			delete(c.files, p)
		}
	}
	for name, b := range c.builds {
		for _, l := range b.layers {
			if !seen[l.src.path] {
				delete(c.builds, name)
				break
			}
		}
	}
}

// buildOne builds a unit of s, or, through a cache, reuses the unit built
// from the very same parsed files when that one was valid on its own (its
// requirements and cycles are checked again by buildAll). A unit that had
// problems is built again each time: what it lacked (an executable, for
// example) may be there now.
func (s *Set) buildOne(name string, layers []*layer, noTemplate bool) (*Unit, *effective, []Problem) {
	if u, e, ok := s.reuse(name, layers, noTemplate); ok {
		return u, e, nil
	}
	return s.buildNew(name, layers, noTemplate)
}

// reuse returns the unit the cache built before from these very layers,
// if there is one.
func (s *Set) reuse(name string, layers []*layer, noTemplate bool) (*Unit, *effective, bool) {
	c := s.ld.cache
	if c == nil {
		return nil, nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.builds[name]
	if b != nil && b.noTemplate == noTemplate && slices.Equal(b.layers, layers) {
		c.stats.Reused++
		return b.u, b.e, true
	}
	return nil, nil, false
}

// buildNew builds a unit, and keeps it in the cache when it is valid.
func (s *Set) buildNew(name string, layers []*layer, noTemplate bool) (*Unit, *effective, []Problem) {
	u, e, p := s.build(name, layers, noTemplate)
	c := s.ld.cache
	if c == nil {
		return u, e, p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Built++
	if len(p) == 0 {
		c.builds[name] = &built{layers: slices.Clone(layers), noTemplate: noTemplate, u: u, e: e}
	} else {
		delete(c.builds, name)
	}
	return u, e, p
}

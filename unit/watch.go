package unit

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// defaultDebounce is the quiet time NewWatcher waits for when given none.
const defaultDebounce = 200 * time.Millisecond

// maxSymlinks bounds the chain of symbolic links followed from the units
// directory.
const maxSymlinks = 40

// Watcher tells when a units directory may have changed. It watches the
// directory, every NAME.d/ in it, the directories of symbolic links on the
// way to it (so a swapped Kubernetes-style "..data" link is noticed), and the
// directories of files that *.toml entries link to. A change says "look
// again"; Take says at what: the entries that changed, or everything.
type Watcher struct {
	fw       *fsnotify.Watcher
	dir      string // absolute, not resolved
	debounce time.Duration
	changes  chan struct{} // buffer 1: values coalesce
	kick     chan struct{} // buffer 1: reader → loop, "something relevant happened"
	kickNow  chan struct{} // buffer 1: reader → loop, "a finished change happened"
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	closeErr error

	mu      sync.Mutex
	filter  map[string]dirFilter // watched directory → the names in it that count
	real    string               // the resolved units directory
	dropins map[string]string    // resolved NAME.d/ directory → "NAME.d"
	pending map[string]bool      // entries changed since the last Take, relative to the units directory
	all     bool                 // since the last Take, something changed that no entry names
}

// maxPending bounds the entries Take returns; past it, Take says "all".
const maxPending = 1024

// dirFilter says which entries of a watched directory count.
type dirFilter struct {
	units bool            // units or drop-in directory: *.toml, *.d, and "..*" (Kubernetes) names
	names map[string]bool // and these names
}

func (f dirFilter) match(name string) bool {
	if f.names[name] {
		return true
	}
	if !f.units {
		return false
	}
	if strings.HasPrefix(name, "..") {
		return true
	}
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".toml") || strings.HasSuffix(name, ".d"))
}

// NewWatcher watches the units directory dir. A finished change (a file
// renamed into place, created with content, or removed) that comes after a
// quiet time of debounce is passed on to Changes() at once; the changes that
// follow it within debounce, and writes in place (which may not be done
// yet), are a burst: Changes() receives one value for them once debounce has
// passed without another (or at most ten debounce periods after the burst
// began). debounce <= 0 means 200ms. The error is for a directory that
// cannot be watched.
func NewWatcher(dir string, debounce time.Duration) (*Watcher, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unit: watch %s: %w", dir, err)
	}
	if debounce <= 0 {
		debounce = defaultDebounce
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("unit: watch %s: %w (raise fs.inotify.max_user_instances, or use opsvc reload)", dir, err)
	}
	w := &Watcher{
		fw:       fw,
		dir:      abs,
		debounce: debounce,
		changes:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		kickNow:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		filter:   make(map[string]dirFilter),
		pending:  make(map[string]bool),
	}
	if err := w.sync(); err != nil {
		fw.Close()
		return nil, fmt.Errorf("unit: watch %s: %w", dir, unwrapPath(err))
	}
	w.all = false // what is there now is what the first load reads
	w.wg.Add(2)
	go w.read(fw.Events, fw.Errors)
	go w.loop()
	return w, nil
}

// Changes receives a value when the directory should be read again. It is
// never closed.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Close stops watching and waits for the watcher's goroutines to end.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		close(w.done)
		w.closeErr = w.fw.Close()
		w.wg.Wait()
	})
	return w.closeErr
}

// read drains events and errors until both channels are closed. It never
// blocks on anything but them: it only pokes the loop.
func (w *Watcher) read(events <-chan fsnotify.Event, errs <-chan error) {
	defer w.wg.Done()
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.relevant(ev) {
				w.note(ev.Name)
				if finished(ev) {
					w.pokeNow()
				} else {
					w.poke()
				}
			}
		case _, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// fsnotify.ErrEventOverflow means events were lost; any other
			// error may hide a change too. Either way: look again, at
			// everything.
			w.mu.Lock()
			w.all = true
			w.mu.Unlock()
			w.poke()
		}
	}
}

// Take returns what changed since the last Take: the entries of the units
// directory, as "NAME.toml", "NAME.d" or "NAME.d/FILE.toml", in order; or
// all, when a change may concern anything (events were lost, the directory
// or a link on the way to it changed, or too many entries changed).
func (w *Watcher) Take() (entries []string, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	all, w.all = w.all, false
	if !all {
		for p := range w.pending {
			entries = append(entries, p)
		}
		slices.Sort(entries)
	}
	clear(w.pending)
	return entries, all
}

// note records the entry a relevant event names.
func (w *Watcher) note(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all {
		return
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	var entry string
	switch {
	case name == w.real:
		// the units directory itself
	case w.dropins[name] != "":
		entry = w.dropins[name]
	case dir == w.real && !strings.HasPrefix(base, "."):
		entry = base
	case w.dropins[dir] != "":
		entry = w.dropins[dir] + "/" + base
	}
	if entry == "" || len(w.pending) >= maxPending {
		w.all = true
		clear(w.pending)
		return
	}
	w.pending[entry] = true
}

func (w *Watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) pokeNow() {
	select {
	case w.kickNow <- struct{}{}:
	default:
	}
}

// finished reports whether a relevant event leaves the entry complete: a
// removal or rename, or a creation (a rename into place shows as one) of
// something that is not an empty file. A write may be followed by more.
func finished(ev fsnotify.Event) bool {
	if ev.Op.Has(fsnotify.Remove) || ev.Op.Has(fsnotify.Rename) {
		return true
	}
	if !ev.Op.Has(fsnotify.Create) || ev.Op.Has(fsnotify.Write) {
		return false
	}
	fi, err := os.Stat(ev.Name)
	return err != nil || !fi.Mode().IsRegular() || fi.Size() > 0
}

// relevant reports whether ev can change what Load reads.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod || ev.Op == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.filter[ev.Name]; ok { // a watched directory itself
		return true
	}
	f, ok := w.filter[filepath.Dir(ev.Name)]
	return ok && f.match(filepath.Base(ev.Name))
}

// loop owns the watch list and the debounce timer.
func (w *Watcher) loop() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		pending  bool      // a burst is being waited out
		deadline time.Time // the latest end of that burst
		quiet    time.Time // a finished change from then on is passed on at once
	)
	send := func() {
		select {
		case w.changes <- struct{}{}:
		default: // a change is already waiting to be read
		}
	}
	for {
		now := false
		select {
		case <-w.done:
			return
		case <-w.kickNow:
			now = true
		case <-w.kick:
		case <-timer.C:
			pending = false
			quiet = time.Now().Add(w.debounce)
			send()
			continue
		}
		t := time.Now()
		if now && !pending && !t.Before(quiet) {
			// The first finished change after a quiet time: at once. What
			// follows within debounce is a burst. New NAME.d/ directories are
			// watched and links re-resolved before the change is passed on, so
			// a file written into them once the load has begun is seen, and
			// one written before is read by that load.
			_ = w.sync()
			send()
			quiet = t.Add(w.debounce)
			continue
		}
		_ = w.sync()
		if !pending {
			pending, deadline = true, t.Add(10*w.debounce)
		}
		timer.Reset(max(0, min(w.debounce, deadline.Sub(t))))
		quiet = t.Add(w.debounce)
	}
}

// sync brings the watch list in line with the directory as it is now. The
// error is for the units directory itself.
func (w *Watcher) sync() error {
	want, real, dropins := w.plan()
	w.mu.Lock()
	have := w.filter
	w.mu.Unlock()
	for d := range have {
		if _, ok := want[d]; !ok {
			_ = w.fw.Remove(d) // gone already if the directory was removed
		}
	}
	var err error
	if real == "" {
		_, err = os.Stat(w.dir)
		if err == nil {
			err = fmt.Errorf("cannot resolve %s", w.dir)
		}
	}
	// Add every wanted directory, also those already watched: a directory
	// removed and made again under the same name needs a new watch.
	for d := range want {
		if e := w.fw.Add(d); e != nil {
			delete(want, d)
			if d == real {
				err = e
			}
		}
	}
	w.mu.Lock()
	w.filter, w.dropins = want, dropins
	if real != w.real {
		w.real, w.all = real, true
	}
	w.mu.Unlock()
	return err
}

// plan returns the directories to watch with their filters, the resolved
// units directory ("" if it does not resolve), and the resolved NAME.d/
// directories in it with their names.
func (w *Watcher) plan() (map[string]dirFilter, string, map[string]string) {
	want := make(map[string]dirFilter)
	dropins := make(map[string]string)
	addName := func(dir, name string) {
		f := want[dir]
		if f.names == nil {
			f.names = make(map[string]bool)
		}
		f.names[name] = true
		want[dir] = f
	}
	addUnits := func(dir string) {
		f := want[dir]
		f.units = true
		want[dir] = f
	}
	// The parent of the directory, and of each link on the way to the real
	// directory, for the link's name: a removed, re-created or swapped
	// directory or link is seen there.
	p := w.dir
	for range maxSymlinks {
		addName(filepath.Dir(p), filepath.Base(p))
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	real, err := filepath.EvalSymlinks(w.dir)
	if err != nil {
		return want, "", dropins
	}
	addUnits(real)
	entries, _ := os.ReadDir(real)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		isLink := e.Type()&fs.ModeSymlink != 0
		switch {
		case strings.HasSuffix(n, ".d"):
			r, err := filepath.EvalSymlinks(filepath.Join(real, n))
			if err != nil {
				continue
			}
			if fi, err := os.Stat(r); err == nil && fi.IsDir() {
				addUnits(r)
				if _, taken := dropins[r]; taken {
					dropins[r] = "" // two names: a change there is a change of all
				} else if r != real {
					dropins[r] = n
				}
			}
		case strings.HasSuffix(n, ".toml") && isLink:
			// A linked file: watch where it points, e.g. ..data/a.toml.
			if r, err := filepath.EvalSymlinks(filepath.Join(real, n)); err == nil {
				addName(filepath.Dir(r), filepath.Base(r))
			}
		}
	}
	return want, real, dropins
}

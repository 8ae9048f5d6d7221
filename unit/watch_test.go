package unit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// waitTimeout bounds every wait for a change; generous for a loaded machine.
const waitTimeout = 10 * time.Second

func startWatcher(t *testing.T, dir string) *Watcher {
	t.Helper()
	w, err := NewWatcher(dir, 20*time.Millisecond)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// waitFor receives changes until Load(dir) satisfies ok. Load runs only
// after a change, so a missed event fails the test by timeout. Alongside,
// it follows the changes the way the daemon does, with LoadChanged on what
// Take says, and waits for that set to be the same as Load's too.
func waitFor(t *testing.T, w *Watcher, dir, what string, ok func(*Set) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	c := NewCache()
	w.Take()
	prev, err := LoadCached(c, dir)
	if err != nil {
		prev = nil
	}
	for {
		select {
		case <-w.Changes():
			entries, all := w.Take()
			if prev == nil || all {
				prev, err = LoadCached(c, dir)
			} else {
				prev, err = LoadChanged(c, prev, entries)
			}
			if err != nil {
				prev = nil
			}
			if s, err := Load(dir); err == nil && ok(s) && prev != nil && fingerprint(prev) == fingerprint(s) {
				return
			}
		case <-deadline.C:
			s, err := Load(dir)
			t.Fatalf("no change noticed within %v: %s (Load now: %v, err %v; followed by changes: %s)", waitTimeout, what, fingerprint(s), err, fingerprint(prev))
		}
	}
}

// fingerprint shows every unit's hash and every problem of s.
func fingerprint(s *Set) string {
	if s == nil {
		return "nil"
	}
	var parts []string
	for _, n := range sortedKeys(s.Units) {
		parts = append(parts, n+"="+s.Units[n].Hash)
	}
	for _, n := range sortedKeys(s.Problems) {
		for _, p := range s.Problems[n] {
			parts = append(parts, n+"! "+p.Error())
		}
	}
	return strings.Join(parts, "\n")
}

func unitText(desc string) string {
	return fmt.Sprintf("[unit]\ndescription = %q\n[service]\nexec = [\"/bin/sh\"]\n", desc)
}

func described(name, desc string) func(*Set) bool {
	return func(s *Set) bool { u := s.Units[name]; return u != nil && u.Description == desc }
}

func absent(name string) func(*Set) bool {
	return func(s *Set) bool { _, ok := s.Units[name]; return !ok }
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWatchEdits(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	write(t, a, unitText("v1"))
	w := startWatcher(t, dir)

	// Atomic save: write a temporary file, rename it over the unit file.
	tmp := filepath.Join(dir, ".a.toml.tmp1234")
	write(t, tmp, unitText("v2"))
	mustDo(t, os.Rename(tmp, a))
	waitFor(t, w, dir, "write-then-rename", described("a", "v2"))

	// Truncate and write in place.
	f, err := os.OpenFile(a, os.O_WRONLY|os.O_TRUNC, 0)
	mustDo(t, err)
	_, err = f.WriteString(unitText("v3"))
	mustDo(t, err)
	mustDo(t, f.Close())
	waitFor(t, w, dir, "truncate-and-write", described("a", "v3"))

	// Backup rename: move the old file aside, write a new one.
	mustDo(t, os.Rename(a, a+"~"))
	write(t, a, unitText("v4"))
	waitFor(t, w, dir, "backup-rename", described("a", "v4"))

	// Create and remove a unit file.
	b := filepath.Join(dir, "b.toml")
	write(t, b, unitText("b1"))
	waitFor(t, w, dir, "create b.toml", described("b", "b1"))
	mustDo(t, os.Remove(b))
	waitFor(t, w, dir, "remove b.toml", absent("b"))
}

func TestWatchDropins(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.toml"), unitText("base"))
	w := startWatcher(t, dir)

	// A new NAME.d/ gets a watch: a file written into it later is seen.
	d := filepath.Join(dir, "a.d")
	mustDo(t, os.Mkdir(d, 0o755))
	waitFor(t, w, dir, "mkdir a.d", described("a", "base"))
	in := filepath.Join(d, "10.toml")
	write(t, in, "[unit]\ndescription = \"drop-in 1\"\n")
	waitFor(t, w, dir, "create a.d/10.toml", described("a", "drop-in 1"))
	write(t, in, "[unit]\ndescription = \"drop-in 2\"\n")
	waitFor(t, w, dir, "write a.d/10.toml", described("a", "drop-in 2"))
	mustDo(t, os.Remove(in))
	waitFor(t, w, dir, "remove a.d/10.toml", described("a", "base"))
	mustDo(t, os.Remove(d))
	waitFor(t, w, dir, "rmdir a.d", described("a", "base"))

	// The same directory made again, and one moved in whole.
	mustDo(t, os.Mkdir(d, 0o755))
	waitFor(t, w, dir, "mkdir a.d again", described("a", "base"))
	write(t, in, "[unit]\ndescription = \"drop-in 3\"\n")
	waitFor(t, w, dir, "create a.d/10.toml again", described("a", "drop-in 3"))
	mustDo(t, os.RemoveAll(d))
	waitFor(t, w, dir, "rm -r a.d", described("a", "base"))
	staged := filepath.Join(t.TempDir(), "staged.d")
	write(t, filepath.Join(staged, "10.toml"), "[unit]\ndescription = \"moved in\"\n")
	mustDo(t, os.Rename(staged, d))
	waitFor(t, w, dir, "rename a directory to a.d", described("a", "moved in"))
	write(t, filepath.Join(d, "20.toml"), "[unit]\ndescription = \"after the move\"\n")
	waitFor(t, w, dir, "write into a moved-in a.d", described("a", "after the move"))
}

// TestWatchSymlinkedDir swaps the target of a symlinked units directory the
// Kubernetes way: units -> ..data -> ..2026_N/, ..data replaced by renaming
// a new link over it.
func TestWatchSymlinkedDir(t *testing.T) {
	base := t.TempDir()
	units := filepath.Join(base, "units")
	version := func(n int) string {
		v := fmt.Sprintf("..2026_%d", n)
		write(t, filepath.Join(base, v, "a.toml"), unitText(fmt.Sprintf("v%d", n)))
		return v
	}
	swap := func(target string) {
		tmp := filepath.Join(base, "..data_tmp")
		mustDo(t, os.Symlink(target, tmp))
		mustDo(t, os.Rename(tmp, filepath.Join(base, "..data")))
	}
	mustDo(t, os.Symlink(version(1), filepath.Join(base, "..data")))
	mustDo(t, os.Symlink("..data", units))
	w := startWatcher(t, units)

	swap(version(2))
	waitFor(t, w, units, "swap ..data to ..2026_2", described("a", "v2"))
	mustDo(t, os.RemoveAll(filepath.Join(base, "..2026_1")))

	swap(version(3))
	waitFor(t, w, units, "swap ..data to ..2026_3", described("a", "v3"))

	// The new target is watched itself.
	write(t, filepath.Join(base, "..2026_3", "b.toml"), unitText("b"))
	waitFor(t, w, units, "write into the current target", described("b", "b"))
}

// TestWatchLinkedEntries is a Kubernetes ConfigMap volume mounted as the
// units directory: a.toml -> ..data/a.toml, ..data -> ..2026_N/.
func TestWatchLinkedEntries(t *testing.T) {
	units := t.TempDir()
	write(t, filepath.Join(units, "..2026_1", "a.toml"), unitText("v1"))
	mustDo(t, os.Symlink("..2026_1", filepath.Join(units, "..data")))
	mustDo(t, os.Symlink(filepath.Join("..data", "a.toml"), filepath.Join(units, "a.toml")))
	w := startWatcher(t, units)

	write(t, filepath.Join(units, "..2026_2", "a.toml"), unitText("v2"))
	tmp := filepath.Join(units, "..data_tmp")
	mustDo(t, os.Symlink("..2026_2", tmp))
	mustDo(t, os.Rename(tmp, filepath.Join(units, "..data")))
	waitFor(t, w, units, "swap ..data", described("a", "v2"))

	// An edit of the file a link points to, in place.
	write(t, filepath.Join(units, "..2026_2", "a.toml"), unitText("v2 edited"))
	waitFor(t, w, units, "edit the linked file", described("a", "v2 edited"))
}

func TestWatchDirRecreated(t *testing.T) {
	units := filepath.Join(t.TempDir(), "units")
	write(t, filepath.Join(units, "a.toml"), unitText("v1"))
	w := startWatcher(t, units)
	mustDo(t, os.RemoveAll(units))
	write(t, filepath.Join(units, "a.toml"), unitText("v2"))
	waitFor(t, w, units, "remove and re-create the directory", described("a", "v2"))
	write(t, filepath.Join(units, "a.toml"), unitText("v3"))
	waitFor(t, w, units, "edit in the re-created directory", described("a", "v3"))
}

func TestWatchOverflow(t *testing.T) {
	dir := t.TempDir()
	w := startWatcher(t, dir)
	events, errs := make(chan fsnotify.Event), make(chan error)
	w.wg.Add(1)
	go w.read(events, errs)
	defer func() { close(events); close(errs) }()
	errs <- fsnotify.ErrEventOverflow
	select {
	case <-w.Changes():
	case <-time.After(waitTimeout):
		t.Fatal("no change after fsnotify.ErrEventOverflow")
	}
}

func TestWatchRelevant(t *testing.T) {
	w := &Watcher{filter: map[string]dirFilter{
		"/u":     {units: true},
		"/u/a.d": {units: true},
		"/":      {names: map[string]bool{"u": true}},
	}}
	for _, tt := range []struct {
		ev   fsnotify.Event
		want bool
	}{
		{fsnotify.Event{Name: "/u/a.toml", Op: fsnotify.Write}, true},
		{fsnotify.Event{Name: "/u/a.toml", Op: fsnotify.Chmod}, false},
		{fsnotify.Event{Name: "/u/a.toml", Op: fsnotify.Chmod | fsnotify.Write}, true},
		{fsnotify.Event{Name: "/u/a.toml", Op: fsnotify.Rename}, true},
		{fsnotify.Event{Name: "/u/.a.toml.swp", Op: fsnotify.Create}, false},
		{fsnotify.Event{Name: "/u/a.toml~", Op: fsnotify.Create}, false},
		{fsnotify.Event{Name: "/u/notes.txt", Op: fsnotify.Write}, false},
		{fsnotify.Event{Name: "/u/..data", Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: "/u/b.d", Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: "/u/a.d/10.toml", Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: "/u/a.d", Op: fsnotify.Remove}, true},
		{fsnotify.Event{Name: "/u", Op: fsnotify.Remove}, true},
		{fsnotify.Event{Name: "/other", Op: fsnotify.Create}, false},
		{fsnotify.Event{Name: "/x/a.toml", Op: fsnotify.Create}, false},
	} {
		if got := w.relevant(tt.ev); got != tt.want {
			t.Errorf("relevant(%v) = %v, want %v", tt.ev, got, tt.want)
		}
	}
}

func TestNewWatcherMissingDir(t *testing.T) {
	if w, err := NewWatcher(filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		w.Close()
		t.Fatal("NewWatcher on a missing directory succeeded")
	}
}

// TestWatchFinishedChangeAtOnce: a file renamed into place, or removed, after
// a quiet time is passed on without waiting for the debounce (an hour here).
func TestWatchFinishedChangeAtOnce(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	write(t, a, unitText("v1"))
	w, err := NewWatcher(dir, time.Hour)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	tmp := filepath.Join(dir, ".a.toml.tmp")
	write(t, tmp, unitText("v2"))
	mustDo(t, os.Rename(tmp, a))
	waitFor(t, w, dir, "rename into place, debounce of an hour", described("a", "v2"))
}

func TestWatchFinished(t *testing.T) {
	dir := t.TempDir()
	empty, full := filepath.Join(dir, "e.toml"), filepath.Join(dir, "f.toml")
	write(t, empty, "")
	write(t, full, unitText("x"))
	for _, tt := range []struct {
		ev   fsnotify.Event
		want bool
	}{
		{fsnotify.Event{Name: full, Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: empty, Op: fsnotify.Create}, false},
		{fsnotify.Event{Name: full, Op: fsnotify.Write}, false},
		{fsnotify.Event{Name: full, Op: fsnotify.Create | fsnotify.Write}, false},
		{fsnotify.Event{Name: full, Op: fsnotify.Remove}, true},
		{fsnotify.Event{Name: full, Op: fsnotify.Rename}, true},
		{fsnotify.Event{Name: filepath.Join(dir, "gone.toml"), Op: fsnotify.Create}, true},
	} {
		if got := finished(tt.ev); got != tt.want {
			t.Errorf("finished(%v) = %v, want %v", tt.ev, got, tt.want)
		}
	}
}

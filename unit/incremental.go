package unit

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LoadChanged is LoadCached after a change of only the entries named in
// changed (as Watcher.Take gives them: "NAME.toml", "NAME.d",
// "NAME.d/FILE.toml"), given prev, the set the last load through c made of
// the same directory with the same extra directories. It reads those
// entries again, and no others: it neither lists nor stats the rest. When
// the change can reach other units (a unit file added or removed, a
// template, a dependency changed, a unit that had problems), every unit is
// built again from the files in c; otherwise only the changed units are.
// Changed on the result says which. A nil prev, or an entry that is not a
// unit's, loads everything.
func LoadChanged(c *Cache, prev *Set, changed []string, extra ...string) (*Set, error) {
	if c == nil || prev == nil || prev.ld == nil || prev.ld.cache != c {
		if prev == nil {
			return nil, fmt.Errorf("unit: load changed files: no earlier load (load the whole directory)")
		}
		return LoadCached(c, prev.Dir, extra...)
	}
	dir := prev.Dir
	names := make(map[string]bool)
	for _, p := range changed {
		name, ok := entryUnit(p)
		if !ok {
			return LoadCached(c, dir, extra...)
		}
		names[name] = true
	}
	ld, err := newLoader(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	ld.open = openIn(dir)
	ld.useCache(c)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return LoadCached(c, dir, extra...) // says why it cannot be read
	}
	s := &Set{
		Dir:      dir,
		Units:    maps.Clone(prev.Units),
		Problems: maps.Clone(prev.Problems),
		ld:       ld,
		files:    maps.Clone(prev.files),
		dropins:  maps.Clone(prev.dropins),
		effs:     maps.Clone(prev.effs),
		deps:     maps.Clone(prev.deps),
		partial:  true,
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		s.changed = append(s.changed, name)
		ld.rereadFile(s, name)
		ld.rereadDropins(s, name, extra)
	}
	for _, name := range s.changed {
		if !s.rebuild(prev, name) {
			s.rebuildAll()
			break
		}
	}
	return s, nil
}

// Changed returns the units a LoadChanged may have changed, and whether
// only those: false for a set built whole.
func (s *Set) Changed() (names []string, only bool) {
	return s.changed, s.partial
}

// entryUnit returns the unit an entry of the units directory belongs to; ok
// is false for an entry that is not one unit's.
func entryUnit(p string) (string, bool) {
	first, rest, sub := strings.Cut(p, "/")
	var name string
	switch {
	case strings.HasPrefix(first, "."):
		return "", false
	case !sub && strings.HasSuffix(first, ".toml"):
		name = strings.TrimSuffix(first, ".toml")
	case strings.HasSuffix(first, ".d") && (!sub || !strings.Contains(rest, "/")):
		name = strings.TrimSuffix(first, ".d")
	default:
		return "", false
	}
	if ValidName(name) != nil || isTemplate(name) {
		return "", false
	}
	return name, true
}

// rereadFile reads NAME.toml of s's directory again, as load does.
func (l *loader) rereadFile(s *Set, name string) {
	n := name + ".toml"
	delete(s.files, name)
	src := &source{path: filepath.Join(l.dir, n), dir: l.absDir}
	fi, err := os.Lstat(filepath.Join(l.absDir, n))
	if err != nil {
		if l.cache != nil {
			l.cache.forget(src.path)
		}
		return // gone
	}
	info := fi
	if fi.Mode()&fs.ModeSymlink != 0 {
		info = nil // a link may be pointed elsewhere: only the content counts
		fi, err = os.Stat(filepath.Join(l.absDir, n))
		if err != nil {
			s.files[name] = unreadable(src, err)
			return
		}
	}
	if fi.Mode().IsRegular() {
		s.files[name] = l.readFile(n, src, info)
	}
}

// rereadDropins reads NAME.d/ of s's directory and of each of extra again,
// as loadWithDropins does.
func (l *loader) rereadDropins(s *Set, name string, extra []string) {
	n := name + ".d"
	delete(s.dropins, name)
	if fi, err := os.Stat(filepath.Join(l.absDir, n)); err == nil && fi.IsDir() {
		s.dropins[name] = l.readDropins(n)
	}
	for _, x := range extra {
		if fi, err := os.Lstat(filepath.Join(x, n)); err != nil || !fi.IsDir() {
			continue
		}
		xl, err := newLoader(os.DirFS(x), x)
		if err != nil {
			continue
		}
		xl.open = openIn(x)
		xl.cache, xl.seen, xl.now, xl.models = l.cache, l.seen, l.now, l.models
		s.dropins[name] = append(s.dropins[name], xl.readDropins(n)...)
	}
}

// rebuild builds unit name of s again on its own, when that cannot change
// any other unit: it was a valid unit of prev, it still has its file, and
// what it requires and runs after is the same. It reports whether it did.
func (s *Set) rebuild(prev *Set, name string) bool {
	if _, ok := prev.Units[name]; !ok {
		return false
	}
	if _, ok := prev.files[name]; !ok {
		return false
	}
	layers, noTemplate := s.layersOf(name)
	if layers == nil {
		return false
	}
	u, e, p := s.buildOne(name, layers, noTemplate)
	deps := depsOf(e)
	if !sameEdges(deps, prev.deps[name]) {
		return false
	}
	s.effs[name], s.deps[name] = e, deps
	p = append(p, s.missingRequires(deps)...)
	e.sortProblems(p)
	if len(p) > 0 {
		delete(s.Units, name)
		s.Problems[name] = p
	} else {
		delete(s.Problems, name)
		s.Units[name] = u
	}
	return true
}

// sameEdges reports whether two units' dependencies lead to the same units
// in the same ways.
func sameEdges(a, b []dependency) bool {
	return slices.EqualFunc(a, b, func(x, y dependency) bool { return x.to == y.to && x.requires == y.requires })
}

// rebuildAll builds every unit of s again from its files, keeping the
// problems of entries that are not units (bad names).
func (s *Set) rebuildAll() {
	s.partial = false
	probs := make(map[string][]Problem)
	for name, p := range s.Problems {
		if _, ok := s.files[name]; !ok && s.effs[name] == nil {
			probs[name] = p
		}
	}
	s.Units, s.Problems = make(map[string]*Unit), probs
	s.effs, s.deps = make(map[string]*effective), make(map[string][]dependency)
	s.buildAll()
}

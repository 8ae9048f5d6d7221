package unit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opsvc/opsvc/internal/parallel"
)

// Validate checks a unit file or a units directory without a daemon, for
// `opsvc validate PATH`. For a file it reports the problems of that unit as
// loaded from its directory (so its drop-ins apply, and requires is checked
// against its neighbours); a file in a NAME.d/ directory stands for unit NAME.
// It returns nil when there is nothing wrong.
func Validate(path string) []Problem { return ValidateWith(path, nil) }

// ValidateWith is Validate with the models an [orchestrator] model may name
// (opsvc.toml's valid_models; nil: the default list).
func ValidateWith(path string, models []string) []Problem {
	load := func(dir string) (*Set, error) {
		c := NewCache()
		c.SetValidModels(models)
		return LoadCached(c, dir)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return []Problem{{File: path, Line: 1, Col: 1, Msg: "cannot read: " + unwrapPath(err).Error(),
			Hint: "give a unit file (NAME.toml) or a units directory"}}
	}
	if fi.IsDir() {
		s, err := load(path)
		if err != nil {
			return []Problem{{File: path, Line: 1, Col: 1, Msg: unwrapPath(err).Error()}}
		}
		var out []Problem
		for _, name := range sortedKeys(s.Problems) {
			out = append(out, s.Problems[name]...)
		}
		return dedupe(out)
	}
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	if strings.HasPrefix(base, ".") || !strings.HasSuffix(base, ".toml") {
		return []Problem{{File: path, Line: 1, Col: 1, Msg: "not a unit file: unit files are named NAME.toml, not starting with '.'",
			Hint: "rename it, or give its directory"}}
	}
	name := strings.TrimSuffix(base, ".toml")
	if parent := filepath.Base(dir); strings.HasSuffix(parent, ".d") && !strings.HasPrefix(parent, ".") {
		name = strings.TrimSuffix(parent, ".d")
		dir = filepath.Dir(dir)
	}
	s, err := load(dir)
	if err != nil {
		return []Problem{{File: path, Line: 1, Col: 1, Msg: unwrapPath(err).Error()}}
	}
	if _, ok := s.files[name]; !ok && s.Problems[name] == nil { // a drop-in without its unit
		var out []Problem
		for _, l := range s.dropins[name] {
			out = append(out, l.problems...)
		}
		return out
	}
	return dedupe(s.Problems[name])
}

func dedupe(probs []Problem) []Problem {
	seen := make(map[string]bool, len(probs))
	var out []Problem
	for _, p := range probs {
		if k := p.Error(); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// buildAll builds every unit and instance file and runs the checks that
// need the whole set: requires naming a missing unit, and dependency cycles.
func (s *Set) buildAll() {
	if s.ld != nil {
		s.ld.inPath = make(map[[2]string]bool)
		defer func() { s.ld.inPath = nil }()
	}
	built := make(map[string]*Unit)
	probs := make(map[string][]Problem)
	names := sortedKeys(s.files)
	type result struct {
		u          *Unit
		e          *effective
		p          []Problem
		layers     []*layer
		noTemplate bool
	}
	// Units the cache built before from the same files are taken as they
	// are; the others are built on every CPU.
	res := make([]result, len(names))
	var todo []int
	for i, name := range names {
		if isTemplate(name) {
			continue
		}
		r := &res[i]
		r.layers, r.noTemplate = s.layersOf(name)
		var ok bool
		if r.u, r.e, ok = s.reuse(name, r.layers, r.noTemplate); !ok {
			todo = append(todo, i)
		}
	}
	parallel.For(len(todo), buildsPerWorker, func(j int) {
		r := &res[todo[j]]
		r.u, r.e, r.p = s.buildNew(names[todo[j]], r.layers, r.noTemplate)
	})
	for i, name := range names {
		if isTemplate(name) {
			var p []Problem
			for _, l := range append([]*layer{s.files[name]}, s.dropins[name]...) {
				p = append(p, l.problems...)
			}
			if len(p) > 0 {
				s.Problems[name] = p
			}
			continue
		}
		r := res[i]
		built[name], s.effs[name], s.deps[name], probs[name] = r.u, r.e, depsOf(r.e), r.p
	}
	s.addInstanceDeps(s.deps)
	cycles := findCycles(s.deps)
	for _, name := range sortedKeys(built) {
		p := append(probs[name], s.missingRequires(s.deps[name])...)
		p = append(p, cycles[name]...)
		s.effs[name].sortProblems(p)
		if len(p) > 0 {
			s.Problems[name] = p
		} else {
			s.Units[name] = built[name]
		}
	}
}

// layersOf returns the files of unit name in the order they apply: the
// template (for an instance), NAME.toml, NAME@.d/ (for an instance), NAME.d/.
// The flag is set for an instance file without a template. It returns nil
// for a name with neither file nor template.
func (s *Set) layersOf(name string) ([]*layer, bool) {
	prefix, inst, at := splitName(name)
	f, hasFile := s.files[name]
	if at && inst != "" {
		if t, ok := s.files[prefix+"@"]; ok {
			layers := []*layer{t}
			if hasFile {
				layers = append(layers, f)
			}
			layers = append(layers, s.dropins[prefix+"@"]...)
			return append(layers, s.dropins[name]...), false
		}
	}
	if !hasFile {
		return nil, false
	}
	return append([]*layer{f}, s.dropins[name]...), at && inst != ""
}

// exists reports whether name is a unit of the set, valid or not, or an
// instance of one of its templates.
func (s *Set) exists(name string) bool {
	if _, ok := s.files[name]; ok && !isTemplate(name) {
		return true
	}
	if _, ok := s.Problems[name]; ok && !isTemplate(name) {
		return true
	}
	prefix, inst, at := splitName(name)
	if at && inst != "" {
		_, ok := s.files[prefix+"@"]
		return ok
	}
	return false
}

// maxGraph bounds the instances addInstanceDeps adds.
const maxGraph = 10000

// addInstanceDeps adds to deps the entries of every instance they name that
// no file makes (a template makes it on start), so cycles through such
// instances are found too.
func (s *Set) addInstanceDeps(deps map[string][]dependency) {
	queue := sortedKeys(deps)
	for len(queue) > 0 && len(deps) < maxGraph {
		n := queue[0]
		queue = queue[1:]
		for _, d := range deps[n] {
			if _, ok := deps[d.to]; ok || ValidName(d.to) != nil || isTemplate(d.to) {
				continue
			}
			layers, _ := s.layersOf(d.to)
			if layers == nil {
				continue
			}
			e := merge(layers)
			e.expand(d.to)
			deps[d.to] = depsOf(e)
			queue = append(queue, d.to)
		}
	}
}

// dependency is one requires or after entry.
type dependency struct {
	to       string
	requires bool
	origin
}

func depsOf(e *effective) []dependency {
	var deps []dependency
	for _, id := range []string{"unit.requires", "unit.after"} {
		for _, v := range e.list[id] {
			deps = append(deps, dependency{to: v.v.(string), requires: id == "unit.requires", origin: v.origin})
		}
	}
	return deps
}

func (s *Set) missingRequires(deps []dependency) []Problem {
	var out []Problem
	for _, d := range deps {
		if !d.requires || ValidName(d.to) != nil || s.exists(d.to) {
			continue
		}
		out = append(out, problemAt(d.origin, fmt.Sprintf("requires %q, but there is no such unit", d.to),
			fmt.Sprintf("add %s.toml, or remove it from requires (after may name a unit that is missing)", d.to)))
	}
	return out
}

func problemAt(o origin, msg, hint string) Problem {
	at := o.at
	if !at.Valid() {
		at = pos{Line: 1, Col: 1}
	}
	return Problem{File: o.src.path, Line: at.Line, Col: at.Col, Msg: msg, Hint: hint}
}

// findCycles finds dependency cycles through requires and after, and
// returns a problem for each unit on a cycle, at the entry that leads to the
// next unit of the cycle. Entries naming units outside deps are ignored.
func findCycles(deps map[string][]dependency) map[string][]Problem {
	const (
		white = iota
		grey
		black
	)
	out := make(map[string][]Problem)
	color := make(map[string]int, len(deps))
	var (
		stack []string     // the current path
		edges []dependency // edges[i] leads from stack[i] to stack[i+1]
	)
	report := func(cyc []string, via []dependency) {
		for j, n := range cyc {
			if len(out[n]) > 0 {
				continue
			}
			names := append(append(append([]string(nil), cyc[j:]...), cyc[:j]...), n)
			out[n] = []Problem{problemAt(via[j].origin, "dependency cycle: "+strings.Join(names, " -> "),
				"requires and after both order starts: remove one of these entries")}
		}
	}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, ok := deps[d.to]; !ok {
				continue
			}
			switch color[d.to] {
			case grey:
				i := len(stack) - 1
				for stack[i] != d.to {
					i--
				}
				via := append(append([]dependency(nil), edges[i:]...), d)
				report(stack[i:], via)
			case white:
				edges = append(edges, d)
				visit(d.to)
				edges = edges[:len(edges)-1]
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(deps) {
		if color[n] == white {
			visit(n)
		}
	}
	return out
}

// statAbs stats an absolute path: inside the set's directory through its
// fs.FS, elsewhere on the host.
func (l *loader) statAbs(abs string) (fs.FileInfo, error) {
	if rel, err := filepath.Rel(l.absDir, abs); err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fs.Stat(l.fsys, filepath.ToSlash(rel))
	}
	return l.stat(abs)
}

// checkExecutable checks that exec[0] or agent[0], written raw and resolved
// to abs (shown as shown), is an executable file.
func (l *loader) checkExecutable(o origin, label, raw, abs, shown string, add func(origin, string, string)) {
	where := ""
	if shown != raw {
		where = " (" + shown + ")"
	}
	fi, err := l.statAbs(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		add(o, fmt.Sprintf("%s %q does not exist%s", label, raw, where),
			"give an absolute path, a path relative to the directory of the file that sets it (./run.sh), or a command name looked up in PATH")
	case err != nil:
		add(o, fmt.Sprintf("%s %q: %v%s", label, raw, unwrapPath(err), where), "check the path and its permissions")
	case fi.IsDir():
		add(o, fmt.Sprintf("%s %q is a directory%s", label, raw, where), "give the program inside it")
	case !executable(fi):
		add(o, fmt.Sprintf("%s %q is not executable%s", label, raw, where), "chmod +x "+shown)
	}
}

// checkInPath checks that the bare command name is found in PATH now: the
// unit's environment PATH if it sets one, else the loader's.
func (l *loader) checkInPath(o origin, label, name string, e *effective, add func(origin, string, string)) {
	search := l.getenv("PATH")
	if v, ok := e.env["PATH"]; ok {
		search = v.v.(string)
	}
	key := [2]string{name, search}
	l.inPathMu.Lock()
	found, ok := l.inPath[key]
	l.inPathMu.Unlock()
	if !ok {
		_, err := lookPath(name, search, l.statAbs)
		found = err == nil
		l.inPathMu.Lock()
		if l.inPath != nil {
			l.inPath[key] = found
		}
		l.inPathMu.Unlock()
	}
	if found {
		return
	}
	add(o, fmt.Sprintf("%s %q is not found in PATH", label, name),
		fmt.Sprintf("PATH is searched again when the unit starts; install %s, or give its absolute path", name))
}

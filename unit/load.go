package unit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/internal/parallel"
	"github.com/opsvc/opsvc/unit/regfile"
	"github.com/opsvc/opsvc/unit/suggest"
	"github.com/opsvc/opsvc/unit/tomldoc"
)

// maxFileSize bounds one unit or drop-in file.
const maxFileSize = tomldoc.MaxFileSize

// Set is every unit of one units directory, with the problems of those that
// failed to load. A Set is not changed after Load: its methods are safe for
// concurrent use.
type Set struct {
	Dir      string               // the directory as given to Load
	Units    map[string]*Unit     // every valid unit, incl. instances made by NAME@INST.toml files
	Problems map[string][]Problem // by unit name ("tick@" for a template); a unit with problems is NOT in Units

	ld      *loader
	files   map[string]*layer       // unit, instance or template name → its NAME.toml
	dropins map[string][]*layer     // NAME → the files of NAME.d/, in order
	effs    map[string]*effective   // built units (valid or not) → effective definition
	deps    map[string][]dependency // built units → their requires and after entries
	changed []string                // LoadChanged: the units it read again
	partial bool                    // LoadChanged: only those may differ from the set before
}

// loader reads one units directory. stat and getenv reach the host: stat
// for executables outside the directory, getenv for PATH.
type loader struct {
	fsys    fs.FS
	open    func(name string) (fs.File, error) // a file of fsys, for reading
	dir     string                             // as given; used in messages and Sources
	absDir  string                             // absolute; relative paths resolve against it
	stat    func(name string) (fs.FileInfo, error)
	getenv  func(key string) string
	timeout time.Duration // for decoding one file
	cache   *Cache        // nil: parse every file
	models  []string      // the models [orchestrator] model may name; nil: the default list
	seenMu  sync.Mutex    // seen is written by the readers of one load at once
	seen    map[string]bool
	now     time.Time // when this load began
	// inPath is what the PATH searches of one buildAll found, by command
	// name and PATH: a thousand units of one program search it once; nil
	// outside buildAll, whose builders share it under inPathMu.
	inPathMu sync.Mutex
	inPath   map[[2]string]bool
}

// source is one file of a Set.
type source struct {
	path   string // Set.Dir joined with the file's name in the set: shown in messages
	dir    string // absolute directory of the file
	pseudo bool   // not a file: carries problems of a drop-in directory
}

// layer is one parsed file: its checked settings and its problems.
type layer struct {
	src      *source
	settings map[string]*setting // by field id, "service.exec"
	tables   map[string]pos      // tables the file writes
	problems []Problem
	failed   map[string]bool // field ids with a problem; "" for the whole file
}

// setting is one key as one file writes it.
type setting struct {
	key  pos
	val  item            // scalar kinds
	list []item          // kStrings, kInts; empty means an explicit []
	env  map[string]item // kEnv
}

// pos is a place in a file: 1-based line and byte column.
type pos = tomldoc.Pos

// item is one checked value: string, bool, int64, float64 or time.Duration.
type item struct {
	v  any
	at pos
}

// Load reads the units directory dir. The error is only for a directory that
// cannot be read; problems of single files are in Set.Problems. A file that
// is not a regular file is never opened in a way that could wait.
func Load(dir string) (*Set, error) {
	ld, err := newLoader(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	ld.open = openIn(dir)
	return ld.load()
}

// LoadWithDropins is Load, with the NAME.d/ directories of each of extra
// read after those of dir, as more drop-ins of NAME (an instance's values
// kept in the state directory, for example). A missing extra directory is
// empty.
func LoadWithDropins(dir string, extra ...string) (*Set, error) {
	return loadWithDropins(nil, dir, extra...)
}

func loadWithDropins(c *Cache, dir string, extra ...string) (*Set, error) {
	ld, err := newLoader(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	ld.open = openIn(dir)
	ld.useCache(c)
	s, err := ld.load()
	if err != nil {
		return nil, err
	}
	defer c.keep(ld.seen)
	added := false
	for _, x := range extra {
		entries, err := os.ReadDir(x)
		if err != nil {
			continue
		}
		xl, err := newLoader(os.DirFS(x), x)
		if err != nil {
			continue
		}
		xl.open = openIn(x)
		xl.cache, xl.seen, xl.now = c, ld.seen, ld.now
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".d") || !e.IsDir() {
				continue
			}
			name := strings.TrimSuffix(n, ".d")
			if ValidName(name) != nil {
				continue
			}
			s.dropins[name] = append(s.dropins[name], xl.readDropins(n)...)
			added = true
		}
	}
	if !added {
		return s, nil
	}
	// Build again with the drop-ins added; problems of files that are not
	// units (bad names) stay.
	probs := make(map[string][]Problem)
	for name, p := range s.Problems {
		if _, ok := s.files[name]; !ok {
			probs[name] = p
		}
	}
	s.Units, s.Problems = make(map[string]*Unit), probs
	s.effs, s.deps = make(map[string]*effective), make(map[string][]dependency)
	s.buildAll()
	return s, nil
}

// openIn opens files of the directory dir for reading without waiting on
// anything that is not a regular file.
func openIn(dir string) func(name string) (fs.File, error) {
	return func(name string) (fs.File, error) {
		return regfile.Open(filepath.Join(dir, filepath.FromSlash(name)))
	}
}

// LoadFS reads a units directory from fsys, whose root is the directory dir
// (dir names it in messages and Sources, and relative paths resolve against
// it). An exec[0] or agent[0] inside dir is checked in fsys (mode 0755 makes
// a fstest.MapFile executable); one outside dir, or found through PATH, is
// checked on the host.
func LoadFS(fsys fs.FS, dir string) (*Set, error) {
	ld, err := newLoader(fsys, dir)
	if err != nil {
		return nil, err
	}
	return ld.load()
}

// useCache makes l reuse and record parses in c.
func (l *loader) useCache(c *Cache) {
	if c != nil {
		l.cache, l.seen, l.now = c, make(map[string]bool), time.Now()
		l.models = c.validModels()
	}
}

func newLoader(fsys fs.FS, dir string) (*loader, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unit: load %s: %w", dir, err)
	}
	return &loader{fsys: fsys, open: fsys.Open, dir: dir, absDir: abs, stat: os.Stat, getenv: os.Getenv, timeout: tomldoc.DecodeTimeout}, nil
}

func (l *loader) load() (*Set, error) {
	entries, err := fs.ReadDir(l.fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("unit: read units directory %s: %w (create it, or point --units or OPSVC_UNITS at the right one)", l.dir, unwrapPath(err))
	}
	s := &Set{
		Dir:      l.dir,
		Units:    make(map[string]*Unit),
		Problems: make(map[string][]Problem),
		ld:       l,
		files:    make(map[string]*layer),
		dropins:  make(map[string][]*layer),
		effs:     make(map[string]*effective),
		deps:     make(map[string][]dependency),
	}
	var reads []fileRead
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		fi, statErr := l.entryInfo(".", e)
		switch {
		case strings.HasSuffix(n, ".d") && statErr == nil && fi.IsDir():
			s.dropins[strings.TrimSuffix(n, ".d")] = l.readDropins(n)
		case strings.HasSuffix(n, ".toml") && (statErr != nil || fi.Mode().IsRegular()):
			name := strings.TrimSuffix(n, ".toml")
			src := &source{path: filepath.Join(l.dir, n), dir: l.absDir}
			if err := ValidName(name); err != nil {
				s.Problems[name] = []Problem{{File: src.path, Line: 1, Col: 1, Msg: "bad file name: " + strings.TrimPrefix(err.Error(), "unit: "), Hint: "rename the file"}}
				continue
			}
			if statErr != nil {
				s.files[name] = unreadable(src, statErr)
				continue
			}
			reads = append(reads, fileRead{name: name, file: n, src: src, fi: cacheInfo(e, fi)})
		}
	}
	l.readFiles(reads)
	for _, r := range reads {
		s.files[r.name] = r.lay
	}
	s.buildAll()
	return s, nil
}

// fileRead is one unit file to read and parse.
type fileRead struct {
	name, file string
	src        *source
	fi         fs.FileInfo
	lay        *layer // the result
}

// readsPerReader is how many files make one more reader worth its start.
const readsPerReader = 64

// readFiles reads and parses the files, on as many threads as the
// process may use: the files are independent, and parsing is most of the
// time a load of many files takes.
func (l *loader) readFiles(reads []fileRead) {
	parallel.For(len(reads), readsPerReader, func(i int) {
		reads[i].lay = l.readFile(reads[i].file, reads[i].src, reads[i].fi)
	})
}

// buildsPerWorker is how many units make one more builder worth its start.
const buildsPerWorker = 64

// entryInfo stats a directory entry, following a symbolic link.
func (l *loader) entryInfo(dir string, e fs.DirEntry) (fs.FileInfo, error) {
	if e.Type()&fs.ModeSymlink != 0 {
		return fs.Stat(l.fsys, path.Join(dir, e.Name()))
	}
	return e.Info()
}

// cacheInfo is fi when the entry e is a file whose size and mtime may stand
// for its content: not for a symbolic link, which may be pointed elsewhere.
func cacheInfo(e fs.DirEntry, fi fs.FileInfo) fs.FileInfo {
	if e.Type()&fs.ModeSymlink != 0 {
		return nil
	}
	return fi
}

// readFile reads and parses the file name of the loader's directory; fi,
// if not nil, is its directory entry's information.
func (l *loader) readFile(name string, src *source, fi fs.FileInfo) *layer {
	if l.cache != nil {
		l.seenMu.Lock()
		l.seen[src.path] = true
		l.seenMu.Unlock()
		if lay := l.cache.byStat(src, fi); lay != nil {
			return lay
		}
	}
	f, err := l.open(name)
	if err != nil {
		return unreadable(src, err)
	}
	defer f.Close()
	data, err := regfile.Read(f, maxFileSize)
	if err == nil && l.cache != nil {
		ofi, serr := f.Stat()
		if serr != nil || fi == nil {
			ofi = nil // a link, or unknown: only the content counts
		}
		lay, sum := l.cache.byContent(src, ofi, data, l.now)
		if lay != nil {
			return lay
		}
		lay = parseFile(src, data, l.timeout)
		l.cache.put(src, ofi, sum, lay, l.now)
		return lay
	}
	var tl *regfile.TooLargeError
	if errors.As(err, &tl) {
		return failedFile(src, pos{Line: 1, Col: 1}, tl.Error(), "a unit file is a short TOML file: put long environments in environment_files")
	}
	if err != nil {
		return unreadable(src, err)
	}
	return parseFile(src, data, l.timeout)
}

func unreadable(src *source, err error) *layer {
	hint := "check that the file exists and is readable"
	var nr *regfile.NotRegularError
	if errors.As(err, &nr) {
		hint = "a unit file is a regular file"
	}
	return failedFile(src, pos{Line: 1, Col: 1}, "cannot read: "+unwrapPath(err).Error(), hint)
}

// failedFile is a file that cannot be used at all.
func failedFile(src *source, at pos, msg, hint string) *layer {
	return &layer{src: src, failed: map[string]bool{"": true}, problems: []Problem{{File: src.path, Line: at.Line, Col: at.Col, Msg: msg, Hint: hint}}}
}

// unwrapPath drops the operation and path of a *fs.PathError: messages name
// the file themselves.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readDropins reads the *.toml files of the drop-in directory dir, in
// lexical order of file name.
func (l *loader) readDropins(dir string) []*layer {
	absDir := filepath.Join(l.absDir, dir)
	entries, err := fs.ReadDir(l.fsys, dir)
	if err != nil {
		src := &source{path: filepath.Join(l.dir, dir), dir: absDir, pseudo: true}
		return []*layer{unreadable(src, err)}
	}
	var layers []*layer
	for _, e := range entries { // ReadDir sorts by name
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".toml") {
			continue
		}
		src := &source{path: filepath.Join(l.dir, dir, n), dir: absDir}
		fi, err := l.entryInfo(dir, e)
		switch {
		case err != nil:
			layers = append(layers, unreadable(src, err))
		case fi.Mode().IsRegular():
			layers = append(layers, l.readFile(path.Join(dir, n), src, cacheInfo(e, fi)))
		}
	}
	return layers
}

// parseFile parses and checks one file on its own: syntax, known tables and
// keys, types, durations, enums and specifiers. A file past the bounds of
// tomldoc.FileLimits is not decoded, and a decode that takes longer than
// timeout is given up.
func parseFile(src *source, data []byte, timeout time.Duration) *layer {
	l := &layer{src: src, settings: make(map[string]*setting), tables: make(map[string]pos), failed: make(map[string]bool)}
	text := string(data)
	d, err := tomldoc.DecodeData(text, tomldoc.FileLimits(), timeout)
	if err != nil {
		l.decodeError(text, err)
		l.failed[""] = true
		return l
	}
	doc := d.Data
	idx := tomldoc.NewIndex(text)
	for _, name := range sortedKeys(doc) {
		v := doc[name]
		kp := idx.Key(name)
		if !slices.Contains(tableNames, name) {
			l.unknownTop(name, v, kp)
			continue
		}
		t, ok := v.(map[string]any)
		if !ok {
			l.add(kp, fmt.Sprintf("%s must be a table, not %s", name, tomldoc.TypeName(v)), fmt.Sprintf("write [%s] and put its keys below it", name))
			continue
		}
		l.tables[name] = kp
		for _, key := range sortedKeys(t) {
			p := []string{name, key}
			f := lookupField(name, key)
			if f == nil {
				l.unknownKey(name, key, idx.Key(p...))
				continue
			}
			if st := l.check(f, t[key], p, idx); st != nil {
				l.settings[f.id()] = st
			} else {
				l.failed[f.id()] = true
			}
		}
	}
	sort.SliceStable(l.problems, func(i, j int) bool {
		a, b := l.problems[i], l.problems[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return l
}

// decodeError reports why the file text could not be decoded.
func (l *layer) decodeError(text string, err error) {
	for _, e := range tomldoc.Explain(text, err) {
		switch e.What {
		case tomldoc.Syntax:
			l.add(e.Pos, "syntax error: "+e.Msg, "")
		default:
			l.add(e.Pos, e.Msg, limitHint(e.What))
		}
	}
}

// limitHint says what a unit file within the bounds looks like.
func limitHint(what string) string {
	switch what {
	case tomldoc.Keys:
		return "a unit sets a few dozen keys: put long environments in environment_files"
	case tomldoc.Tables:
		return "a unit has the tables [unit], [service] and [orchestrator], and an environment table"
	case tomldoc.Nesting:
		return "unit keys are at most three levels deep, as in service.environment.NAME"
	case tomldoc.KeyLen:
		return "unit keys are short names, as in service.environment.NAME"
	}
	return "a unit file is a short TOML file: make this one smaller or simpler"
}

func (l *layer) add(p pos, msg, hint string) {
	if !p.Valid() {
		p = pos{Line: 1, Col: 1}
	}
	l.problems = append(l.problems, Problem{File: l.src.path, Line: p.Line, Col: p.Col, Msg: msg, Hint: hint})
}

func (l *layer) unknownTop(name string, v any, p pos) {
	if _, isTable := v.(map[string]any); isTable {
		hint := "the tables are [unit], [service] and [orchestrator]"
		if c, ok := suggest.Closest(name, tableNames); ok {
			hint = fmt.Sprintf("did you mean [%s]?", c)
		}
		l.add(p, fmt.Sprintf("unknown table [%s]", name), hint)
		return
	}
	hint := "keys go in [unit], [service] or [orchestrator]"
	for _, t := range tableNames {
		if lookupField(t, name) != nil {
			hint = fmt.Sprintf("%s belongs in [%s]", name, t)
			break
		}
	}
	l.add(p, fmt.Sprintf("unknown key %q outside any table", name), hint)
}

func (l *layer) unknownKey(table, key string, p pos) {
	var hint string
	for _, t := range tableNames {
		if t != table && lookupField(t, key) != nil {
			hint = fmt.Sprintf("%s belongs in [%s]", key, t)
		}
	}
	if hint == "" {
		if c, ok := suggest.Closest(key, tableKeys(table)); ok {
			hint = fmt.Sprintf("did you mean %q?", c)
		} else {
			hint = fmt.Sprintf("the keys of [%s] are %s", table, strings.Join(tableKeys(table), ", "))
		}
	}
	l.add(p, fmt.Sprintf("unknown key %q in [%s]", key, table), hint)
}

// check converts the value v of field f, reporting every problem in it.
// It returns nil when the value cannot be used.
func (l *layer) check(f *field, v any, p []string, idx *tomldoc.Index) *setting {
	kp, vp := idx.Key(p...), idx.Value(p...)
	wrong := func(at pos, v any, hint string) *setting {
		l.add(at, fmt.Sprintf("%s must be %s, not %s", f.key, f.want(), tomldoc.TypeName(v)), hint)
		return nil
	}
	one := func(x any) *setting { return &setting{key: kp, val: item{x, vp}} }
	switch f.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			return wrong(vp, v, fmt.Sprintf("quote it: %s = \"...\"", f.key))
		}
		if !l.specifiersOK(f, s, vp) {
			return nil
		}
		return one(s)
	case kEnum:
		s, ok := v.(string)
		if !ok {
			return wrong(vp, v, "")
		}
		if !slices.Contains(f.enum, s) {
			hint := ""
			if c, ok := suggest.Closest(s, f.enum); ok {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			l.add(vp, fmt.Sprintf("%s = %q is not one of %s", f.key, s, quoteList(f.enum)), hint)
			return nil
		}
		return one(s)
	case kSignal:
		s, ok := v.(string)
		if !ok {
			return wrong(vp, v, `write stop_signal = "SIGTERM"`)
		}
		sig, ok := parseSignal(s)
		if !ok {
			hint := `use a signal name such as "SIGTERM", "TERM" or "SIGINT"`
			if c, ok := suggest.Closest(s, signalNames); ok {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			l.add(vp, fmt.Sprintf("%s = %q is not a signal name", f.key, s), hint)
			return nil
		}
		return one(sig)
	case kDuration:
		s, ok := v.(string)
		if !ok {
			hint := `durations are strings with a unit, such as "100ms", "30s" or "1m30s"`
			if n, isInt := v.(int64); isInt {
				hint = fmt.Sprintf(`durations are strings with a unit: write %s = "%ds"`, f.key, n)
			}
			return wrong(vp, v, hint)
		}
		d, err := parseDuration(s)
		if err != nil {
			l.add(vp, fmt.Sprintf("%s: %v", f.key, err), `use a number with a unit (ns, us, ms, s, m, h), such as "100ms", "30s" or "1m30s", or "0"`)
			return nil
		}
		return one(d)
	case kBool:
		b, ok := v.(bool)
		if !ok {
			return wrong(vp, v, fmt.Sprintf("write %s = true or %s = false, without quotes", f.key, f.key))
		}
		return one(b)
	case kInt:
		n, ok := v.(int64)
		if !ok {
			return wrong(vp, v, "")
		}
		if float64(n) < f.lo || float64(n) > f.hi {
			l.add(vp, fmt.Sprintf("%s = %d is out of range", f.key, n), fmt.Sprintf("use an integer from %d to %d", int64(f.lo), int64(f.hi)))
			return nil
		}
		return one(n)
	case kFloat:
		var x float64
		switch n := v.(type) {
		case float64:
			x = n
		case int64:
			x = float64(n)
		default:
			return wrong(vp, v, "")
		}
		if !(x >= f.lo && x <= f.hi) { // also refuses NaN
			l.add(vp, fmt.Sprintf("%s = %v is out of range", f.key, x), fmt.Sprintf("use a number from %v to %v", f.lo, f.hi))
			return nil
		}
		return one(x)
	case kStrings, kInts:
		arr, ok := v.([]any)
		if s, isStr := v.(string); !ok && isStr && f.table == tOrchestrator && f.key == "agent" && s == AgentPreset {
			arr, ok = []any{s}, true // agent = "claude": the preset
		}
		if !ok {
			hint := ""
			if s, isStr := v.(string); isStr && f.kind == kStrings {
				words := []string{s}
				if f.path == pathFirst { // an argv: one element per word
					words = splitWords(s)
				}
				hint = fmt.Sprintf("write %s = [%s]", f.key, quoteList(words))
			}
			return wrong(vp, v, hint)
		}
		st := &setting{key: kp, list: []item{}}
		good := true
		for i, e := range arr {
			ep := idx.Value(append(p[:len(p):len(p)], tomldoc.Elem(i))...)
			if !ep.Valid() {
				ep = vp
			}
			if f.kind == kStrings {
				s, ok := e.(string)
				if !ok {
					l.add(ep, fmt.Sprintf("%s[%d] must be a string, not %s", f.key, i, tomldoc.TypeName(e)), "quote it")
					good = false
					continue
				}
				if !l.specifiersOK(f, s, ep) {
					good = false
					continue
				}
				st.list = append(st.list, item{s, ep})
				continue
			}
			n, ok := e.(int64)
			if !ok {
				l.add(ep, fmt.Sprintf("%s[%d] must be an integer, not %s", f.key, i, tomldoc.TypeName(e)), "")
				good = false
				continue
			}
			if float64(n) < f.lo || float64(n) > f.hi {
				l.add(ep, fmt.Sprintf("%s[%d] = %d is out of range", f.key, i, n), fmt.Sprintf("use integers from %d to %d", int64(f.lo), int64(f.hi)))
				good = false
				continue
			}
			st.list = append(st.list, item{n, ep})
		}
		if !good {
			return nil
		}
		return st
	case kEnv:
		t, ok := v.(map[string]any)
		if !ok {
			return wrong(vp, v, "")
		}
		st := &setting{key: kp, env: make(map[string]item)}
		good := true
		for _, k := range sortedKeys(t) {
			ep := append(p[:len(p):len(p)], k)
			if !validEnvName(k) {
				l.add(idx.Key(ep...), fmt.Sprintf("environment variable name %q is not valid", k), "use letters, digits and _, not starting with a digit")
				good = false
				continue
			}
			s, ok := t[k].(string)
			if !ok {
				l.add(idx.Value(ep...), fmt.Sprintf("environment value %s must be a string, not %s", k, tomldoc.TypeName(t[k])), fmt.Sprintf("quote it: %s = \"...\"", k))
				good = false
				continue
			}
			if !l.specifiersOK(f, s, idx.Value(ep...)) {
				good = false
				continue
			}
			st.env[k] = item{s, idx.Value(ep...)}
		}
		if !good {
			return nil
		}
		return st
	}
	return nil
}

func (l *layer) specifiersOK(f *field, s string, at pos) bool {
	if !f.spec {
		return true
	}
	if bad := badSpecifier(s); bad != "" {
		l.add(at, fmt.Sprintf("unknown specifier %q in %s", bad, f.key), specifierHint)
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

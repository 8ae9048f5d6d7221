package unit

import "sort"

// origin is where a value was written.
type origin struct {
	src *source
	at  pos
}

// value is one effective value with its origin.
type value struct {
	v any
	origin
}

// effective is a unit's definition after its files are merged, with the
// origin of every value, in the shape the files write it. Specifiers are
// expanded and paths resolved in place by build.
type effective struct {
	srcs     []*source
	one      map[string]value   // scalar fields by id
	list     map[string][]value // array fields by id; present = written (maybe as [])
	reset    map[string]origin  // where an array field was last reset by []
	env      map[string]value   // service.environment by variable
	tables   map[string]origin  // where each table is first written
	problems []Problem          // of the files, in the order applied
	failed   map[string]bool    // field ids some file got wrong; "" if a file could not be parsed
	order    []string           // paths of the files (and drop-in directories) applied, in order
}

// merge applies layers in order (as drop-ins do): tables merge key by key, a later
// scalar wins, a later array appends, an explicit empty array resets, and the
// environment table merges per variable.
func merge(layers []*layer) *effective {
	e := &effective{
		one:    make(map[string]value),
		list:   make(map[string][]value),
		reset:  make(map[string]origin),
		env:    make(map[string]value),
		tables: make(map[string]origin),
		failed: make(map[string]bool),
	}
	for _, l := range layers {
		e.order = append(e.order, l.src.path)
		for id := range l.failed {
			e.failed[id] = true
		}
		if !l.src.pseudo {
			e.srcs = append(e.srcs, l.src)
		}
		e.problems = append(e.problems, l.problems...)
		for _, t := range tableNames {
			if p, ok := l.tables[t]; ok {
				if _, seen := e.tables[t]; !seen {
					e.tables[t] = origin{l.src, p}
				}
			}
		}
		for i := range fields {
			f := &fields[i]
			st, ok := l.settings[f.id()]
			if !ok {
				continue
			}
			switch f.kind {
			case kStrings, kInts:
				if len(st.list) == 0 {
					e.list[f.id()] = []value{}
					e.reset[f.id()] = origin{l.src, st.key}
					continue
				}
				for _, it := range st.list {
					e.list[f.id()] = append(e.list[f.id()], value{it.v, origin{l.src, it.at}})
				}
			case kEnv:
				for _, k := range sortedKeys(st.env) {
					it := st.env[k]
					e.env[k] = value{it.v, origin{l.src, it.at}}
				}
			default:
				e.one[f.id()] = value{st.val.v, origin{l.src, st.val.at}}
			}
		}
	}
	return e
}

func (e *effective) str(id string) (string, bool) {
	v, ok := e.one[id]
	if !ok {
		return "", false
	}
	s, _ := v.v.(string)
	return s, true
}

func (e *effective) strs(id string) []string {
	var out []string
	for _, v := range e.list[id] {
		s, _ := v.v.(string)
		out = append(out, s)
	}
	return out
}

// sortProblems orders problems by the file they are in, in the order the
// files apply, then by position.
func (e *effective) sortProblems(probs []Problem) {
	rank := make(map[string]int, len(e.order))
	for i, p := range e.order {
		if _, ok := rank[p]; !ok {
			rank[p] = i
		}
	}
	r := func(file string) int {
		if i, ok := rank[file]; ok {
			return i
		}
		return len(e.order)
	}
	sort.SliceStable(probs, func(i, j int) bool {
		a, b := probs[i], probs[j]
		if ra, rb := r(a.File), r(b.File); ra != rb {
			return ra < rb
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

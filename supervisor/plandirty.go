package supervisor

import (
	"container/heap"
	"slices"
	"time"

	"github.com/opsvc/opsvc/unit"
)

// dirtyPlan says which units the next pass of Plan must look at: those
// whose desired or observed state changed since they were last planned,
// the units next to them (what they require or run after, and what
// requires them or runs after them), and those whose deadline is due. The
// plan of any other unit is what it was. Loop-owned.
type dirtyPlan struct {
	seq     uint64               // counts touches: a snapshot of the units is as new as the seq it was built at
	touched map[string]bool      // touched since the last step of the loop
	indexed bool                 // false: plan every unit next pass (and index them again)
	names   map[string]bool      // to plan next pass
	edges   map[string][]string  // unit → what it requires and runs after, as indexed
	rdeps   map[string][]string  // unit → the units that require it or run after it
	due     map[string]time.Time // unit → its next deadline
	heap    dueHeap              // the deadlines of due, and stale ones
}

// touch marks a unit whose desired or observed state changed.
func (s *Supervisor) touch(name string) {
	p := &s.dirty
	p.seq++
	if p.touched == nil {
		p.touched = make(map[string]bool)
	}
	p.touched[name] = true
	if !p.indexed {
		return
	}
	var e []string
	if d, ok := s.desired[name]; ok && d.Unit != nil {
		e = unitEdges(d.Unit)
	}
	if !slices.Equal(e, p.edges[name]) {
		p.indexed = false // its dependencies changed: index again
		return
	}
	p.names[name] = true
	for _, n := range e {
		p.names[n] = true
	}
	for _, n := range p.rdeps[name] {
		p.names[n] = true
	}
}

// touchAll makes the next pass plan every unit.
func (s *Supervisor) touchAll() { s.dirty.indexed, s.dirty.seq = false, s.dirty.seq+1 }

// unitEdges is what u requires and runs after.
func unitEdges(u *unit.Unit) []string {
	if len(u.Requires)+len(u.After) == 0 {
		return nil
	}
	return append(slices.Clip(u.Requires), u.After...)
}

// planPass plans the units that may have a new plan: every unit after
// touchAll, else the dirty ones and those whose deadline has come. It
// returns the actions, and the units it planned.
func (s *Supervisor) planPass(now time.Time) ([]Action, []string) {
	p := &s.dirty
	var names []string
	if !p.indexed {
		s.indexUnits()
		names = s.planOrder()
	} else {
		for len(p.heap) > 0 && !p.heap[0].at.After(now) {
			e := heap.Pop(&p.heap).(dueEntry)
			if t, ok := p.due[e.name]; ok && t.Equal(e.at) {
				delete(p.due, e.name)
				p.names[e.name] = true
			}
		}
		if len(p.names) == 0 {
			return nil, nil
		}
		names = make([]string, 0, len(p.names))
		for n := range p.names {
			if _, ok := s.desired[n]; ok {
				names = append(names, n)
			} else if _, ok := s.observed[n]; ok {
				names = append(names, n)
			}
		}
		clear(p.names)
		slices.Sort(names)
	}
	// A unit being forked is planned once its fork is recorded (which
	// touches it).
	var keep []string
	skipped := false
	for i, n := range names {
		if rec := s.units[n]; rec != nil && rec.launch != nil {
			if !skipped {
				skipped = true
				keep = append(make([]string, 0, len(names)), names[:i]...)
			}
			continue
		}
		if skipped {
			keep = append(keep, n)
		}
	}
	if skipped {
		names = keep
	}
	acts, _ := planNames(names, s.desired, s.observed, now, planHooks{dependent: s.runningDependent, due: s.setDue})
	return acts, names
}

// indexUnits indexes every unit's dependencies and forgets every deadline:
// a pass over every unit follows.
func (s *Supervisor) indexUnits() {
	p := &s.dirty
	p.indexed = true
	p.names = make(map[string]bool)
	p.edges = make(map[string][]string)
	p.rdeps = make(map[string][]string)
	p.due = make(map[string]time.Time)
	p.heap = p.heap[:0]
	for name, d := range s.desired {
		if d.Unit == nil {
			continue
		}
		e := unitEdges(d.Unit)
		if e == nil {
			continue
		}
		p.edges[name] = e
		for _, to := range e {
			if !slices.Contains(p.rdeps[to], name) {
				p.rdeps[to] = append(p.rdeps[to], name)
			}
		}
	}
}

// setDue records a planned unit's next deadline.
func (s *Supervisor) setDue(name string, t time.Time) {
	p := &s.dirty
	if t.IsZero() {
		delete(p.due, name)
		return
	}
	if old, ok := p.due[name]; ok && old.Equal(t) {
		return
	}
	p.due[name] = t
	heap.Push(&p.heap, dueEntry{at: t, name: name})
	if len(p.heap) > 2*len(p.due)+64 { // drop the stale entries
		h := p.heap[:0]
		for _, e := range p.heap {
			if at, ok := p.due[e.name]; ok && at.Equal(e.at) {
				h = append(h, e)
			}
		}
		clear(p.heap[len(h):])
		p.heap = h
		heap.Init(&p.heap)
	}
}

// nextDue is when the loop must plan again with nothing else happening
// (zero: no deadline).
func (s *Supervisor) nextDue() time.Time {
	p := &s.dirty
	for len(p.heap) > 0 {
		e := p.heap[0]
		if t, ok := p.due[e.name]; ok && t.Equal(e.at) {
			return e.at
		}
		heap.Pop(&p.heap)
	}
	return time.Time{}
}

// runningDependent is runningDependents(s.desired, s.observed)[name], from
// the index.
func (s *Supervisor) runningDependent(name string) string {
	best := ""
	for _, n := range s.dirty.rdeps[name] {
		d := s.desired[n]
		if d.Unit == nil || !s.observed[n].Running || (best != "" && n >= best) {
			continue
		}
		if slices.Contains(d.Unit.Requires, name) || (!d.Want && slices.Contains(d.Unit.After, name)) {
			best = n
		}
	}
	return best
}

type dueEntry struct {
	at   time.Time
	name string
}

// dueHeap orders deadlines, earliest first.
type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = dueEntry{}
	*h = old[:len(old)-1]
	return e
}

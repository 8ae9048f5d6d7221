package supervisor

import (
	"sort"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
)

// loadChanged reads again what the watcher saw change since base, the set
// the last load applied made: only those entries, unless all is set or
// there is no base, when it reads the whole directory. Off the loop, as
// loadUnits.
func (s *Supervisor) loadChanged(base *unit.Set, entries []string, all bool) loadResult {
	if base == nil || all {
		return s.loadUnits()
	}
	gen := s.loadGen.Add(1)
	set, err := unit.LoadChanged(s.parsed, base, entries, s.instancesDir())
	return loadResult{gen: gen, base: base, set: set, err: err, choices: s.choicesSnapshot()}
}

// applyChanged is applyLoad for a load that read again only the units in
// names, each with the same file and dependencies as before: the other
// units are as they were, and are not looked at.
func (s *Supervisor) applyChanged(r loadResult, names []string, why string) ReloadResult {
	var res ReloadResult
	s.applied = r.gen
	s.set, s.base = r.set, r.set
	fleet := false
	for _, name := range names {
		if isFleet(s.desired[name].Unit) {
			fleet = true
		}
		if u, ok := r.set.Units[name]; ok {
			s.setUnit(name, u, r.choices, &res)
			delete(s.instances, name)
			delete(s.errors, name)
			fleet = fleet || isFleet(u)
			continue
		}
		probs, ok := r.set.Problems[name]
		if !ok {
			continue
		}
		s.errors[name] = probs
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Error()
		}
		s.emit(name, 0, api.ConfigInvalid{Problems: msgs})
		if _, ok := s.desired[name]; !ok {
			s.desired[name] = Desired{}
			s.order.invalidate()
			s.touch(name)
		}
	}
	if fleet {
		s.placeUnits()
	}
	sort.Strings(res.Changed)
	sort.Strings(res.Added)
	s.emit("", 0, api.ConfigLoaded{Reason: why, Changed: res.Changed, Added: res.Added, Removed: res.Removed, Invalid: len(r.set.Problems)})
	return res
}

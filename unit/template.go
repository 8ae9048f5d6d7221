package unit

import (
	"errors"
	"fmt"
	"maps"
)

// Instance returns unit name: a unit of the set, or an instance such as
// "tick@x" made at runtime from the template tick@.toml with the drop-ins of
// tick@.d/ and tick@x.d/ (for `opsvc start tick@x`). It is an error if there
// is no such unit or template, or if the definition has problems. The Set is
// not changed.
func (s *Set) Instance(name string) (*Unit, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if u, ok := s.Units[name]; ok {
		return u, nil
	}
	if probs, ok := s.Problems[name]; ok {
		return nil, problemsError(name, probs)
	}
	u, _, probs, err := s.instance(name)
	if err != nil {
		return nil, err
	}
	if len(probs) > 0 {
		return nil, problemsError(name, probs)
	}
	return u, nil
}

// instance builds an instance that has no NAME@INST.toml file, with the
// checks of the whole set.
func (s *Set) instance(name string) (*Unit, *effective, []Problem, error) {
	prefix, inst, at := splitName(name)
	if !at || inst == "" {
		return nil, nil, nil, fmt.Errorf("unit: %s: no such unit in %s (add %s.toml)", name, s.Dir, name)
	}
	if _, ok := s.files[prefix+"@"]; !ok {
		return nil, nil, nil, fmt.Errorf("unit: %s: no template %s@.toml in %s (add it, or name an existing unit)", name, prefix, s.Dir)
	}
	layers, _ := s.layersOf(name)
	u, e, probs := s.build(name, layers, false)
	deps := maps.Clone(s.deps)
	deps[name] = depsOf(e)
	s.addInstanceDeps(deps)
	probs = append(probs, s.missingRequires(deps[name])...)
	probs = append(probs, findCycles(deps)[name]...)
	e.sortProblems(probs)
	return u, e, probs, nil
}

func problemsError(name string, probs []Problem) error {
	errs := make([]error, len(probs))
	for i, p := range probs {
		errs[i] = p
	}
	return fmt.Errorf("unit: %s is invalid (fix its files; opsvc validate shows every problem):\n%w", name, errors.Join(errs...))
}

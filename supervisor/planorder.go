package supervisor

// planOrder keeps PlanOrder(s.desired, s.observed) between passes of the
// loop: sorting every name on each pass is most of a pass's cost with
// thousands of units, and names come and go only on loads, starts of new
// instances and forgets. Those call invalidate; a change in either map's
// size is caught as well.
type planOrder struct {
	names     []string
	ok        bool
	nDesired  int
	nObserved int
}

func (p *planOrder) invalidate() { p.ok = false }

// order returns the sorted names of the loop's units.
func (s *Supervisor) planOrder() []string {
	p := &s.order
	if !p.ok || p.nDesired != len(s.desired) || p.nObserved != len(s.observed) {
		p.names = PlanOrder(s.desired, s.observed)
		p.ok, p.nDesired, p.nObserved = true, len(s.desired), len(s.observed)
	}
	return p.names
}

package supervisor

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opsvc/opsvc/unit"
	"pgregory.net/rapid"
)

// TestPlanPassAgreesWithPlan follows random changes of random worlds with
// the loop's passes over changed units only, and checks after each that
// every unit not planned again would be planned by a whole Plan as it was
// last: no action (else the loop would have acted on it, and so planned
// it again), and the same deadline.
func TestPlanPassAgreesWithPlan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(t, "units")
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("u%d", i)
		}
		s := &Supervisor{desired: map[string]Desired{}, observed: map[string]Lifecycle{}, units: map[string]*unitRecord{}}
		newUnit := func(t *rapid.T, i int, name string) *unit.Unit {
			u := &unit.Unit{Name: name, Enabled: true, Service: unit.DefaultService(), Hash: "a"}
			u.Service.StartTimeout = 0
			if i > 0 && rapid.Bool().Draw(t, name+".requires") {
				u.Requires = []string{names[rapid.IntRange(0, i-1).Draw(t, name+".dep")]}
			}
			if i > 0 && rapid.Bool().Draw(t, name+".after") {
				u.After = []string{names[rapid.IntRange(0, i-1).Draw(t, name+".adep")]}
			}
			return u
		}
		lifecycle := func(t *rapid.T, name string, now time.Time) Lifecycle {
			o := Lifecycle{
				State:      State(rapid.IntRange(1, 5).Draw(t, name+".state")),
				Sub:        rapid.SampledFrom([]string{"start", "running", "auto-restart", "exited", "dead"}).Draw(t, name+".sub"),
				Running:    rapid.Bool().Draw(t, name+".running"),
				Hash:       "a",
				Stopping:   rapid.Bool().Draw(t, name+".stopping"),
				Settled:    rapid.Bool().Draw(t, name+".settled"),
				Blocked:    rapid.SampledFrom([]string{"", "x"}).Draw(t, name+".blocked"),
				Gen:        uint64(rapid.IntRange(0, 1).Draw(t, name+".ogen")),
				RestartGen: 0,
			}
			at := func(what string) time.Time {
				if !rapid.Bool().Draw(t, name+"."+what) {
					return time.Time{}
				}
				return now.Add(time.Duration(rapid.IntRange(-100, 1000).Draw(t, name+"."+what+"At")) * time.Millisecond)
			}
			o.RestartAt, o.StopDeadline, o.StartDeadline = at("restart"), at("stop"), at("start")
			return o
		}
		now := t0
		for i, name := range names {
			if rapid.IntRange(0, 9).Draw(t, name+".present") > 0 {
				s.desired[name] = Desired{Unit: newUnit(t, i, name), Want: rapid.Bool().Draw(t, name+".want"), StartGen: uint64(rapid.IntRange(0, 1).Draw(t, name+".gen"))}
			}
			if rapid.Bool().Draw(t, name+".observed") {
				s.observed[name] = lifecycle(t, name, now)
			}
		}
		last := map[string][]Action{}
		pass := func() {
			acts, planned := s.planPass(now)
			for _, n := range planned {
				last[n] = nil
			}
			for _, a := range acts {
				last[a.Unit] = append(last[a.Unit], a)
			}
		}
		pass()
		for step := range rapid.IntRange(1, 12).Draw(t, "steps") {
			i := rapid.IntRange(0, n-1).Draw(t, fmt.Sprintf("s%d.unit", step))
			name := names[i]
			switch rapid.IntRange(0, 4).Draw(t, fmt.Sprintf("s%d.what", step)) {
			case 0: // an operator's start or stop
				if d, ok := s.desired[name]; ok {
					d.Want = !d.Want
					d.StartGen++
					s.desired[name] = d
				}
			case 1, 2: // a step of its lifecycle
				s.observed[name] = lifecycle(t, fmt.Sprintf("s%d.%s", step, name), now)
			case 3: // its definition changed, dependencies and all
				s.desired[name] = Desired{Unit: newUnit(t, i, fmt.Sprintf("s%d.%s", step, name)), Want: true}
				if u := s.desired[name].Unit; u != nil {
					u.Name = name
				}
			case 4: // forgotten
				delete(s.observed, name)
			}
			s.touch(name)
			now = now.Add(time.Duration(rapid.IntRange(0, 600).Draw(t, fmt.Sprintf("s%d.later", step))) * time.Millisecond)
			pass()
			for _, name := range names {
				if len(last[name]) > 0 {
					continue // the loop acts on it, and plans it again
				}
				_, inD := s.desired[name]
				_, inO := s.observed[name]
				if !inD && !inO {
					continue
				}
				acts, _ := Plan(s.desired, s.observed, now)
				var mine []Action
				for _, a := range acts {
					if a.Unit == name {
						mine = append(mine, a)
					}
				}
				if len(mine) > 0 {
					t.Fatalf("step %d: %s not planned again, but a whole Plan acts on it: %+v", step, name, mine)
				}
				_, wake := PlanNames([]string{name}, s.desired, s.observed, now)
				if due := s.dirty.due[name]; !due.Equal(wake) {
					t.Fatalf("step %d: %s due %v, a whole Plan says %v", step, name, due, wake)
				}
			}
			if next := s.nextDue(); !next.IsZero() && !slices.ContainsFunc(names, func(n string) bool { return s.dirty.due[n].Equal(next) }) {
				t.Fatalf("step %d: next deadline %v is no unit's", step, next)
			}
		}
	})
}

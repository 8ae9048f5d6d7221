package supervisor

import (
	"fmt"
	"testing"
	"time"

	"github.com/opsvc/opsvc/unit"
)

// planUnits returns n independent wanted units and, when running, an
// observation of each as active; otherwise nothing observed.
func planUnits(n int, running bool) (map[string]Desired, map[string]Lifecycle) {
	desired := make(map[string]Desired, n)
	observed := make(map[string]Lifecycle, n)
	for i := range n {
		name := fmt.Sprintf("w%04d", i)
		u := &unit.Unit{Name: name, Enabled: true, Service: unit.DefaultService(), Hash: "h" + name}
		u.Service.Exec = []string{"/bin/sleep", "1000"}
		u.Service.Restart = unit.RestartAlways
		desired[name] = Desired{Unit: u, Want: true}
		if running {
			observed[name] = Lifecycle{State: Active, Sub: "running", PID: 1000 + i, Running: true, Hash: u.Hash,
				Starts: []time.Time{time.Unix(1_800_000_000, 0)}}
		}
	}
	return desired, observed
}

// BenchmarkPlan: one Plan over 1000 units, in the steady state (every unit
// running, nothing to do: what each loop iteration pays) and from cold
// (nothing running: 1000 starts).
func BenchmarkPlan(b *testing.B) {
	now := time.Unix(1_800_000_100, 0)
	for _, bc := range []struct {
		name    string
		running bool
		starts  int
		n       int
	}{{"1000-steady", true, 0, 1000}, {"1000-cold", false, 1000, 1000}, {"10000-steady", true, 0, 10000}} {
		b.Run(bc.name, func(b *testing.B) {
			desired, observed := planUnits(bc.n, bc.running)
			b.ReportAllocs()
			for b.Loop() {
				acts, _ := Plan(desired, observed, now)
				if len(acts) != bc.starts {
					b.Fatalf("Plan returned %d actions, want %d starts", len(acts), bc.starts)
				}
			}
		})
	}
}

// BenchmarkPlanKeptOrder: the loop's pass over 10,000 running units, with
// the sorted names kept from the pass before (PlanNames).
func BenchmarkPlanKeptOrder(b *testing.B) {
	now := time.Unix(1_800_000_100, 0)
	desired, observed := planUnits(10000, true)
	names := PlanOrder(desired, observed)
	b.ReportAllocs()
	for b.Loop() {
		if acts, _ := PlanNames(names, desired, observed, now); len(acts) != 0 {
			b.Fatalf("PlanNames returned %d actions, want none", len(acts))
		}
	}
}

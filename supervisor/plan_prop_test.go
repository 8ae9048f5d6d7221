package supervisor

import (
	"fmt"
	"testing"
	"time"

	"github.com/opsvc/opsvc/unit"
	"pgregory.net/rapid"
)

// TestPlanProperties checks invariants of Plan over random worlds: it never
// starts a running unit, never stops a running unit for a definition change
// when the definition is unchanged, and never starts past the start limit.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(t, "units")
		desired := map[string]Desired{}
		observed := map[string]Lifecycle{}
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("u%d", i)
		}
		for i, name := range names {
			hash := rapid.SampledFrom([]string{"a", "b"}).Draw(t, name+".hash")
			u := &unit.Unit{Name: name, Enabled: true, Service: unit.DefaultService(), Hash: hash}
			if i > 0 && rapid.Bool().Draw(t, name+".requires") {
				u.Requires = []string{names[rapid.IntRange(0, i-1).Draw(t, name+".dep")]}
			}
			if rapid.IntRange(0, 9).Draw(t, name+".present") > 0 {
				desired[name] = Desired{
					Unit:       u,
					Want:       rapid.Bool().Draw(t, name+".want"),
					StartGen:   uint64(rapid.IntRange(0, 2).Draw(t, name+".gen")),
					RestartGen: uint64(rapid.IntRange(0, 1).Draw(t, name+".rgen")),
				}
			}
			if rapid.Bool().Draw(t, name+".observed") {
				o := Lifecycle{
					State:      State(rapid.IntRange(1, 5).Draw(t, name+".state")),
					Sub:        rapid.SampledFrom([]string{"start", "running", "auto-restart", "exited", "dead"}).Draw(t, name+".sub"),
					Running:    rapid.Bool().Draw(t, name+".running"),
					Hash:       rapid.SampledFrom([]string{"a", "b"}).Draw(t, name+".ohash"),
					Stopping:   rapid.Bool().Draw(t, name+".stopping"),
					Settled:    rapid.Bool().Draw(t, name+".settled"),
					Gen:        uint64(rapid.IntRange(0, 2).Draw(t, name+".ogen")),
					RestartGen: uint64(rapid.IntRange(0, 1).Draw(t, name+".orgen")),
				}
				for k := rapid.IntRange(0, 7).Draw(t, name+".starts"); k > 0; k-- {
					o.Starts = append(o.Starts, t0.Add(-time.Duration(rapid.IntRange(0, 20).Draw(t, name+".ago"))*time.Second))
				}
				if rapid.Bool().Draw(t, name+".restartAt") {
					o.RestartAt = t0.Add(time.Duration(rapid.IntRange(-1000, 1000).Draw(t, name+".at")) * time.Millisecond)
				}
				observed[name] = o
			}
		}
		acts, _ := Plan(desired, observed, t0)
		for _, a := range acts {
			o := observed[a.Unit]
			switch a.Kind {
			case ActStart:
				if o.Running {
					t.Fatalf("started running unit %s", a.Unit)
				}
				d := desired[a.Unit]
				if o.Gen >= d.StartGen && StartsWithin(o.Starts, t0, d.Unit.Service.StartLimitInterval) >= d.Unit.Service.StartLimitBurst {
					t.Fatalf("started %s past its start limit", a.Unit)
				}
			case ActStop:
				if ph := o.Phase(); !o.Running && ph != PhaseAutoRestart && ph != PhaseExited {
					t.Fatalf("stop for %s, which does not run and waits for nothing (%s)", a.Unit, ph)
				}
				if a.Stop == StopChanged && o.Hash == desired[a.Unit].Unit.Hash {
					t.Fatalf("restarted %s whose definition is unchanged", a.Unit)
				}
				if d, ok := desired[a.Unit]; ok && d.Want && a.Stop == StopManual {
					t.Fatalf("manual stop of wanted unit %s", a.Unit)
				}
			}
		}
	})
}

//go:build unix

package supervisor

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/unit"
)

// fakePlacer stands in for etcd: the test says what this host holds.
type fakePlacer struct {
	mu      sync.Mutex
	holds   map[string]placement.Hold
	local   map[string]placement.Local
	changed chan struct{}
	told    chan struct{} // capacity 1: SetLocal was called
}

func newFakePlacer() *fakePlacer {
	return &fakePlacer{holds: map[string]placement.Hold{}, changed: make(chan struct{}, 1), told: make(chan struct{}, 1)}
}

func (f *fakePlacer) Node() string { return "here" }
func (f *fakePlacer) SetLocal(m map[string]placement.Local) {
	f.mu.Lock()
	f.local = m
	f.mu.Unlock()
	select {
	case f.told <- struct{}{}:
	default:
	}
}
func (f *fakePlacer) Changed() <-chan struct{} { return f.changed }
func (f *fakePlacer) Holds() map[string]placement.Hold {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]placement.Hold{}
	for k, v := range f.holds {
		out[k] = v
	}
	return out
}
func (f *fakePlacer) Problem() string                            { return "" }
func (f *fakePlacer) Move(context.Context, string, string) error { return nil }

func (f *fakePlacer) set(unit string, h placement.Hold) {
	f.mu.Lock()
	f.holds[unit] = h
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// waitLocal waits until what the supervisor told of unit satisfies ok.
func (f *fakePlacer) waitLocal(t *testing.T, unit string, ok func(placement.Local) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		f.mu.Lock()
		l, seen := f.local[unit]
		f.mu.Unlock()
		if seen && ok(l) {
			return
		}
		select {
		case <-f.told:
		case <-deadline:
			t.Fatalf("the placer was not told what it waits for of %s (last: %+v)", unit, l)
		}
	}
}

const fleetUnit = "[unit]\nplacement = \"fleet\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"

func TestFleetUnitWithoutClusterDoesNotRun(t *testing.T) {
	h := newHarness(t, map[string]string{
		"f.toml":     fleetUnit,
		"local.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
	})
	h.waitEvent("unit.ready", "local")
	us := h.status("f")
	if us.PID != 0 || us.State != Inactive {
		t.Errorf("fleet unit without [cluster]: state %s pid %d, want inactive without a process", us.State, us.PID)
	}
	if !strings.Contains(us.Error, "[cluster]") || us.Placement != "fleet" {
		t.Errorf("status error = %q, placement = %q; want the error to say [cluster] is needed", us.Error, us.Placement)
	}
}

func TestFleetUnitRunsOnlyWhileHeld(t *testing.T) {
	fp := newFakePlacer()
	fp.set("f", placement.Hold{Holder: "there", HolderActive: true, Note: "running on there"})
	h := newHarness(t, map[string]string{"f.toml": fleetUnit}, func(o *Options) { o.Placer = fp })

	fp.waitLocal(t, "f", func(l placement.Local) bool { return l.Want && !l.Running })
	us := h.status("f")
	if us.Sub != "standby" || us.StatusText != "running on there" || us.Host != "there" || us.PID != 0 {
		t.Fatalf("standby unit: sub %q, status %q, host %q, pid %d; want standby, running on there, no process", us.Sub, us.StatusText, us.Host, us.PID)
	}

	fp.set("f", placement.Hold{Held: true, Holder: "here"})
	h.waitEvent("unit.ready", "f")
	fp.waitLocal(t, "f", func(l placement.Local) bool { return l.Running && l.Active })
	if us := h.status("f"); us.State != Active || us.Host != "here" || us.PID == 0 {
		t.Fatalf("held unit: state %s, host %q, pid %d; want active here", us.State, us.Host, us.PID)
	}

	fp.set("f", placement.Hold{Holder: "here", Note: "moving to there"})
	e := h.waitEvent("unit.stopping", "f")
	if r, _ := e.Data["reason"].(string); r != "moving to there" {
		t.Errorf("stop reason = %q, want the placer's note", r)
	}
	h.waitEvent("unit.stopped", "f")
	fp.waitLocal(t, "f", func(l placement.Local) bool { return !l.Running })
	if us := h.status("f"); us.Sub != "standby" || us.StatusText != "moving to there" {
		t.Errorf("after giving it up: sub %q, status %q; want standby", us.Sub, us.StatusText)
	}

	// Held again: a new run, whatever the last one left.
	fp.set("f", placement.Hold{Held: true, Holder: "here"})
	h.waitEvent("unit.ready", "f")
}

func TestStopByBoundsTheStopDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	svc := unit.DefaultService()
	l := Lifecycle{State: Active, Sub: "running", Running: true, PID: 7}
	n, _ := l.Step(Event{Kind: EvStop, Svc: svc, Stop: StopManual, StopBy: now.Add(time.Second)}, now)
	if !n.StopDeadline.Equal(now.Add(time.Second)) {
		t.Errorf("stop deadline %v, want StopBy %v (before stop_timeout)", n.StopDeadline, now.Add(time.Second))
	}
	n, _ = l.Step(Event{Kind: EvStop, Svc: svc, Stop: StopManual, StopBy: now.Add(time.Hour)}, now)
	if !n.StopDeadline.Equal(now.Add(svc.StopTimeout)) {
		t.Errorf("stop deadline %v, want stop_timeout's %v (before StopBy)", n.StopDeadline, now.Add(svc.StopTimeout))
	}
}

package supervisor

import (
	"testing"
	"time"
)

// TestStartTrack times a start from the unit's activating to its process
// start, and from there to ready; a new process starts a new measure.
func TestStartTrack(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := &unitRecord{}
	var tr startTrack
	step := func(st State, since, started time.Time) {
		rec.State, rec.Since, rec.StartedAt = st, since, started
		tr.observe(rec)
	}
	step(Inactive, t0, time.Time{})
	if !tr.started.IsZero() || tr.startDur != 0 || tr.readyDur != 0 {
		t.Fatalf("before any start: %+v", tr)
	}
	// Waits 2s for a dependency, forks, is ready 3s later.
	step(Activating, t0.Add(time.Second), time.Time{})
	step(Activating, t0.Add(time.Second), t0.Add(3*time.Second))
	if tr.startDur != 2*time.Second || !tr.readyFor.IsZero() {
		t.Fatalf("after the fork: %+v, want a 2s start and no ready yet", tr)
	}
	step(Active, t0.Add(6*time.Second), t0.Add(3*time.Second))
	if tr.readyDur != 3*time.Second {
		t.Fatalf("once ready: %+v, want 3s to ready", tr)
	}
	// Later steps of the same run change nothing.
	step(Active, t0.Add(6*time.Second), t0.Add(3*time.Second))
	if tr.startDur != 2*time.Second || tr.readyDur != 3*time.Second {
		t.Fatalf("a later step changed the durations: %+v", tr)
	}
	// A simple unit started and active within one step: zero start, zero
	// ready, both known.
	step(Active, t0.Add(10*time.Second), t0.Add(10*time.Second))
	if tr.startDur != 0 || tr.readyDur != 0 || !tr.readyFor.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("a start within one step: %+v", tr)
	}
	// An auto-restart: activating while the old process's start is still
	// recorded, then a new process 1s later.
	step(Activating, t0.Add(12*time.Second), t0.Add(10*time.Second))
	step(Activating, t0.Add(12*time.Second), t0.Add(13*time.Second))
	if tr.startDur != time.Second {
		t.Fatalf("after an auto-restart: %+v, want a 1s start", tr)
	}
}

// BenchmarkSnapshot: the snapshot the loop publishes after each step, over
// 1000 running units (to compare with BenchmarkPlan, which each step pays too).
func BenchmarkSnapshot(b *testing.B) {
	desired, observed := planUnits(1000, true)
	s := &Supervisor{desired: desired, units: map[string]*unitRecord{}, leases: NewLeases(), now: time.Now}
	for n, l := range observed {
		s.units[n] = &unitRecord{Lifecycle: l}
	}
	b.ReportAllocs()
	for b.Loop() {
		if snap := s.snapshot(); len(snap.Units) != 1000 {
			b.Fatalf("%d units in the snapshot", len(snap.Units))
		}
	}
}

// TestStatsNowPaysWhatIsOwed: a build of the snapshot made out of its pace
// (as the one READY carries) does the build owed, so that the loop is not
// woken again and again for a build already done.
func TestStatsNowPaysWhatIsOwed(t *testing.T) {
	s := &Supervisor{}
	s.stats.built, s.stats.due = true, time.Now().Add(-time.Second)
	s.dirty.seq = 3
	s.statsNow()
	if due := s.statsDue(); !due.IsZero() {
		t.Fatalf("a build is still owed at %v after one was made", due)
	}
	if s.stats.seq != 3 || s.stats.at.IsZero() {
		t.Fatalf("the build is not recorded: seq %d, at %v", s.stats.seq, s.stats.at)
	}
}

// TestCostlyStatsBuildWaits: a snapshot build that took a millisecond or
// more waits four times its length after the change that calls for it,
// even when the last build was long ago, so that the restart an exit set
// off goes first; a cheap one is built at once.
func TestCostlyStatsBuildWaits(t *testing.T) {
	for _, cost := range []time.Duration{100 * time.Microsecond, 10 * time.Millisecond} {
		desired, observed := planUnits(10, true)
		s := &Supervisor{desired: desired, units: map[string]*unitRecord{}, leases: NewLeases(), now: time.Now}
		for n, l := range observed {
			s.units[n] = &unitRecord{Lifecycle: l}
		}
		s.stats.counted = true // no event counter to start
		s.stats.built, s.stats.cost, s.stats.at = true, cost, time.Now().Add(-time.Hour)
		s.dirty.seq = 1 // a unit changed since the last build
		before := time.Now()
		s.stepDone(before)
		after := time.Now()
		due := s.statsDue()
		if cost < time.Millisecond {
			if !due.IsZero() || s.stats.seq != 1 {
				t.Errorf("cost %v: build owed at %v (built at seq %d), want it built at once", cost, due, s.stats.seq)
			}
			continue
		}
		if s.stats.seq == 1 {
			t.Errorf("cost %v: built at once, want it put off", cost)
		}
		if lo, hi := before.Add(statsSettle*cost), after.Add(statsSettle*cost); due.Before(lo) || due.After(hi) {
			t.Errorf("cost %v: build owed at %v, want %v after the step (between %v and %v)", cost, due, statsSettle*cost, lo, hi)
		}
		// Once due, the next step builds it.
		s.stats.due = time.Now().Add(-time.Millisecond)
		s.stepDone(time.Now())
		if s.stats.seq != 1 || !s.statsDue().IsZero() {
			t.Errorf("cost %v: once due, not built (seq %d, owed at %v)", cost, s.stats.seq, s.statsDue())
		}
	}
}

package supervisor

import (
	"sort"
	"sync"
	"time"

	"github.com/opsvc/opsvc/supervisor/metrics"
)

// loopStats feeds the metrics: the loop publishes a snapshot after each
// step, and scrapes read it without asking the loop.
type loopStats struct {
	once    sync.Once
	m       *metrics.Metrics
	counted bool                   // loop-owned: the event counter runs
	track   map[string]*startTrack // loop-owned
}

// startTrack times a unit's last start.
type startTrack struct {
	activating time.Time // when the unit last entered activating
	started    time.Time // the process start the durations are for
	readyFor   time.Time // the process start the ready duration was taken for
	startDur   time.Duration
	readyDur   time.Duration
}

// Metrics are the daemon's Prometheus metrics (GET /metrics).
func (s *Supervisor) Metrics() *metrics.Metrics {
	s.stats.once.Do(func() {
		opts := metrics.Options{Registry: s.opts.Registry}
		if s.opts.Bus != nil {
			opts.Events = s.opts.Bus
		}
		s.stats.m = metrics.New(opts)
	})
	return s.stats.m
}

// stepDone ends one step of the loop that began at woke: it records how
// long the step took and publishes the snapshot scrapes read.
func (s *Supervisor) stepDone(woke time.Time) {
	m := s.Metrics()
	m.ObserveReconcile(time.Since(woke))
	if !s.stats.counted {
		s.stats.counted = true
		go m.CountEvents(s.loopCh)
	}
	m.Publish(s.snapshot())
}

func (s *Supervisor) snapshot() *metrics.Snapshot {
	if s.stats.track == nil {
		s.stats.track = map[string]*startTrack{}
	}
	// In no order: the exposition format sorts.
	snap := &metrics.Snapshot{Units: make([]metrics.Unit, 0, len(s.desired))}
	orch := map[string]bool{}
	for n, d := range s.desired {
		u := metrics.Unit{Name: n, State: Inactive.String()}
		if d.Unit != nil && d.Unit.Orchestrator != nil {
			orch[n] = true
		}
		if rt := s.units[n]; rt != nil {
			u.State, u.Restarts = rt.State.String(), rt.Restarts
			if rt.Exit != nil {
				u.HasExit, u.ExitCode = true, rt.Exit.Code
			}
			tr := s.stats.track[n]
			if tr == nil {
				tr = &startTrack{}
				s.stats.track[n] = tr
			}
			tr.observe(rt)
			u.StartDuration, u.ReadyDuration = tr.startDur, tr.readyDur
			u.StartKnown, u.ReadyKnown = !tr.started.IsZero(), !tr.readyFor.IsZero()
		}
		snap.Units = append(snap.Units, u)
	}
	for n := range s.stats.track {
		if _, ok := s.desired[n]; !ok {
			delete(s.stats.track, n)
		}
	}
	o := s.opts.Settings.Orchestrator
	day, total, byUnit := s.leases.Spent(s.now())
	snap.Day, snap.GlobalUsedUSD = day, total
	snap.GlobalLimitUSD, snap.PerWorkerLimitUSD = o.GlobalBudgetUSD, o.PerWorkerBudgetUSD
	snap.LeasesHeld, snap.LeasesWaiting = s.leases.Active(), s.leases.Waiting()
	for n := range byUnit {
		orch[n] = true
	}
	for _, n := range sortedNames(orch) {
		snap.UnitUsed = append(snap.UnitUsed, metrics.UnitBudget{Unit: n, UsedUSD: byUnit[n]})
	}
	return snap
}

func (tr *startTrack) observe(rt *unitRecord) {
	if rt.State == Activating && rt.Since.After(tr.activating) {
		tr.activating = rt.Since
	}
	if !rt.StartedAt.IsZero() && !rt.StartedAt.Equal(tr.started) {
		// The activating seen since the previous process started, if any,
		// began this start; else it went by within one step.
		prev := tr.started
		tr.started = rt.StartedAt
		tr.startDur = 0
		if !tr.activating.IsZero() && tr.activating.After(prev) && !tr.activating.After(rt.StartedAt) {
			tr.startDur = rt.StartedAt.Sub(tr.activating)
		}
	}
	if rt.State == Active && !tr.started.IsZero() && !tr.readyFor.Equal(tr.started) {
		tr.readyFor = tr.started
		if d := rt.Since.Sub(tr.started); d >= 0 {
			tr.readyDur = d
		}
	}
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package supervisor

import (
	"maps"
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

	// Loop-owned: the per-unit part of the snapshot is built again only
	// when a unit changed, and no sooner than statsPace times its last
	// build's length after it (so that it costs at most a fiftieth of the
	// loop's time with thousands of units changing, as at a cold start:
	// the CPU is the units' first); due is when a build put off so is owed.
	built  bool
	seq    uint64 // s.dirty.seq it was built at
	at     time.Time
	cost   time.Duration
	due    time.Time
	units  []metrics.Unit
	orch   []string // units with an [orchestrator] table
	counts [6]int   // units by state, for the status line
	last   *metrics.Snapshot
}

// statsPace spaces builds of the snapshot by their length; maxStatsPace
// bounds the wait for a snapshot that is owed. A build that took
// statsSettleFrom or more (thousands of units) also waits statsSettle times
// its length after the change that calls for it, at most maxStatsSettle.
const (
	statsPace       = 50
	maxStatsPace    = time.Second
	statsSettleFrom = time.Millisecond
	statsSettle     = 4
	maxStatsSettle  = 50 * time.Millisecond
)

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
// long the step took and publishes the snapshot scrapes read, when
// something in it changed.
func (s *Supervisor) stepDone(woke time.Time) {
	m := s.Metrics()
	m.ObserveReconcile(time.Since(woke))
	if !s.stats.counted {
		s.stats.counted = true
		go m.CountEvents(s.loopCh)
	}
	s.observeTouched()
	st := &s.stats
	rebuilt := false
	if !st.built || st.seq != s.dirty.seq {
		now := time.Now()
		if st.built && st.due.IsZero() {
			st.due = st.at.Add(min(statsPace*st.cost, maxStatsPace))
			if st.cost >= statsSettleFrom {
				// A costly build waits a little even when the last was
				// long ago: the restart an exit set off forks and is
				// recorded first, with the CPUs to itself.
				st.due = later(st.due, now.Add(min(statsSettle*st.cost, maxStatsSettle)))
			}
		}
		if !st.built || !now.Before(st.due) {
			s.buildUnitStats()
			st.cost, st.at, st.due = time.Since(now), now, time.Time{}
			rebuilt = true
		}
	}
	if snap := s.snapshot(); rebuilt || !sameBudgets(snap, st.last) {
		st.last = snap
		m.Publish(snap)
	}
	if rebuilt {
		s.updateStatus()
	}
}

// statsDue is when a snapshot put off is owed (zero: none).
func (s *Supervisor) statsDue() time.Time { return s.stats.due }

// statsNow builds the per-unit part of the snapshot at once, as a paced
// build does: a build owed (due) is then done, and the next is paced from
// this one.
func (s *Supervisor) statsNow() {
	now := time.Now()
	s.buildUnitStats()
	st := &s.stats
	st.cost, st.at, st.due = time.Since(now), now, time.Time{}
}

// observeTouched times the starts of the units changed since the last
// step, so that a state a paced snapshot does not see still counts.
func (s *Supervisor) observeTouched() {
	for n := range s.dirty.touched {
		if rt := s.units[n]; rt != nil {
			s.stats.trackOf(n).observe(rt)
		}
	}
	clear(s.dirty.touched)
}

func (st *loopStats) trackOf(n string) *startTrack {
	if st.track == nil {
		st.track = map[string]*startTrack{}
	}
	tr := st.track[n]
	if tr == nil {
		tr = &startTrack{}
		st.track[n] = tr
	}
	return tr
}

// buildUnitStats builds the per-unit part of the snapshot, and the counts
// of the status line, from every unit.
func (s *Supervisor) buildUnitStats() {
	st := &s.stats
	st.built, st.seq = true, s.dirty.seq
	// In no order: the exposition format sorts. A new slice: the published
	// snapshot keeps the last one.
	units := make([]metrics.Unit, 0, len(s.desired))
	st.orch = st.orch[:0]
	st.counts = [6]int{}
	for n, d := range s.desired {
		u := metrics.Unit{Name: n, State: Inactive.String()}
		if d.Unit != nil && d.Unit.Orchestrator != nil {
			st.orch = append(st.orch, n)
		}
		state := Inactive
		if rt := s.units[n]; rt != nil {
			state = rt.State
			u.State, u.Restarts = rt.State.String(), rt.Restarts
			if rt.Exit != nil {
				u.HasExit, u.ExitCode = true, rt.Exit.Code
			}
			tr := st.trackOf(n)
			tr.observe(rt)
			u.StartDuration, u.ReadyDuration = tr.startDur, tr.readyDur
			u.StartKnown, u.ReadyKnown = !tr.started.IsZero(), !tr.readyFor.IsZero()
		}
		if int(state) < len(st.counts) {
			st.counts[state]++
		}
		units = append(units, u)
	}
	st.units = units
	if len(st.track) > len(s.desired) {
		for n := range st.track {
			if _, ok := s.desired[n]; !ok {
				delete(st.track, n)
			}
		}
	}
}

// snapshot is the last per-unit part with the spending as it is now.
func (s *Supervisor) snapshot() *metrics.Snapshot {
	snap := &metrics.Snapshot{Units: s.stats.units}
	orch := make(map[string]bool, len(s.stats.orch))
	for _, n := range s.stats.orch {
		orch[n] = true
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

// sameBudgets reports whether a and b differ at most in their units.
func sameBudgets(a, b *metrics.Snapshot) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Day == b.Day && a.GlobalUsedUSD == b.GlobalUsedUSD && a.GlobalLimitUSD == b.GlobalLimitUSD &&
		a.PerWorkerLimitUSD == b.PerWorkerLimitUSD && a.LeasesHeld == b.LeasesHeld && a.LeasesWaiting == b.LeasesWaiting &&
		maps.Equal(budgetMap(a.UnitUsed), budgetMap(b.UnitUsed))
}

func budgetMap(l []metrics.UnitBudget) map[string]float64 {
	m := make(map[string]float64, len(l))
	for _, b := range l {
		m[b.Unit] = b.UsedUSD
	}
	return m
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

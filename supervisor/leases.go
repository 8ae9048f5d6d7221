package supervisor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/worker/chain"
)

// Leases enforces the coordination limits across every orchestrator: how
// many sessions run at once, how many start per minute, and what all chains,
// and each unit, may spend per day. It is pure bookkeeping owned by the
// reconcile loop; time is passed in.
type Leases struct {
	active map[string]lease   // by lease id
	starts []time.Time        // grants in the last minute
	day    string             // UTC date the spend counters are for
	spent  float64            // all units, today
	byUnit map[string]float64 // per unit, today
	nextID int
	// waiting are the units whose last request was refused.
	waiting map[string]bool
}

type lease struct {
	unit    string
	chainID string
	granted time.Time
}

// Grant is the answer to session.acquire.
type Grant struct {
	Granted bool   `json:"granted"`
	LeaseID string `json:"lease_id,omitempty"`
	Reason  string `json:"reason,omitempty"`   // why not, when not granted
	RetryMS int64  `json:"retry_ms,omitempty"` // when to ask again
	// Limits are the session's limits under the current settings (granted leases only).
	Limits *chain.Limits `json:"limits,omitempty"`
	// BudgetLeftUSD is what the unit may still spend today under per_worker_budget_usd and
	// global_budget_usd, for the worker to hold the session to; absent when neither limits it.
	BudgetLeftUSD *float64 `json:"budget_left_usd,omitempty"`
}

// NewLeases returns empty bookkeeping.
func NewLeases() *Leases {
	return &Leases{active: map[string]lease{}, byUnit: map[string]float64{}, waiting: map[string]bool{}}
}

func (l *Leases) roll(now time.Time) {
	day := now.UTC().Format("2006-01-02")
	if day != l.day {
		l.day, l.spent, l.byUnit = day, 0, map[string]float64{}
	}
	keep := l.starts[:0]
	for _, t := range l.starts {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	l.starts = keep
}

// Spend records money spent outside a lease (for example, today's sessions
// found in the registry at start-up).
func (l *Leases) Spend(unit string, usd float64, now time.Time) {
	l.roll(now)
	l.spent += usd
	l.byUnit[unit] += usd
}

// Acquire asks for a session lease for unit under the limits.
func (l *Leases) Acquire(s config.OrchestratorSettings, unit, chainID string, now time.Time) Grant {
	g := l.acquire(s, unit, chainID, now)
	if g.Granted {
		delete(l.waiting, unit)
	} else {
		l.waiting[unit] = true
	}
	return g
}

func (l *Leases) acquire(s config.OrchestratorSettings, unit, chainID string, now time.Time) Grant {
	l.roll(now)
	if s.GlobalBudgetUSD > 0 && l.spent >= s.GlobalBudgetUSD {
		return Grant{Reason: fmt.Sprintf("global_budget_usd %.2f spent today", s.GlobalBudgetUSD), RetryMS: untilTomorrow(now)}
	}
	if s.PerWorkerBudgetUSD > 0 && l.byUnit[unit] >= s.PerWorkerBudgetUSD {
		return Grant{Reason: fmt.Sprintf("per_worker_budget_usd %.2f spent today by %s", s.PerWorkerBudgetUSD, unit), RetryMS: untilTomorrow(now)}
	}
	if s.MaxConcurrentSessions > 0 && len(l.active) >= s.MaxConcurrentSessions {
		return Grant{Reason: fmt.Sprintf("max_concurrent_sessions (%d) running", s.MaxConcurrentSessions), RetryMS: 250}
	}
	if s.MaxSessionsPerMinute > 0 && len(l.starts) >= s.MaxSessionsPerMinute {
		wait := time.Minute - now.Sub(l.starts[0])
		return Grant{Reason: fmt.Sprintf("max_sessions_per_minute (%d) reached", s.MaxSessionsPerMinute), RetryMS: wait.Milliseconds() + 1}
	}
	l.nextID++
	id := "l" + strconv.Itoa(l.nextID) + "-" + strconv.FormatInt(now.UnixNano(), 36)
	l.active[id] = lease{unit: unit, chainID: chainID, granted: now}
	l.starts = append(l.starts, now)
	g := Grant{Granted: true, LeaseID: id}
	left := -1.0
	if s.GlobalBudgetUSD > 0 {
		left = s.GlobalBudgetUSD - l.spent
	}
	if s.PerWorkerBudgetUSD > 0 && (left < 0 || s.PerWorkerBudgetUSD-l.byUnit[unit] < left) {
		left = s.PerWorkerBudgetUSD - l.byUnit[unit]
	}
	if left >= 0 {
		g.BudgetLeftUSD = &left
	}
	return g
}

// Release ends a lease and books its cost.
func (l *Leases) Release(id string, costUSD float64, now time.Time) error {
	le, ok := l.active[id]
	if !ok {
		return fmt.Errorf("no lease %q", id)
	}
	delete(l.active, id)
	l.Spend(le.unit, costUSD, now)
	return nil
}

// ReleaseUnit drops every lease a unit holds (its worker is gone).
func (l *Leases) ReleaseUnit(unit string) {
	for id, le := range l.active {
		if le.unit == unit {
			delete(l.active, id)
		}
	}
	delete(l.waiting, unit)
}

// Waiting counts the units whose last request for a lease was refused.
func (l *Leases) Waiting() int { return len(l.waiting) }

// Spent returns the UTC day the spending is for, what all units spent that
// day, and what each spent (a copy).
func (l *Leases) Spent(now time.Time) (day string, total float64, byUnit map[string]float64) {
	l.roll(now)
	byUnit = make(map[string]float64, len(l.byUnit))
	for u, v := range l.byUnit {
		byUnit[u] = v
	}
	return l.day, l.spent, byUnit
}

// Active counts leases held.
func (l *Leases) Active() int { return len(l.active) }

func untilTomorrow(now time.Time) int64 {
	u := now.UTC()
	next := time.Date(u.Year(), u.Month(), u.Day()+1, 0, 0, 0, 0, time.UTC)
	return next.Sub(u).Milliseconds()
}

// handleSessionRequest answers session.acquire and session.release from an
// orchestrator worker.
func (s *Supervisor) handleSessionRequest(name string, rt *unitRecord, method string, params json.RawMessage) (any, error) {
	now := s.now()
	switch method {
	case "session.acquire":
		var p struct {
			ChainID string `json:"chain_id"`
		}
		json.Unmarshal(params, &p)
		g := s.leases.Acquire(s.opts.Settings.Orchestrator, name, p.ChainID, now)
		if g.Granted {
			if d := s.desired[name]; d.Unit != nil && d.Unit.Orchestrator != nil {
				// The settings as they are now: a change applies from the next session on.
				c := s.orchestratorConfig(d.Unit.Orchestrator)
				l := chain.Limits{Model: c.Model, MaxTurns: c.MaxTurns, MaxBudgetUSD: chain.UnlimitedBudget}
				if c.MaxBudgetUSD != nil && *c.MaxBudgetUSD >= 0 {
					l.MaxBudgetUSD = *c.MaxBudgetUSD
				}
				g.Limits = &l
			}
			s.publish("session.lease", name, rt.PID, map[string]any{"lease_id": g.LeaseID, "chain_id": p.ChainID})
		}
		return g, nil
	case "session.release":
		var p struct {
			LeaseID string  `json:"lease_id"`
			CostUSD float64 `json:"cost_usd"`
		}
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, fmt.Errorf("session.release: %v", err)
		}
		return map[string]any{"released": true}, s.leases.Release(p.LeaseID, p.CostUSD, now)
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

// loadSpend books today's session costs from the registry, so the daily
// budgets hold across daemon restarts. It runs at start, before any worker: a
// chain still running in the registry lost its worker with the daemon, and is
// marked interrupted first (see interruptOrphans).
func (s *Supervisor) loadSpend() {
	if s.opts.Registry == nil {
		return
	}
	now := s.now()
	s.interruptOrphans("", now, "the daemon restarted while it ran (its worker was gone)")
	today := now.UTC().Format("2006-01-02")
	err := s.opts.Registry.View(func(r *registry.Registry) error {
		for _, c := range r.Chains {
			for _, ss := range c.Sessions {
				if !ss.EndedAt.IsZero() && ss.EndedAt.UTC().Format("2006-01-02") == today {
					s.leases.Spend(c.Unit, ss.CostUSD, now)
				}
			}
		}
		return nil
	})
	if err != nil {
		s.logf("registry: %v", err)
	}
}

package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opsvc/opsvc/cluster"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// FleetLeases grants session leases for every daemon of a fleet ([cluster] in opsvc.toml):
// *cluster.Leases, in etcd. With it set, the limits of [orchestrator] hold across hosts, and a
// session never starts without a lease from it. Its calls block on the network, so the daemon
// makes them off its loop and answers the worker when they are done.
type FleetLeases interface {
	Acquire(ctx context.Context, s config.OrchestratorSettings, unit, chainID string) cluster.Grant
	Release(ctx context.Context, unit, id string, costUSD float64) error
	ReleaseUnit(ctx context.Context, unit string) error
	// Reachable is nil while etcd answers, else why it does not.
	Reachable() error
}

// fleetCallTimeout bounds one lease call to etcd made for a worker.
const fleetCallTimeout = 30 * time.Second

// fleetRequest takes session.acquire and session.release of unit name's worker when the leases
// are the fleet's, and reports whether m was one. It runs on the loop; the call to etcd, and the
// answer, are made from a goroutine of their own.
func (s *Supervisor) fleetRequest(name string, rec *unitRecord, m worker.Message) bool {
	fleet := s.opts.Fleet
	if fleet == nil || (m.Method != "session.acquire" && m.Method != "session.release") {
		return false
	}
	ch, pid := rec.channel, rec.PID
	switch m.Method {
	case "session.acquire":
		var p struct {
			ChainID string `json:"chain_id"`
		}
		json.Unmarshal(m.Params, &p)
		settings := s.opts.Settings.Orchestrator // the settings as they are now
		var limits *chain.Limits
		if d := s.desired[name]; d.Unit != nil && d.Unit.Orchestrator != nil {
			c := s.orchestratorConfig(d.Unit.Orchestrator)
			l := chain.Limits{Model: c.Model, MaxTurns: c.MaxTurns, MaxBudgetUSD: chain.UnlimitedBudget}
			if c.MaxBudgetUSD != nil && *c.MaxBudgetUSD >= 0 {
				l.MaxBudgetUSD = *c.MaxBudgetUSD
			}
			limits = &l
		}
		ch.Go(m.ID, func() (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
			defer cancel()
			fg := fleet.Acquire(ctx, settings, name, p.ChainID)
			g := Grant{Granted: fg.Granted, LeaseID: fg.LeaseID, Reason: fg.Reason, RetryMS: fg.RetryMS}
			if g.Granted {
				g.Limits = limits
				if fg.BudgetLeftUSD >= 0 {
					left := fg.BudgetLeftUSD
					g.BudgetLeftUSD = &left
				}
				s.publish("session.lease", name, pid, map[string]any{"lease_id": g.LeaseID, "chain_id": p.ChainID})
			}
			return g, nil
		})
	case "session.release":
		var p struct {
			LeaseID string  `json:"lease_id"`
			CostUSD float64 `json:"cost_usd"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			if rerr := ch.Reply(m.ID, nil, fmt.Errorf("session.release: %v", err)); rerr != nil {
				s.logf("%s: reply to %s: %v", name, m.Method, rerr)
			}
			return true
		}
		ch.Go(m.ID, func() (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
			defer cancel()
			if err := fleet.Release(ctx, name, p.LeaseID, p.CostUSD); err != nil {
				s.logf("%s: %v", name, err)
			}
			// The worker has nothing to do about a release that failed: the
			// slot frees with this host's lease, the cost is booked later.
			return map[string]any{"released": true}, nil
		})
	}
	return true
}

// fleetReleaseUnit drops the fleet leases of a unit whose worker is gone, off the loop.
func (s *Supervisor) fleetReleaseUnit(name string) {
	fleet := s.opts.Fleet
	if fleet == nil {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
		defer cancel()
		if err := fleet.ReleaseUnit(ctx, name); err != nil {
			s.logf("%s: release its session leases in etcd: %v (they free when this host's lease expires)", name, err)
		}
	}()
}

// fleetText is "" while the fleet's etcd answers (or there is no fleet), else a line for the
// status header and sd_notify STATUS=.
func (s *Supervisor) fleetText() string {
	if s.opts.Fleet == nil {
		return ""
	}
	if err := s.opts.Fleet.Reachable(); err != nil {
		return fmt.Sprintf("cluster: %v (local units keep running; no new session starts)", err)
	}
	return ""
}

// FleetChanged wakes the loop so that the status line (sd_notify STATUS=) shows whether the
// fleet's etcd answers. It does not block.
func (s *Supervisor) FleetChanged() {
	select {
	case s.reqs <- func() {}:
	default:
	}
}

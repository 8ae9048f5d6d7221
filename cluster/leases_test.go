package cluster_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsvc/opsvc/cluster"
	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/config"
)

func dialHost(t *testing.T, ec *etcdtest.Cluster, name string) *cluster.Client {
	t.Helper()
	s := settings(ec.Endpoints())
	s.Node = name
	s.Prefix = "/leases"
	c, err := cluster.Dial(etcdtest.Ctx(t), s, cluster.Options{Host: name, CheckEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acquire asks until granted; it fails the test on a refusal other than a full fleet.
func acquire(t *testing.T, l *cluster.Leases, s config.OrchestratorSettings, unit string) cluster.Grant {
	deadline := time.Now().Add(60 * time.Second)
	for {
		g := l.Acquire(etcdtest.Ctx(t), s, unit, "")
		if g.Granted {
			return g
		}
		if time.Now().After(deadline) {
			t.Errorf("no lease within 60s: %s", g.Reason)
			return g
		}
		time.Sleep(time.Duration(min(g.RetryMS, 50)) * time.Millisecond) // as a worker waits RetryMS
	}
}

// TestFleetSemaphore: 4 hosts × 3 orchestrators with max_concurrent_sessions
// = 2 never hold more than 2 leases at once, while one etcd member of three
// is killed and comes back.
func TestFleetSemaphore(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	s := config.DefaultSettings().Orchestrator
	s.MaxConcurrentSessions, s.MaxSessionsPerMinute = 2, 0
	const hosts, orchs, sessions = 4, 3, 4
	var (
		holding, most, granted atomic.Int64
		wg                     sync.WaitGroup
	)
	for h := range hosts {
		l := cluster.NewLeases(dialHost(t, ec, fmt.Sprint("h", h)))
		for o := range orchs {
			wg.Go(func() {
				for range sessions {
					g := acquire(t, l, s, fmt.Sprintf("orch-%d", o))
					if !g.Granted {
						return
					}
					n := holding.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					granted.Add(1)
					holding.Add(-1)
					// A release etcd does not answer (the killed member led) is
					// kept and done later: below, every cost must be booked.
					if err := l.Release(etcdtest.Ctx(t), fmt.Sprintf("orch-%d", o), g.LeaseID, 0.01); err != nil {
						t.Log(err)
					}
				}
			})
		}
	}
	// One member of three dies while the sessions go on.
	for granted.Load() < hosts*orchs*sessions/3 && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	ec.Stop(1, true)
	wg.Wait()
	if got := granted.Load(); got != hosts*orchs*sessions {
		t.Fatalf("%d sessions granted, want %d", got, hosts*orchs*sessions)
	}
	if m := most.Load(); m > 2 || m < 1 {
		t.Fatalf("at most %d sessions held at once, want 1 or 2 (never more than max_concurrent_sessions)", m)
	}
	// Releases kept during the outage are done at each host's next check.
	check := cluster.NewLeases(dialHost(t, ec, "check"))
	want := fmt.Sprintf("%.2f", float64(hosts*orchs*sessions)*0.01)
	var (
		total  float64
		active int
		err    error
	)
	for deadline := time.Now().Add(30 * time.Second); ; {
		total, _, err = check.Spent(etcdtest.Ctx(t))
		if err == nil {
			active, err = check.Active(etcdtest.Ctx(t))
		}
		if err == nil && fmt.Sprintf("%.2f", total) == want && active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spent %v with %d slots held (%v), want %s spent and no slot held: a release was lost", total, active, err, want)
		}
		time.Sleep(50 * time.Millisecond) // polling etcd, which has no event for "booked"
	}
}

// TestFleetBudget: hosts spending at once overrun global_budget_usd by at
// most one session's cost.
func TestFleetBudget(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	s := config.DefaultSettings().Orchestrator
	s.MaxConcurrentSessions, s.MaxSessionsPerMinute = 1, 0
	s.GlobalBudgetUSD, s.PerWorkerBudgetUSD = 1.0, 0
	const cost = 0.3
	var wg sync.WaitGroup
	var sessions atomic.Int64
	for h := range 4 {
		l := cluster.NewLeases(dialHost(t, ec, fmt.Sprint("h", h)))
		wg.Go(func() {
			for {
				g := l.Acquire(etcdtest.Ctx(t), s, "u", "")
				if !g.Granted {
					if strings.Contains(g.Reason, "global_budget_usd") {
						return
					}
					time.Sleep(time.Duration(min(g.RetryMS, 50)) * time.Millisecond)
					continue
				}
				sessions.Add(1)
				if g.BudgetLeftUSD <= 0 || g.BudgetLeftUSD > 1.0 {
					t.Errorf("budget left %v", g.BudgetLeftUSD)
				}
				if err := l.Release(etcdtest.Ctx(t), "u", g.LeaseID, cost); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	total, byUnit, err := cluster.NewLeases(dialHost(t, ec, "check")).Spent(etcdtest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if total > 1.0+cost+1e-9 || total < 1.0 || sessions.Load() != 4 || byUnit["u"] != total {
		t.Fatalf("spent %v in %d sessions (by unit %v); want at least 1.00 and at most 1.30, in 4 sessions", total, sessions.Load(), byUnit)
	}
}

// TestFleetHostDies: the slots of a host that stops answering free themselves
// when its lease expires; and the per-minute window holds fleet-wide.
func TestFleetHostDies(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := config.DefaultSettings().Orchestrator
	s.MaxConcurrentSessions, s.MaxSessionsPerMinute = 2, 3
	dying := dialHost(t, ec, "dying")
	ld, lb := cluster.NewLeases(dying), cluster.NewLeases(dialHost(t, ec, "b"))
	for range 2 {
		if g := ld.Acquire(etcdtest.Ctx(t), s, "u", ""); !g.Granted {
			t.Fatalf("refused: %s", g.Reason)
		}
	}
	if g := lb.Acquire(etcdtest.Ctx(t), s, "u", ""); g.Granted || !strings.Contains(g.Reason, "max_concurrent_sessions (2)") {
		t.Fatalf("third lease: %+v", g)
	}
	dying.Etcd().Close() // the host is gone: no more keep-alives
	start := time.Now()
	g := acquire(t, lb, s, "u")
	if !g.Granted {
		t.Fatal("the dead host's slots were never freed")
	}
	if waited := time.Since(start); waited > 3*dying.LeaseTTL()+5*time.Second {
		t.Errorf("slots freed after %s, lease TTL %s", waited, dying.LeaseTTL())
	}
	// Three grants in the last minute: a fourth waits for the window.
	if err := lb.Release(etcdtest.Ctx(t), "u", g.LeaseID, 0); err != nil {
		t.Fatal(err)
	}
	g = lb.Acquire(etcdtest.Ctx(t), s, "u", "")
	if g.Granted || !strings.Contains(g.Reason, "max_sessions_per_minute (3)") || g.RetryMS <= 0 || g.RetryMS > 60_000 {
		t.Fatalf("fourth grant in a minute: %+v", g)
	}
}

// TestFleetOutage: while etcd has no quorum no lease is granted, with the
// reason; once it is back, leases are granted again.
func TestFleetOutage(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	s := config.DefaultSettings().Orchestrator
	c := dialHost(t, ec, "h")
	l := cluster.NewLeases(c)
	g := l.Acquire(etcdtest.Ctx(t), s, "u", "")
	if !g.Granted {
		t.Fatal(g.Reason)
	}
	ec.Stop(1, false)
	ec.Stop(2, false)
	if err := l.Release(etcdtest.Ctx(t), "u", g.LeaseID, 0.5); err == nil {
		t.Fatal("release without quorum succeeded")
	}
	g = l.Acquire(etcdtest.Ctx(t), s, "u", "")
	if g.Granted || !strings.Contains(g.Reason, "etcd") {
		t.Fatalf("granted without quorum: %+v", g)
	}
	ec.Restart(1)
	g = acquire(t, l, s, "u")
	if !g.Granted {
		t.Fatal("no lease after etcd is back")
	}
	// The cost of the session released during the outage is booked now.
	total, _, err := l.Spent(etcdtest.Ctx(t))
	if err != nil || total != 0.5 {
		t.Fatalf("spent %v, %v; want the 0.5 released during the outage", total, err)
	}
}

// TestReleaseOnce: a release done again (its first answer was lost) books
// the cost once and frees the slot once.
func TestReleaseOnce(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	s := config.DefaultSettings().Orchestrator
	l := cluster.NewLeases(dialHost(t, ec, "h"))
	g := l.Acquire(etcdtest.Ctx(t), s, "u", "")
	if !g.Granted {
		t.Fatal(g.Reason)
	}
	for range 2 {
		if err := l.Release(etcdtest.Ctx(t), "u", g.LeaseID, 0.25); err != nil {
			t.Fatal(err)
		}
	}
	total, byUnit, err := l.Spent(etcdtest.Ctx(t))
	if err != nil || total != 0.25 || byUnit["u"] != 0.25 {
		t.Fatalf("spent %v (by unit %v, %v) after releasing one session twice, want 0.25", total, byUnit, err)
	}
	if n, err := l.Active(etcdtest.Ctx(t)); err != nil || n != 0 {
		t.Fatalf("%d slots held (%v) after the release, want 0", n, err)
	}
}

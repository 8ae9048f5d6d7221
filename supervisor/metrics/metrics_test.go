package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestMetrics publishes a snapshot, events on a real bus and chains in a
// real registry, and reads them back as Prometheus text; promtool, when
// installed, checks the output.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	b, err := bus.Open(dir, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reg, err := registry.Open(dir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = reg.Update(func(r *registry.Registry) error {
		c := r.CreateChain("orch@a", "task", "/srv", registry.ChainConfig{}, "", now)
		if err := r.RecordSession(c.ID, registry.Session{Index: 0, Status: registry.SessionComplete, Turns: 3, CostUSD: 0.25}, now); err != nil {
			return err
		}
		if err := r.RecordSession(c.ID, registry.Session{Index: 1, Status: registry.SessionError, Turns: 1, CostUSD: 0.5}, now); err != nil {
			return err
		}
		return r.SetStatus(c.ID, registry.ChainFailed, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	m := New(Options{Events: b, Registry: reg})
	m.Publish(&Snapshot{
		Units: []Unit{
			{Name: "web", State: "active", Restarts: 2, HasExit: true, ExitCode: 137, StartDuration: 3 * time.Millisecond, ReadyDuration: 1500 * time.Millisecond, StartKnown: true, ReadyKnown: true},
			{Name: "orch@a", State: "failed"},
		},
		LeasesHeld: 1, LeasesWaiting: 2,
		Day: "2026-12-02", GlobalUsedUSD: 0.75, GlobalLimitUSD: 50, PerWorkerLimitUSD: 10,
		UnitUsed: []UnitBudget{{Unit: "orch@a", UsedUSD: 0.75}},
	})
	m.ObserveReconcile(2 * time.Millisecond)

	done := make(chan struct{})
	counted := make(chan struct{})
	go func() { m.CountEvents(done); close(counted) }()
	defer func() { close(done); <-counted }()
	// Wait for the counter to be subscribed: a probe event it counts.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scrape(t, m), `opsvc_events_total{type="probe"}`) {
		if time.Now().After(deadline) {
			t.Fatal("the event counter did not count a probe event within 10s")
		}
		b.Publish(bus.Event{Type: "probe"})
		time.Sleep(10 * time.Millisecond) // poll interval, with a deadline
	}
	b.Publish(bus.Event{Type: "unit.started", Unit: "web"})
	b.Publish(bus.Event{Type: "unit.started", Unit: "web"})
	var out string
	for {
		out = scrape(t, m)
		if strings.Contains(out, `opsvc_events_total{type="unit.started"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unit.started not counted twice within 10s:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, want := range []string{
		`opsvc_unit_state{state="active",unit="web"} 1`,
		`opsvc_unit_state{state="failed",unit="web"} 0`,
		`opsvc_unit_state{state="failed",unit="orch@a"} 1`,
		`opsvc_unit_restarts_total{unit="web"} 2`,
		`opsvc_unit_last_exit_code{unit="web"} 137`,
		`opsvc_unit_start_duration_seconds{unit="web"} 0.003`,
		`opsvc_unit_ready_duration_seconds{unit="web"} 1.5`,
		`opsvc_leases_held 1`,
		`opsvc_leases_waiting 2`,
		`opsvc_budget_global_used_usd 0.75`,
		`opsvc_budget_global_remaining_usd 49.25`,
		`opsvc_budget_worker_used_usd{unit="orch@a"} 0.75`,
		`opsvc_budget_worker_remaining_usd{unit="orch@a"} 9.25`,
		`opsvc_budget_worker_limit_usd 10`,
		`opsvc_chains{status="failed"} 1`,
		`opsvc_chains{status="running"} 0`,
		`opsvc_sessions{status="complete"} 1`,
		`opsvc_sessions{status="error"} 1`,
		`opsvc_orchestrator_cost_usd{unit="orch@a"} 0.75`,
		`opsvc_orchestrator_turns{unit="orch@a"} 4`,
		`opsvc_reconcile_duration_seconds_count 1`,
		`opsvc_registry_read_errors 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("no %q in the metrics", want)
		}
	}
	if !strings.Contains(out, "opsvc_events_last_seq ") || strings.Contains(out, "opsvc_events_last_seq 0\n") {
		t.Errorf("opsvc_events_last_seq missing or 0")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}
	promtool(t, out)
}

// TestEventTypesBounded: worker-named event types beyond MaxEventTypes are
// counted as "other", not as series of their own.
func TestEventTypesBounded(t *testing.T) {
	m := New(Options{})
	for i := range MaxEventTypes + 10 {
		m.events.WithLabelValues(m.typeLabel(fmt.Sprintf("worker.m%d", i))).Inc()
	}
	out := scrape(t, m)
	if n := strings.Count(out, "opsvc_events_total{"); n != MaxEventTypes+1 {
		t.Errorf("%d series of opsvc_events_total, want %d", n, MaxEventTypes+1)
	}
	if !strings.Contains(out, `opsvc_events_total{type="other"} 10`) {
		t.Errorf("the types beyond the bound are not counted as other")
	}
	if m.typeLabel("worker.m0") != "worker.m0" {
		t.Errorf("a type seen before the bound lost its label")
	}
}

// TestNoSnapshotYet serves the metrics a daemon has before its first step.
func TestNoSnapshotYet(t *testing.T) {
	out := scrape(t, New(Options{}))
	if strings.Contains(out, "opsvc_unit_state") {
		t.Errorf("unit metrics before any snapshot:\n%s", out)
	}
	if !strings.Contains(out, "opsvc_reconcile_duration_seconds_count 0") {
		t.Errorf("no empty reconcile histogram:\n%s", out)
	}
	promtool(t, out)
}

// promtool runs promtool check metrics on out when promtool is installed.
func promtool(t *testing.T, out string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (Debian package prometheus): output not linted")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, stderr.String())
	}
}

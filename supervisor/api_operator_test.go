//go:build unix

package supervisor

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/unit"
)

// operatorAgent is an agent that finishes its chain in one session, or
// waits for its end when the task says "slow".
func operatorAgent(t *testing.T) string {
	t.Helper()
	agent := filepath.Join(shortTemp(t), "agent.sh")
	err := os.WriteFile(agent, []byte(`#!/bin/sh
prompt=$(cat)
case "$prompt" in *slow*) exec sleep 60;; esac
printf '{"turns":2,"cost_usd":0.25,"done":true}' > "$OPSVC_RESULT"
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	return agent
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// TestOperatorStartListStop drives orchestrator instances through the
// original operator's routes: start with values (kept in the state
// directory, shown with their source), list with the chain, stop, and
// refuse bad values naming the field.
func TestOperatorStartListStop(t *testing.T) {
	agent := operatorAgent(t)
	h := newHarness(t, map[string]string{
		"orchestrator@.toml": `[service]
restart = "no"
environment = { GORACE = "atexit_sleep_ms=0" }
[orchestrator]
project_dir = "/"
task = "Work on %i"
agent = ["` + agent + `"]
`,
		"web.toml": "[service]\nexec = [\"/bin/sleep\", \"60\"]\n",
	}, withRegistry(t))

	code, b := h.do("POST", "/api/orchestrator/x/start", strings.NewReader(`{"task":"Reach 100% \"coverage\"","model":"haiku","max_turns":7,"max_budget_usd":1.5}`))
	if code != 200 {
		t.Fatalf("start: %d %s", code, b)
	}
	inst := decode[Instance](t, b)
	if inst.ID != "x" || inst.Unit != "orchestrator@x" {
		t.Fatalf("start answered %+v, want instance x of orchestrator@", inst)
	}
	h.waitEvent("chain.completed", "orchestrator@x")
	h.waitEvent("unit.exited", "orchestrator@x")
	cs := chainsOf(t, h.sup.opts.Registry, "orchestrator@x")
	if len(cs) != 1 || cs[0].Task != `Reach 100% "coverage"` || cs[0].Config.MaxTurns != 7 || cs[0].Config.Model != "haiku" || cs[0].Config.MaxBudgetUSD != 1.5 {
		t.Fatalf("chains of orchestrator@x: %+v, want one with the values given", cs)
	}

	code, b = h.do("GET", "/api/orchestrator/instances", nil)
	if code != 200 {
		t.Fatalf("instances: %d %s", code, b)
	}
	var il InstanceList
	if err := strictDecode(b, &il); err != nil || il.Template != "orchestrator" {
		t.Fatalf("instances: %s: want exactly an InstanceList of template orchestrator (%v)", b, err)
	}
	list := il.Instances
	if len(list) != 1 || list[0].Chain == nil || list[0].Chain.ID != cs[0].ID || list[0].Chain.Sessions != 1 || list[0].Chain.TotalCostUSD != 0.25 || list[0].Chain.Status != "complete" {
		t.Fatalf("instances: %s, want orchestrator@x with its complete chain", b)
	}
	if _, b := h.do("GET", "/api/orchestrator/instances?template=web", nil); !strings.Contains(string(b), `"instances": []`) || !strings.Contains(string(b), `"template": "web"`) {
		t.Errorf("instances of another template: %s, want none", b)
	}

	// The values are a drop-in in the state directory: shown with their
	// source, and read by the next load (a daemon restart).
	kept := filepath.Join(h.state, "instances", "orchestrator@x.d", "instance.toml")
	code, b = h.do("GET", "/v1/units/orchestrator@x/definition", nil)
	if code != 200 || !strings.Contains(string(b), kept) {
		t.Errorf("definition: %d %s, want values from %s", code, b, kept)
	}
	set, err := unit.LoadWithDropins(h.units, filepath.Join(h.state, "instances"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := set.Instance("orchestrator@x")
	if err != nil || u.Orchestrator.Task != `Reach 100% "coverage"` || u.Orchestrator.MaxTurns != 7 {
		t.Fatalf("after a new load: %+v, %v; want the values given", u, err)
	}

	// Started again without a body, it keeps its values.
	code, b = h.do("POST", "/api/orchestrator/x/start", nil)
	if code != 200 {
		t.Fatalf("start again: %d %s", code, b)
	}
	h.waitEvent("chain.completed", "orchestrator@x")
	h.waitEvent("unit.exited", "orchestrator@x")
	if cs := chainsOf(t, h.sup.opts.Registry, "orchestrator@x"); len(cs) != 2 || cs[1].Task != cs[0].Task {
		t.Fatalf("chains after a start without values: %+v", cs)
	}

	// A slow one is stopped.
	code, b = h.do("POST", "/api/orchestrator/slow/start", strings.NewReader(`{"task":"slow work"}`))
	if code != 200 {
		t.Fatalf("start slow: %d %s", code, b)
	}
	h.waitEvent("session.started", "orchestrator@slow")
	code, b = h.do("POST", "/api/orchestrator/slow/stop", nil)
	if code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	h.waitEvent("unit.stopped", "orchestrator@slow")
	if st := h.status("orchestrator@slow"); st.State != Inactive {
		t.Errorf("after stop: %s/%s, want inactive", st.State, st.Sub)
	}
	if code, b := h.do("POST", "/api/orchestrator/nosuch/stop", nil); code != 404 {
		t.Errorf("stop of an unknown instance: %d %s, want 404", code, b)
	}

	// Bad values are refused before anything is written, naming the field.
	for _, tc := range []struct{ body, field string }{
		{`{"max_turns":500}`, "max_turns"},
		{`{"max_budget_usd":-2}`, "max_budget_usd"}, // -1 is no limit
		{`{"model":"gpt"}`, "model"},
		{`{"project_dir":"relative/dir"}`, "project_dir"},
		{`{"max_turns":"many"}`, "max_turns"},
		{`{"color":"red"}`, "color"},
	} {
		code, b := h.do("POST", "/api/orchestrator/bad/start", strings.NewReader(tc.body))
		if code != 400 {
			t.Errorf("start with %s: %d %s, want 400", tc.body, code, b)
			continue
		}
		if got := decode[fieldError](t, b); got.Field != tc.field {
			t.Errorf("start with %s: field %q (%s), want %q", tc.body, got.Field, b, tc.field)
		}
	}
	if code, b := h.do("POST", "/api/orchestrator/a@b/start", nil); code != 400 {
		t.Errorf("start with an id holding @: %d %s, want 400", code, b)
	}
	if code, b := h.do("POST", "/api/orchestrator/x/start?template=nosuch", strings.NewReader(`{"task":"t"}`)); code != 404 {
		t.Errorf("start from a missing template: %d %s, want 404", code, b)
	}
	if _, err := os.Stat(filepath.Join(h.state, "instances", "orchestrator@bad.d")); !os.IsNotExist(err) {
		t.Errorf("refused values were kept: %v", err)
	}
}

// TestMetricsAndBudgets reads /metrics and /v1/budgets over the control
// socket after a chain spent money.
func TestMetricsAndBudgets(t *testing.T) {
	agent := operatorAgent(t)
	h := newHarness(t, map[string]string{
		"orch.toml": `[service]
restart = "no"
environment = { GORACE = "atexit_sleep_ms=0" }
[orchestrator]
project_dir = "/"
task = "t"
agent = ["` + agent + `"]
`,
		"web.toml": "[service]\nexec = [\"/bin/sleep\", \"60\"]\n",
	}, withRegistry(t))
	h.waitEvent("chain.completed", "orch")
	h.waitEvent("unit.exited", "orch")
	// One more step of the loop publishes the snapshot after the stop.
	h.status("web")

	code, b := h.do("GET", "/v1/budgets", nil)
	if code != 200 {
		t.Fatalf("budgets: %d %s", code, b)
	}
	bu := decode[Budgets](t, b)
	if bu.GlobalUsedUSD != 0.25 || bu.GlobalLimitUSD != h.sup.opts.Settings.Orchestrator.GlobalBudgetUSD || len(bu.Units) != 1 || bu.Units[0].Unit != "orch" || bu.Units[0].UsedUSD != 0.25 {
		t.Errorf("budgets: %s, want 0.25 spent by orch", b)
	}

	// The loop publishes its metrics snapshot at a paced rate: wait for the
	// one that has the stop, within a bound.
	want := []string{
		`opsvc_unit_state{state="active",unit="web"} 1`,
		`opsvc_unit_state{state="inactive",unit="orch"} 1`,
		`opsvc_unit_last_exit_code{unit="orch"} 0`,
		`opsvc_chains{status="complete"} 1`,
		`opsvc_sessions{status="complete"} 1`,
		`opsvc_orchestrator_cost_usd{unit="orch"} 0.25`,
		`opsvc_budget_global_used_usd 0.25`,
		`opsvc_leases_held 0`,
		`opsvc_reconcile_duration_seconds_bucket`,
		`opsvc_unit_start_duration_seconds{unit="web"}`,
		"go_goroutines ",
	}
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, b := h.do("GET", "/metrics", nil)
		if code != 200 {
			t.Fatalf("metrics: %d %s", code, b)
		}
		out = string(b)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(out, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, w := range missing {
				t.Errorf("no %q in /metrics", w)
			}
			break
		}
		time.Sleep(20 * time.Millisecond) // polling: the snapshot is published when due
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", out)
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(out)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, msg)
		}
	}
}

// TestArchivedChains lists the chains moved out of the registry.
func TestArchivedChains(t *testing.T) {
	h := newHarness(t, nil, func(o *Options) {
		reg, err := registry.Open(o.Paths.State, registry.Options{ArchiveCap: 1})
		if err != nil {
			t.Fatal(err)
		}
		o.Registry = reg
	})
	reg := h.sup.opts.Registry
	for _, task := range []string{"old", "new"} {
		err := reg.Update(func(r *registry.Registry) error {
			c := r.CreateChain("u", task, "/", registry.ChainConfig{}, "", h.sup.now())
			return r.SetStatus(c.ID, registry.ChainComplete, h.sup.now())
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	code, b := h.do("GET", "/v1/chains?archived=1", nil)
	var got registry.ChainList
	if err := strictDecode(b, &got); err != nil {
		t.Fatalf("archived chains: %s is not exactly a ChainList: %v", b, err)
	}
	if code != 200 || !got.Archived || len(got.Chains) != 1 || got.Chains[0].Task != "old" {
		t.Fatalf("archived chains: %d %s, want the old chain", code, b)
	}
}

// TestInstanceValuesSurviveRestart starts an instance with values, stops
// the daemon, and starts another on the same directories: the instance is
// listed, and a start without values runs it with the values kept.
func TestInstanceValuesSurviveRestart(t *testing.T) {
	agent := operatorAgent(t)
	files := map[string]string{"orchestrator@.toml": `[service]
restart = "no"
environment = { GORACE = "atexit_sleep_ms=0" }
[orchestrator]
project_dir = "/"
task = "Work on %i"
agent = ["` + agent + `"]
`}
	first := newHarness(t, files, withRegistry(t))
	if code, b := first.do("POST", "/api/orchestrator/kept/start", strings.NewReader(`{"task":"kept across restarts","max_turns":3}`)); code != 200 {
		t.Fatalf("start: %d %s", code, b)
	}
	first.waitEvent("chain.completed", "orchestrator@kept")
	first.waitEvent("unit.exited", "orchestrator@kept")
	first.shutdown()
	// One reaper per test process, as in a real daemon: the first one's
	// would take the second daemon's exits.
	first.runner.Close()

	second := newHarness(t, nil, func(o *Options) {
		o.Paths.Units, o.Paths.State = first.units, first.state
	}, withRegistry(t))
	code, b := second.do("GET", "/api/orchestrator/instances", nil)
	list := decode[struct{ Instances []Instance }](t, b).Instances
	if code != 200 || len(list) != 1 || list[0].ID != "kept" || list[0].State != "inactive" || list[0].Chain == nil || list[0].Chain.Task != "kept across restarts" {
		t.Fatalf("instances after a restart: %d %s, want kept, inactive, with its chain", code, b)
	}
	if code, b := second.do("POST", "/api/orchestrator/kept/start", nil); code != 200 {
		t.Fatalf("start after a restart: %d %s", code, b)
	}
	second.waitEvent("chain.completed", "orchestrator@kept")
	second.waitEvent("unit.exited", "orchestrator@kept")
	cs := chainsOf(t, second.sup.opts.Registry, "orchestrator@kept")
	if len(cs) != 2 || cs[1].Task != "kept across restarts" || cs[1].Config.MaxTurns != 3 {
		t.Fatalf("chains after a restart: %+v, want a second one with the kept values", cs)
	}
}

// TestRuntimeInstancesSurviveRestart: an instance started by name, without a
// file of its own, runs again under the next daemon on the same state
// directory; one stopped by hand does not.
func TestRuntimeInstancesSurviveRestart(t *testing.T) {
	files := map[string]string{"sleeper@.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"}
	first := newHarness(t, files)
	for _, name := range []string{"sleeper@kept", "sleeper@stopped"} {
		if code, b := first.do("POST", "/v1/units/"+name+"/start", nil); code != 200 {
			t.Fatalf("start %s: %d %s", name, code, b)
		}
		first.waitEvent("unit.started", name)
	}
	if code, b := first.do("POST", "/v1/units/sleeper@stopped/stop", nil); code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	first.waitEvent("unit.stopped", "sleeper@stopped")
	first.shutdown()
	first.runner.Close() // one reaper per test process, as in a real daemon

	second := newHarness(t, nil, func(o *Options) {
		o.Paths.Units, o.Paths.State = first.units, first.state
	})
	second.waitEvent("unit.started", "sleeper@kept")
	if st := second.status("sleeper@kept"); st.State != Active {
		t.Errorf("sleeper@kept after a daemon restart: %v, want active", st.State)
	}
	if code, _ := second.do("GET", "/v1/units/sleeper@stopped", nil); code != 404 {
		t.Errorf("sleeper@stopped after a daemon restart: %d, want 404 (not started again)", code)
	}
}

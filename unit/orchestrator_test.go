package unit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOrchestratorTable loads the [orchestrator] keys of agent chains: agent = "claude" is the
// preset, extra_args, git and branch; max_budget_usd takes 0 and -1 and refuses other negatives;
// orchestrators heartbeat every 30 s unless watchdog says otherwise, and opsvc cat says so.
func TestOrchestratorTable(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.toml": "[orchestrator]\ntask = \"t\"\nagent = \"claude\"\nextra_args = [\"--permission-mode\", \"acceptEdits\"]\nmax_budget_usd = 0\ngit = \"worktree\"\n",
		"b.toml": "[service]\nwatchdog = \"5s\"\n[orchestrator]\ntask = \"t\"\nmax_budget_usd = -1\nbranch = \"ai/{chain_id}\"\n",
		"c.toml": "[orchestrator]\ntask = \"t\"\nmax_budget_usd = -0.5\nmodel = \"gpt4\"\nbranch = \"fixed\"\n",
		// Another agent's model is its own business; a near miss of a known one is a typo.
		"d.toml": "[orchestrator]\ntask = \"t\"\nagent = [\"/bin/true\", \"--model\", \"{model}\"]\nmodel = \"gpt4\"\n",
		"e.toml": "[orchestrator]\ntask = \"t\"\nagent = [\"/bin/true\"]\nmodel = \"sonet\"\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := mustUnit(t, s, "a")
	o := a.Orchestrator
	if len(o.Agent) != 1 || o.Agent[0] != AgentPreset || len(o.ExtraArgs) != 2 || o.MaxBudgetUSD == nil || *o.MaxBudgetUSD != 0 || o.Git != "worktree" {
		t.Fatalf("a: %+v", o)
	}
	if a.Service.Watchdog != DefaultOrchestratorWatchdog {
		t.Fatalf("a: watchdog %v, want %v", a.Service.Watchdog, DefaultOrchestratorWatchdog)
	}
	ann, err := s.Annotate("a")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, an := range ann {
		if an.Table == "service" && an.Key == "watchdog" {
			found = an.Value == `"30s"` && an.Source == DefaultSource
			if !found {
				t.Errorf("cat shows watchdog = %s from %s", an.Value, an.Source)
			}
		}
	}
	if !found {
		t.Error("cat does not show the orchestrator's watchdog")
	}
	b := mustUnit(t, s, "b")
	if b.Service.Watchdog != 5*time.Second || *b.Orchestrator.MaxBudgetUSD != -1 || b.Orchestrator.Agent != nil || b.Orchestrator.Branch != "ai/{chain_id}" {
		t.Fatalf("b: %+v %+v", b.Service, b.Orchestrator)
	}
	if d := mustUnit(t, s, "d"); d.Orchestrator.Model != "gpt4" {
		t.Fatalf("d: model %q", d.Orchestrator.Model)
	}
	if ps := s.Problems["e"]; len(ps) != 1 || ps[0].Hint[:len(`did you mean "sonnet"`)] != `did you mean "sonnet"` {
		t.Fatalf("e: problems %v, want the typo of sonnet", ps)
	}
	var msgs []string
	for _, p := range s.Problems["c"] {
		msgs = append(msgs, p.Msg+" ("+p.Hint+")")
	}
	want := []string{"max_budget_usd = -0.5 is out of range", `model "gpt4" is not a known model`, `branch "fixed" has no {chain_id}`}
	for _, w := range want {
		ok := false
		for _, m := range msgs {
			if len(m) >= len(w) && m[:len(w)] == w {
				ok = true
			}
		}
		if !ok {
			t.Errorf("c: no problem %q in %q", w, msgs)
		}
	}
}

// TestValidModelsFromSettings: with opsvc.toml's valid_models given, a unit's
// model is checked against that list (and full claude-… names), in loads
// through a cache as the daemon does and in validate; changing the list
// builds the units again.
func TestValidModelsFromSettings(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"gpt.toml":    "[orchestrator]\ntask = \"t\"\nmodel = \"gpt4\"\n",
		"sonnet.toml": "[orchestrator]\ntask = \"t\"\nmodel = \"sonnet\"\n",
		"full.toml":   "[orchestrator]\ntask = \"t\"\nmodel = \"claude-sonnet-4-5\"\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache()
	c.SetValidModels([]string{"gpt4", "gpt5"})
	s, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	mustUnit(t, s, "gpt")
	mustUnit(t, s, "full")
	if s.Units["sonnet"] != nil || len(s.Problems["sonnet"]) == 0 {
		t.Fatalf("sonnet is not in valid_models [gpt4 gpt5] and should be refused: %v", s.Problems["sonnet"])
	}
	if p := s.Problems["sonnet"][0]; !strings.Contains(p.Hint, "gpt4, gpt5") {
		t.Errorf("hint %q does not name the valid models", p.Hint)
	}
	if probs := ValidateWith(filepath.Join(dir, "gpt.toml"), []string{"gpt4"}); len(probs) != 0 {
		t.Errorf("validate with valid_models [gpt4]: %v", probs)
	}
	if probs := Validate(filepath.Join(dir, "gpt.toml")); len(probs) == 0 {
		t.Error("validate with the default list accepted gpt4")
	}
	c.SetValidModels(nil) // back to the default list: the same files, built again
	s, err = LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	mustUnit(t, s, "sonnet")
	if s.Units["gpt"] != nil {
		t.Error("gpt4 still valid after valid_models went back to the default list")
	}
}

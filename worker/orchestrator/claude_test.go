//go:build linux

package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// fakeClaude returns a PATH whose first directory holds testdata/fake-claude as claude.
func fakeClaude(t *testing.T) (path, exe string) {
	t.Helper()
	exe, err := filepath.Abs("testdata/fake-claude")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "claude")); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + bin + ":" + os.Getenv("PATH"), exe
}

// argvLines returns the argv lines the fake logged, without their "argv: " prefix.
func argvLines(t *testing.T, log string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(readFile(t, log), "\n") {
		if a, ok := strings.CutPrefix(l, "argv: "); ok {
			out = append(out, a)
		}
	}
	return out
}

// TestStreamFixture reads a recorded Claude Code stream-json transcript as a session's output.
func TestStreamFixture(t *testing.T) {
	f, err := os.Open("testdata/claude-stream.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var costs []float64
	st := newStream("sonnet", func(cost float64) { costs = append(costs, cost) })
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var beforeResult chain.Progress
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"type":"result"`) {
			beforeResult, _ = st.snapshot()
		}
		st.line(sc.Bytes())
	}
	if beforeResult.Turns != 5 || beforeResult.LastTool != "Bash" || !beforeResult.CostEstimated ||
		beforeResult.InputTokens != 28+14822+56876 || beforeResult.OutputTokens != 42+88+231+140+96 ||
		beforeResult.SessionID != "9d1c6f7e-3b2a-4c8d-9e0f-1a2b3c4d5e6f" || beforeResult.Model != "claude-sonnet-4-5-20250929" {
		t.Fatalf("progress before the result %+v", beforeResult)
	}
	// Priced from the usage at sonnet's list price: within a few percent of what Claude Code said.
	if c := beforeResult.CostUSD; c < 0.08 || c > 0.086 {
		t.Fatalf("estimated cost %v, want about 0.084", c)
	}
	for i := 1; i < len(costs); i++ {
		if costs[i] < costs[i-1] {
			t.Fatalf("running cost went down: %v", costs)
		}
	}
	end, _ := st.snapshot()
	if end.CostEstimated || !approx(end.CostUSD, 0.08414565) || end.Turns != 5 {
		t.Fatalf("progress after the result %+v, want the result's cost 0.08414565 and 5 turns", end)
	}
	res, ok := FindClaudeResult([]byte(readFile(t, "testdata/claude-stream.jsonl")), false)
	if !ok || res.SessionID != end.SessionID || !approx(res.CostUSD, 0.08414565) || res.Turns != 5 || res.IsError {
		t.Fatalf("result %+v, %v", res, ok)
	}
}

// TestClaudePreset runs a chain with agent unset: Claude Code (the fake) gets the preset's flags,
// the model and turn limit, extra_args, and --resume when the handoff asks for it; the registry
// records what it got.
func TestClaudePreset(t *testing.T) {
	dir := t.TempDir()
	project := filepath.Join(dir, "project")
	os.Mkdir(project, 0o755)
	path, _ := fakeClaude(t)
	log := filepath.Join(dir, "claude.log")
	desk := newDesk()
	cfg := unit.Orchestrator{ProjectDir: project, Task: "Work through ROADMAP.md", Model: "opus", MaxTurns: 7,
		MaxContinuations: 1, ExtraArgs: []string{"--permission-mode", "acceptEdits"}}
	r := startRun(t, "claude@a", filepath.Join(dir, "state"), desk, cfg, path, "FAKE_CLAUDE_LOG="+log, "FAKE_CLAUDE_TURNS=2",
		"FAKE_CLAUDE_HANDOFF=next: write the tests "+ResumeMarker, "ANTHROPIC_API_KEY=sk-secret")
	r.finish(t)

	c := onlyChain(t, desk, "claude@a")
	if c.Status != chain.Exhausted || len(c.Sessions) != 2 {
		t.Fatalf("chain %s with %d sessions, want exhausted after 2", c.Status, len(c.Sessions))
	}
	s0, s1 := c.Sessions[0], c.Sessions[1]
	if s0.SessionID == "" || s1.SessionID != s0.SessionID {
		t.Fatalf("session ids %q, %q: want the second to continue the first", s0.SessionID, s1.SessionID)
	}
	want := []string{
		"-p|--output-format|stream-json|--verbose|--model|opus|--max-turns|7|--permission-mode|acceptEdits",
		"-p|--output-format|stream-json|--verbose|--model|opus|--max-turns|7|--resume|" + s0.SessionID + "|--permission-mode|acceptEdits",
	}
	if got := argvLines(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("claude got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, s := range c.Sessions {
		if s.Status != chain.SessionComplete || s.Model != "opus" || s.MaxTurns != 7 || s.Turns != 2 || !approx(s.CostUSD, 0.18) ||
			s.InputTokens != 2000 || s.OutputTokens != 2000 {
			t.Errorf("session %d %+v; want complete, opus, 7 max turns, 2 turns, $0.18", i, s)
		}
		if !strings.Contains(s.Command, "/claude -p --output-format stream-json --verbose --model opus --max-turns 7") ||
			strings.Contains(s.Command, "sk-secret") {
			t.Errorf("session %d command %q", i, s.Command)
		}
	}
	if prompt := readFile(t, log); !strings.Contains(prompt, "prompt: Work through ROADMAP.md\n") {
		t.Errorf("claude's prompt lines:\n%s", prompt)
	}
}

// TestCustomAgentPlaceholders runs a custom agent argv whose {model} and {max_turns} are
// replaced; the registry records them as passed.
func TestCustomAgentPlaceholders(t *testing.T) {
	dir := t.TempDir()
	_, exe := fakeClaude(t)
	log := filepath.Join(dir, "claude.log")
	desk := newDesk()
	cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", Model: "haiku", MaxTurns: 3, MaxContinuations: 1,
		Agent: []string{exe, "-p", "--verbose", "--output-format", "stream-json", "--model", "{model}", "--max-turns", "{max_turns}"}}
	r := startRun(t, "custom", filepath.Join(dir, "state"), desk, cfg, "FAKE_CLAUDE_LOG="+log, "FAKE_CLAUDE_TURNS=1", "FAKE_CLAUDE_MODE=done")
	r.finish(t)
	c := onlyChain(t, desk, "custom")
	if got := argvLines(t, log); len(got) != 1 || got[0] != "-p|--verbose|--output-format|stream-json|--model|haiku|--max-turns|3" {
		t.Fatalf("agent argv %q", got)
	}
	if s := c.Sessions[0]; c.Status != chain.Complete || s.Model != "haiku" || s.MaxTurns != 3 || !approx(s.CostUSD, 0.006) {
		t.Fatalf("chain %s, session %+v", c.Status, s)
	}
}

// TestProgress watches a slow session: session.progress events arrive while it runs, with the
// turns growing, the last tool, tokens and a running cost, and a last one with the result's cost.
func TestProgress(t *testing.T) {
	dir := t.TempDir()
	path, _ := fakeClaude(t)
	desk := newDesk()
	cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", MaxContinuations: 1, MaxTurns: 30}
	r := startRun(t, "prog", filepath.Join(dir, "state"), desk, cfg, path, "FAKE_CLAUDE_TURNS=5", "FAKE_CLAUDE_DELAY=0.3", "FAKE_CLAUDE_MODE=done")
	r.d.event(t, "session.started")
	var got []chain.Progress
	for {
		m := r.d.next(t, "progress", func(m worker.Message) bool {
			return m.Type == worker.TypeEvent && (m.Name == chain.EventProgress || m.Name == "session.finished")
		})
		if m.Name == "session.finished" {
			break
		}
		var p chain.Progress
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	r.finish(t)
	if len(got) < 3 {
		t.Fatalf("%d progress events, want one per turn or so: %+v", len(got), got)
	}
	mid := got[len(got)/2]
	if mid.Turns < 1 || mid.Turns > 4 || mid.LastTool != "Read" || !mid.CostEstimated || mid.CostUSD <= 0 || mid.InputTokens == 0 || mid.ChainID == "" {
		t.Errorf("progress while running %+v", mid)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Turns < got[i-1].Turns || got[i].CostUSD < got[i-1].CostUSD {
			t.Errorf("progress went back: %+v then %+v", got[i-1], got[i])
		}
	}
	last := got[len(got)-1]
	if !last.Done || last.CostEstimated || last.Turns != 5 || !approx(last.CostUSD, 0.09) {
		t.Errorf("last progress %+v, want done with 5 turns and the result's $0.09", last)
	}
}

// TestBudgetStopsSession gives sessions that would spend $0.018 a turn for 30 turns a chain budget,
// then a daily budget, then no budget at all: the session is interrupted within a turn of the
// limit, recorded interrupted for the budget, and the chain ends budget_exceeded.
func TestBudgetStopsSession(t *testing.T) {
	const perTurn = 0.018
	for _, tc := range []struct {
		name   string
		budget *float64
		daily  *float64
		limit  float64
		which  string
	}{
		{name: "chain", budget: usd(0.05), limit: 0.05, which: "max_budget_usd"},
		{name: "daily", budget: usd(-1), daily: usd(0.03), limit: 0.03, which: "daily budgets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, _ := fakeClaude(t)
			desk := newDesk()
			desk.dailyLeft = tc.daily
			log := filepath.Join(dir, "claude.log")
			cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", MaxTurns: 30, MaxBudgetUSD: tc.budget}
			r := startRun(t, "spend", filepath.Join(dir, "state"), desk, cfg, path, "FAKE_CLAUDE_TURNS=30", "FAKE_CLAUDE_DELAY=0.05", "FAKE_CLAUDE_LOG="+log)
			msgs := r.finish(t)
			pgid := 0
			for _, l := range strings.Split(readFile(t, log), "\n") {
				if v, ok := strings.CutPrefix(l, "pgid: "); ok {
					pgid, _ = strconv.Atoi(v)
				}
			}
			if pgid <= 1 {
				t.Fatalf("no pgid in the fake's log:\n%s", readFile(t, log))
			}
			waitGroupGone(t, pgid) // the session's group was interrupted, nothing of it left
			c := onlyChain(t, desk, "spend")
			if c.Status != chain.BudgetExceeded || len(c.Sessions) != 1 {
				t.Fatalf("chain %s with %d sessions, want budget_exceeded after 1", c.Status, len(c.Sessions))
			}
			s := c.Sessions[0]
			if s.Status != chain.SessionInterrupted || s.Reason != chain.ReasonBudget || !strings.Contains(s.Error, tc.which) {
				t.Fatalf("session %+v, want interrupted for the %s", s, tc.which)
			}
			if s.CostUSD <= tc.limit || s.CostUSD > tc.limit+perTurn+1e-9 || s.Turns >= 30 {
				t.Fatalf("session spent $%v in %d turns; want past $%v by at most one turn ($%v)", s.CostUSD, s.Turns, tc.limit, perTurn)
			}
			if _, _, active, _ := desk.counts(); active != 0 || !approx(desk.costs, s.CostUSD) {
				t.Fatalf("lease released with $%v, want the session's $%v", desk.costs, s.CostUSD)
			}
			if names := eventNames(msgs); names[len(names)-1] != "chain.completed budget_exceeded" {
				t.Fatalf("events %q", names)
			}
		})
	}
	t.Run("zero", func(t *testing.T) {
		dir := t.TempDir()
		path, _ := fakeClaude(t)
		log := filepath.Join(dir, "claude.log")
		desk := newDesk()
		cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", MaxBudgetUSD: usd(0)}
		r := startRun(t, "zero", filepath.Join(dir, "state"), desk, cfg, path, "FAKE_CLAUDE_LOG="+log)
		r.finish(t)
		c := onlyChain(t, desk, "zero")
		if c.Status != chain.BudgetExceeded || len(c.Sessions) != 0 || c.Config.MaxBudgetUSD != 0 {
			t.Fatalf("chain %+v, want budget_exceeded without a session", c)
		}
		if _, err := os.Stat(log); !os.IsNotExist(err) {
			t.Fatalf("claude ran: %v", err)
		}
	})
}

// TestSettingsWakeLeaseWaiter keeps a worker waiting for a lease the daemon refuses for an hour;
// the settings.changed command makes it ask again at once, and its session runs under the limits
// the new lease carries.
func TestSettingsWakeLeaseWaiter(t *testing.T) {
	dir := t.TempDir()
	path, _ := fakeClaude(t)
	log := filepath.Join(dir, "claude.log")
	desk := newDesk()
	desk.closed = true
	cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", MaxContinuations: 1, Model: "sonnet", MaxTurns: 10}
	r := startRun(t, "wake", filepath.Join(dir, "state"), desk, cfg, path, "FAKE_CLAUDE_LOG="+log, "FAKE_CLAUDE_TURNS=1", "FAKE_CLAUDE_MODE=done")
	r.d.next(t, "waiting status", func(m worker.Message) bool {
		return m.Type == worker.TypeStatus && strings.HasPrefix(m.Text, "waiting for a session lease: global_budget_usd")
	})
	desk.mu.Lock()
	desk.closed = false
	desk.limits = &chain.Limits{Model: "haiku", MaxTurns: 4, MaxBudgetUSD: -1}
	desk.mu.Unlock()
	if _, err := r.d.ch.Command(context.Background(), CommandSettingsChanged, nil); err != nil {
		t.Fatal(err)
	}
	r.finish(t) // a refusal said "in an hour": only the command can have woken it
	c := onlyChain(t, desk, "wake")
	if got := argvLines(t, log); len(got) != 1 || !strings.Contains(got[0], "--model|haiku|--max-turns|4") {
		t.Fatalf("claude argv %q, want the new settings' model and turns", got)
	}
	if c.Status != chain.Complete || c.Sessions[0].Model != "haiku" {
		t.Fatalf("chain %+v", c)
	}
}

// TestStreamLongLines reads stream-json lines longer than the lines passed on to the worker's
// stdout (an assistant message writing a large file), written in pieces; a line over
// maxStreamLine is skipped, and the next one read.
func TestStreamLongLines(t *testing.T) {
	st := newStream("sonnet", nil)
	sink := &outputSink{lines: lineWriter{to: io.Discard}, feed: &lineFeed{take: st.line}}
	big := strings.Repeat("x", 3*maxLine)
	msg := func(id, text string) string {
		return `{"type":"assistant","message":{"id":"` + id + `","content":[{"type":"tool_use","name":"Write","input":{"content":"` + text + `"}}],"usage":{"input_tokens":10,"output_tokens":1000}}}` + "\n"
	}
	out := msg("m1", big) + msg("m2", strings.Repeat("y", maxStreamLine)) + msg("m3", "small")
	for len(out) > 0 {
		n := min(len(out), 4096)
		sink.Write([]byte(out[:n]))
		out = out[n:]
	}
	sink.flush()
	p, _ := st.snapshot()
	if p.Turns != 2 || p.OutputTokens != 2000 || p.LastTool != "Write" {
		t.Fatalf("progress %+v, want the long line and the small one counted, the one over the limit skipped", p)
	}
}

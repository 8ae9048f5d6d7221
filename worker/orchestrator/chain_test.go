//go:build linux

package orchestrator

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// TestChainCompletes runs a three-session chain that ends when the third session's result file
// says done, and checks the registry, the events, the leases, the prompts with the handoff
// carried from each session to the next, and the sessions' environment.
func TestChainCompletes(t *testing.T) {
	dir := t.TempDir()
	project := filepath.Join(dir, "project")
	os.Mkdir(project, 0o755)
	agent := script(t, dir, "agent.sh", `
i=$OPSVC_SESSION_INDEX
cat > "$OUT/stdin.$i"
printf '%s' "$OPSVC_HANDOFF_IN" > "$OUT/in.$i"
env > "$OUT/env.$i"
pwd > "$OUT/pwd.$i"
echo "handoff from $i" > "$OPSVC_HANDOFF_OUT"
echo "agent says hello $i"
echo "agent warns $i" >&2
done=false; [ "$i" = 2 ] && done=true
printf '{"session_id":"s%s","turns":2,"cost_usd":0.01,"input_tokens":5,"output_tokens":7,"done":%s}\n' "$i" "$done" > "$OPSVC_RESULT"
`)
	desk := newDesk()
	state := filepath.Join(dir, "state")
	cfg := unit.Orchestrator{ProjectDir: project, Task: "Build the thing", Agent: []string{agent, "-p"}, Model: "opus", MaxTurns: 7}
	r := startRun(t, "agent@a", state, desk, cfg,
		"OUT="+dir, "OPSVC_IPC_FD=3", "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json",
		"OPSVC_ORCHESTRATOR={}", "OPSVC_HEARTBEAT_USEC=1000", "NOTIFY_SOCKET=/x", "OPSVC_CHAIN_ID=stale", "KEEP=me")
	msgs := r.finish(t)

	c := onlyChain(t, r.desk, "agent@a")
	if c.Status != chain.Complete || len(c.Sessions) != 3 || c.TotalTurns != 6 || !approx(c.TotalCostUSD, 0.03) ||
		c.ConsecutiveErrors != 0 || c.RestartedFrom != "" || c.ProjectDir != project || c.Task != "Build the thing" {
		t.Fatalf("chain %+v, want complete with 3 sessions, 6 turns, $0.03", c)
	}
	if want := (chain.Config{Model: "opus", MaxTurns: 7, MaxContinuations: 5, MaxBudgetUSD: 5}); c.Config != want {
		t.Fatalf("chain config %+v, want %+v", c.Config, want)
	}
	handoffs := filepath.Join(state, HandoffDir, c.ID)
	for i, s := range c.Sessions {
		want := chain.Session{Index: i, SessionID: "s" + string(rune('0'+i)), Status: chain.SessionComplete, Turns: 2, CostUSD: 0.01,
			InputTokens: 5, OutputTokens: 7, HandoffComplete: true, HandoffFile: filepath.Join(handoffs, string(rune('0'+i))+".md")}
		got := s
		if got.Command != agent+" -p" {
			t.Errorf("session %d command %q, want %q", i, got.Command, agent+" -p")
		}
		got.StartedAt, got.EndedAt, got.DurationMS, got.Command = want.StartedAt, want.EndedAt, 0, ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("session %d (-want +got):\n%s", i, diff)
		}
		if s.StartedAt.IsZero() || s.EndedAt.Before(s.StartedAt) || s.DurationMS < 0 {
			t.Errorf("session %d times %v..%v (%d ms)", i, s.StartedAt, s.EndedAt, s.DurationMS)
		}
	}
	wantEvents := []string{
		"chain.created",
		"session.started 0", "session.finished 0 complete",
		"session.started 1", "session.finished 1 complete",
		"session.started 2", "session.finished 2 complete",
		"chain.completed complete",
	}
	if diff := cmp.Diff(wantEvents, eventNames(msgs)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if msgs[0].Type != worker.TypeEvent || msgs[0].Name != "chain.created" || msgs[1].Type != worker.TypeReady {
		t.Fatalf("first messages %+v, %+v; want chain.created, then ready", msgs[0], msgs[1])
	}
	if !slices.ContainsFunc(msgs, func(m worker.Message) bool {
		return m.Type == worker.TypeStatus && m.Text == "chain "+c.ID+": starting"
	}) {
		t.Fatal("no status \"chain ID: starting\"")
	}
	if acq, rel, active, _ := desk.counts(); acq != 3 || rel != 3 || active != 0 || !approx(desk.costs, 0.03) {
		t.Fatalf("leases: %d acquired, %d released (cost %v), %d active; want 3, 3 ($0.03), 0", acq, rel, desk.costs, active)
	}

	// The handoff of session i is in the prompt and OPSVC_HANDOFF_IN of session i+1.
	for i, want := range []string{
		"Build the thing\n",
		"Build the thing\n\nPrevious session handoff:\nhandoff from 0\n",
		"Build the thing\n\nPrevious session handoff:\nhandoff from 1\n",
	} {
		if got := readFile(t, filepath.Join(dir, "stdin."+string(rune('0'+i)))); got != want {
			t.Errorf("session %d prompt %q, want %q", i, got, want)
		}
		wantIn := ""
		if i > 0 {
			wantIn = filepath.Join(handoffs, string(rune('0'+i-1))+".md")
		}
		if got := readFile(t, filepath.Join(dir, "in."+string(rune('0'+i)))); got != wantIn {
			t.Errorf("session %d OPSVC_HANDOFF_IN %q, want %q", i, got, wantIn)
		}
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "pwd.1"))); got != project {
		t.Errorf("session ran in %q, want project_dir %q", got, project)
	}

	env := strings.Split(readFile(t, filepath.Join(dir, "env.1")), "\n")
	for _, kv := range []string{
		"OPSVC_CHAIN_ID=" + c.ID, "OPSVC_SESSION_INDEX=1", "OPSVC_MODEL=opus", "OPSVC_MAX_TURNS=7",
		"OPSVC_HANDOFF_IN=" + filepath.Join(handoffs, "0.md"), "OPSVC_HANDOFF_OUT=" + filepath.Join(handoffs, "1.md"),
		"OPSVC_RESULT=" + filepath.Join(handoffs, "1.result.json"), "KEEP=me",
	} {
		if !slices.Contains(env, kv) {
			t.Errorf("session environment lacks %s", kv)
		}
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(droppedEnv, k) {
			t.Errorf("session environment has %s", kv)
		}
	}

	// The agent's output lines reached the worker's stdout and stderr.
	if out := r.stdout.String(); !strings.Contains(out, "agent says hello 1\n") {
		t.Errorf("worker stdout %q lacks the agent's line", out)
	}
	if out := r.stderr.String(); !strings.Contains(out, "agent warns 2\n") {
		t.Errorf("worker stderr %q lacks the agent's line", out)
	}
}

// TestClaudeResults runs chains whose agent prints Claude Code result objects on stdout.
func TestClaudeResults(t *testing.T) {
	const success = `{"type":"result","subtype":"success","is_error":false,"num_turns":3,"total_cost_usd":0.01,"session_id":"s1","duration_ms":5,"usage":{"input_tokens":10,"output_tokens":20},"result":"ok [opsvc:done]"}`
	for _, tc := range []struct {
		name   string
		stdout string // printed by the agent with printf '%s'
		cfg    unit.Orchestrator
		chain  chain.Status
		want   chain.Session // of the first session; times, handoff and index aside
		n      int           // sessions
	}{
		{
			name: "json", stdout: success + "\n", chain: chain.Complete, n: 1,
			want: chain.Session{SessionID: "s1", Status: chain.SessionComplete, Turns: 3, CostUSD: 0.01, InputTokens: 10, OutputTokens: 20, DurationMS: 5},
		},
		{
			name: "pretty json", stdout: "{\n  \"type\": \"result\",\n  \"num_turns\": 4,\n  \"done\": true\n}\n", chain: chain.Complete, n: 1,
			want: chain.Session{Status: chain.SessionComplete, Turns: 4},
		},
		{
			name: "stream-json",
			stdout: `{"type":"system","subtype":"init","session_id":"s1"}` + "\n" +
				`{"type":"assistant","message":{"content":[{"type":"text","text":"\"result\" [opsvc:done]"}]}}` + "\n" +
				`{"type":"result","subtype":"success","is_error":false,"num_turns":9,"total_cost_usd":0.5,"session_id":"s9","result":"done [opsvc:done]"}` + "\n" +
				`{"type":"trailer","result":"not this"}` + "\n",
			chain: chain.Complete, n: 1,
			want: chain.Session{SessionID: "s9", Status: chain.SessionComplete, Turns: 9, CostUSD: 0.5},
		},
		{
			name:   "error_max_turns",
			stdout: `{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":30,"total_cost_usd":0.02,"session_id":"m"}` + "\n",
			cfg:    unit.Orchestrator{MaxContinuations: 1}, chain: chain.Exhausted, n: 2,
			want: chain.Session{SessionID: "m", Status: chain.SessionComplete, Turns: 30, CostUSD: 0.02, HitMaxTurns: true},
		},
		{
			name:   "error_during_execution",
			stdout: `{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":1,"total_cost_usd":0.03,"result":"tool crashed"}` + "\n",
			cfg:    unit.Orchestrator{MaxConsecutiveErrors: 2}, chain: chain.Failed, n: 2,
			want: chain.Session{Status: chain.SessionError, Turns: 1, CostUSD: 0.03, Error: "agent result error_during_execution: tool crashed"},
		},
		{
			name: "no fields", stdout: `{"type":"result"}` + "\n",
			cfg: unit.Orchestrator{MaxContinuations: 1}, chain: chain.Exhausted, n: 2,
			want: chain.Session{Status: chain.SessionComplete},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "stdout")
			os.WriteFile(out, []byte(tc.stdout), 0o644)
			cfg := tc.cfg
			cfg.ProjectDir, cfg.Task = dir, "t"
			cfg.Agent = []string{script(t, dir, "agent.sh", `cat >/dev/null; echo "starting" >&2; cat "$1"`), out}
			r := startRun(t, "claude", filepath.Join(dir, "state"), newDesk(), cfg)
			r.finish(t)
			c := onlyChain(t, r.desk, "claude")
			if c.Status != tc.chain || len(c.Sessions) != tc.n {
				t.Fatalf("chain %s with %d sessions, want %s with %d", c.Status, len(c.Sessions), tc.chain, tc.n)
			}
			got := c.Sessions[0]
			got.StartedAt, got.EndedAt, got.HandoffFile = tc.want.StartedAt, tc.want.EndedAt, ""
			if !strings.HasSuffix(got.Command, "/agent.sh "+filepath.Join(dir, "stdout")) && !strings.Contains(got.Command, "/agent.sh") {
				t.Errorf("session command %q", got.Command)
			}
			got.Command = ""
			if tc.want.DurationMS == 0 {
				got.DurationMS = 0
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("session (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChainLimits: a chain ends exhausted, over budget, or failed by the circuit breaker.
func TestChainLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		cfg    unit.Orchestrator
		status chain.Status
		n      int
		event  string
		errMsg string
	}{
		{
			name: "exhausted", body: `printf '{"turns":1,"cost_usd":0.1}' > "$OPSVC_RESULT"`,
			cfg: unit.Orchestrator{MaxContinuations: 2}, status: chain.Exhausted, n: 3, event: "chain.completed",
		},
		{
			name: "budget", body: `printf '{"turns":1,"cost_usd":0.6}' > "$OPSVC_RESULT"`,
			cfg: unit.Orchestrator{MaxBudgetUSD: usd(1)}, status: chain.BudgetExceeded, n: 2, event: "chain.completed",
		},
		{
			name: "done beats budget", body: `printf '{"turns":1,"cost_usd":9,"done":true}' > "$OPSVC_RESULT"`,
			cfg: unit.Orchestrator{MaxBudgetUSD: usd(1)}, status: chain.Complete, n: 1, event: "chain.completed",
		},
		{
			name: "circuit breaker", body: `echo "something broke" >&2; echo "boom" >&2; exit 1`,
			status: chain.Failed, n: 3, event: "chain.failed",
			errMsg: "agent exited with status 1 and gave no result: boom",
		},
		{
			name: "an error result is an error",
			body: `printf '{"turns":1,"cost_usd":0.01,"error":"rate limited"}' > "$OPSVC_RESULT"`,
			cfg:  unit.Orchestrator{MaxConsecutiveErrors: 2}, status: chain.Failed, n: 2, event: "chain.failed",
			errMsg: "rate limited",
		},
		{
			name: "a complete session resets the breaker",
			body: `if [ "$OPSVC_SESSION_INDEX" = 1 ]; then echo '{}' > "$OPSVC_RESULT"; else exit 2; fi`,
			cfg:  unit.Orchestrator{MaxConsecutiveErrors: 2}, status: chain.Failed, n: 4, event: "chain.failed",
			errMsg: "agent exited with status 2 and gave no result (write a JSON result to $OPSVC_RESULT",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tc.cfg
			cfg.ProjectDir, cfg.Task = dir, "t"
			cfg.Agent = []string{script(t, dir, "agent.sh", "cat >/dev/null\n"+tc.body+"\n")}
			r := startRun(t, "lim", filepath.Join(dir, "state"), newDesk(), cfg)
			msgs := r.finish(t)
			c := onlyChain(t, r.desk, "lim")
			if c.Status != tc.status || len(c.Sessions) != tc.n {
				t.Fatalf("chain %s with %d sessions, want %s with %d", c.Status, len(c.Sessions), tc.status, tc.n)
			}
			names := eventNames(msgs)
			if last := names[len(names)-1]; last != tc.event+" "+string(tc.status) {
				t.Fatalf("last event %q, want %q", last, tc.event+" "+string(tc.status))
			}
			if tc.errMsg != "" {
				last := c.Sessions[len(c.Sessions)-1]
				if last.Status != chain.SessionError || !strings.HasPrefix(last.Error, tc.errMsg) {
					t.Fatalf("last session %s %q, want error starting %q", last.Status, last.Error, tc.errMsg)
				}
			}
		})
	}
}

// TestSessionFaults: each bad input is an error session with a clear message, and the worker
// goes on to end the chain.
func TestSessionFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) (agent []string, project string)
		want  string
	}{
		{
			name: "agent not in PATH",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{"opsvc-no-such-agent"}, dir
			},
			want: `agent "opsvc-no-such-agent": not found in PATH`,
		},
		{
			name: "agent path missing",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{filepath.Join(dir, "gone.sh")}, dir
			},
			want: "agent " + "DIR/gone.sh: file does not exist",
		},
		{
			name: "agent not executable",
			setup: func(t *testing.T, dir string) ([]string, string) {
				p := filepath.Join(dir, "plain.sh")
				os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644)
				return []string{p}, dir
			},
			want: "agent DIR/plain.sh: is not executable (chmod +x it)",
		},
		{
			name: "agent is a directory",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{dir}, dir
			},
			want: "agent DIR: is a directory",
		},
		{
			name: "no agent",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return nil, dir
			},
			want: `agent "claude" (Claude Code, the default agent) is not in PATH "DIR"`,
		},
		{
			name: "project_dir missing",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{script(t, dir, "a.sh", "exit 0\n")}, filepath.Join(dir, "nope")
			},
			want: "project_dir DIR/nope does not exist (create it",
		},
		{
			name: "project_dir is a file",
			setup: func(t *testing.T, dir string) ([]string, string) {
				a := script(t, dir, "a.sh", "exit 0\n")
				return []string{a}, a
			},
			want: "project_dir DIR/a.sh is not a directory",
		},
		{
			name: "not JSON",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{script(t, dir, "a.sh", "cat >/dev/null; echo '{not json'; echo 'Error: no API key' >&2; exit 3\n")}, dir
			},
			want: "agent exited with status 3 and gave no result: Error: no API key",
		},
		{
			name: "bad result file",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{script(t, dir, "a.sh", `echo '[1,2]' > "$OPSVC_RESULT"`+"\n")}, dir
			},
			want: "agent exited with status 0 and gave no result (write a JSON result to $OPSVC_RESULT, or print a Claude Code result object on stdout); result file ",
		},
		{
			name: "killed by a signal",
			setup: func(t *testing.T, dir string) ([]string, string) {
				return []string{script(t, dir, "a.sh", "kill -9 $$\n")}, dir
			},
			want: "agent exited with status 137 (killed by signal 9, killed) and gave no result",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			agent, project := tc.setup(t, dir)
			cfg := unit.Orchestrator{ProjectDir: project, Task: "t", Agent: agent, MaxConsecutiveErrors: 1}
			var env []string
			if agent == nil {
				env = []string{"PATH=" + dir} // no claude there
			}
			r := startRun(t, "fault", filepath.Join(t.TempDir(), "state"), newDesk(), cfg, env...)
			r.finish(t)
			c := onlyChain(t, r.desk, "fault")
			if c.Status != chain.Failed || len(c.Sessions) != 1 {
				t.Fatalf("chain %s with %d sessions, want failed with 1", c.Status, len(c.Sessions))
			}
			s := c.Sessions[0]
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if s.Status != chain.SessionError || !strings.HasPrefix(s.Error, want) {
				t.Fatalf("session %s %q, want an error starting %q", s.Status, s.Error, want)
			}
		})
	}
}

// TestHugeStdout: megabytes of output, in long lines and in one endless line, keep only a bounded
// tail, reach the worker's stdout whole, and the result at the end is still found.
func TestHugeStdout(t *testing.T) {
	dir := t.TempDir()
	agent := script(t, dir, "agent.sh", `cat >/dev/null
i=0
while [ $i -lt 24 ]; do head -c 131072 /dev/zero | tr '\0' 'x'; echo; i=$((i+1)); done
head -c 3000000 /dev/zero | tr '\0' 'y'
echo
echo '{"type":"result","num_turns":2,"result":"[opsvc:done]"}'
`)
	cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}}
	r := startRun(t, "huge", filepath.Join(dir, "state"), newDesk(), cfg)
	r.finish(t)
	c := onlyChain(t, r.desk, "huge")
	if c.Status != chain.Complete || c.Sessions[0].Turns != 2 {
		t.Fatalf("chain %s, session %+v; want complete with 2 turns", c.Status, c.Sessions[0])
	}
	const printed = 24*(131072+1) + 3000000 + 1
	if got := r.stdout.total(); got < printed {
		t.Fatalf("worker stdout got %d bytes, want all %d", got, printed)
	}
}

// TestNoDaemon: a worker started outside opsvc runs its chain without leases, unrecorded: the
// chain goes on until a session says done.
func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	var notice strings.Builder
	conn, err := worker.ConnectWith(worker.Options{Stderr: &notice}) // OPSVC_IPC_FD is unset in tests
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	agent := script(t, dir, "agent.sh", `cat >/dev/null; echo "$OPSVC_CHAIN_ID" >> "`+dir+`/ran"
done=false; [ "$OPSVC_SESSION_INDEX" = 1 ] && done=true
echo "{\"done\":$done}" > "$OPSVC_RESULT"`+"\n")
	err = Run(context.Background(), Options{
		Conn: conn, Unit: "solo", StateDir: filepath.Join(dir, "state"), Env: []string{"PATH=/usr/bin:/bin", noRaceExitSleep},
		Config: unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}},
		Stdout: newLineSink(), Stderr: newLineSink(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ran := strings.Fields(readFile(t, filepath.Join(dir, "ran")))
	if len(ran) != 2 || ran[0] != ran[1] || !strings.HasPrefix(ran[0], "c-") {
		t.Fatalf("sessions ran in chains %q, want two sessions of one chain", ran)
	}
	if !strings.Contains(notice.String(), "not started by opsvc") {
		t.Fatalf("no not-supervised notice: %q", notice.String())
	}
}

// blockingAgent prints "running pgid=N" and waits, with a child in its group, until its FIFO
// gets a line; then it writes a result whose done is the line. With trapINT it ignores SIGINT.
func blockingAgent(t *testing.T, dir string, ignoreINT bool) (agent, fifo string) {
	t.Helper()
	fifo = filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	trap := `trap 'printf "{\"turns\":1,\"cost_usd\":0.5}" > "$OPSVC_RESULT"; exit 130' INT`
	if ignoreINT {
		trap = `trap '' INT`
	}
	agent = script(t, dir, "agent.sh", trap+`
cat >/dev/null
sleep 1000 &
echo "running pgid=$(cut -d' ' -f5 /proc/$$/stat)"
read done < "`+fifo+`"
printf '{"turns":1,"cost_usd":0.25,"done":%s}' "$done" > "$OPSVC_RESULT"
`)
	return agent, fifo
}

// TestShutdownInterrupts: a shutdown without drain interrupts the running session: SIGINT to its
// group (the agent's trap records a result), or SIGKILL after the grace when it ignores SIGINT.
// The session and the chain are recorded interrupted, and the session's group is gone.
func TestShutdownInterrupts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ignoreINT bool
		stop      func(r *inRun) error
		reason    string
		cost      float64
	}{
		{"SIGINT", false, func(r *inRun) error {
			return r.d.ch.Send(worker.Message{Type: worker.TypeShutdown, DeadlineMS: 20000})
		}, "the daemon asked the worker to stop", 0.5},
		{"SIGKILL after the grace", true, func(r *inRun) error {
			return r.d.ch.Send(worker.Message{Type: worker.TypeShutdown, DeadlineMS: 300})
		}, "the daemon asked the worker to stop", 0},
		{"context", false, func(r *inRun) error { r.cancel(); return nil }, "the worker was cancelled (context canceled)", 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			agent, _ := blockingAgent(t, dir, tc.ignoreINT)
			desk := newDesk()
			r := startRun(t, "stop", filepath.Join(dir, "state"), desk, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
			pgid := pgidOf(t, r.stdout.waitLine(t, "running pgid="))
			if err := tc.stop(r); err != nil {
				t.Fatal(err)
			}
			msgs := r.finish(t)
			waitGroupGone(t, pgid)
			c := onlyChain(t, r.desk, "stop")
			if c.Status != chain.Interrupted || len(c.Sessions) != 1 {
				t.Fatalf("chain %s with %d sessions, want interrupted with 1", c.Status, len(c.Sessions))
			}
			s := c.Sessions[0]
			if s.Status != chain.SessionInterrupted || s.Error != "interrupted: "+tc.reason || !approx(s.CostUSD, tc.cost) {
				t.Fatalf("session %s %q cost %v, want interrupted %q cost %v", s.Status, s.Error, s.CostUSD, tc.reason, tc.cost)
			}
			want := []string{"chain.created", "session.started 0", "session.finished 0 interrupted", "chain.interrupted interrupted"}
			if diff := cmp.Diff(want, eventNames(msgs)); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
			if acq, rel, active, _ := desk.counts(); tc.name != "context" && (acq != 1 || rel != 1 || active != 0) {
				t.Fatalf("leases: %d acquired, %d released, %d active; want 1, 1, 0", acq, rel, active)
			}
		})
	}
}

// TestEOFInterrupts: when the daemon goes away (EOF on the channel) the running session is
// interrupted, its group killed, and Run returns nil: nothing can be recorded any more, and the
// chain stays as last recorded (running), for a resume to find. The session it could not record
// is in the log.
func TestEOFInterrupts(t *testing.T) {
	dir := t.TempDir()
	agent, _ := blockingAgent(t, dir, false)
	r := startRun(t, "eof", filepath.Join(dir, "state"), newDesk(), unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
	pgid := pgidOf(t, r.stdout.waitLine(t, "running pgid="))
	r.d.ch.Close()
	if err := r.wait(t); err != nil {
		t.Fatal(err)
	}
	waitGroupGone(t, pgid)
	c := onlyChain(t, r.desk, "eof")
	if c.Status != chain.Running || len(c.Sessions) != 0 {
		t.Fatalf("chain %+v, want it left running with no session recorded", c)
	}
	logged := r.stderr.String()
	for _, want := range []string{
		"record session 0 of chain " + c.ID + ": the daemon is gone",
		`the session was: {"index":0,`, `"status":"interrupted"`,
		"the daemon is gone: chain " + c.ID + " stays as last recorded",
	} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
}

// TestDrain: a shutdown with drain lets the running session finish and records it; the chain is
// then interrupted, unless that session ended it.
func TestDrain(t *testing.T) {
	for _, tc := range []struct {
		done  string
		chain chain.Status
		event string
	}{
		{"false", chain.Interrupted, "chain.interrupted interrupted"},
		{"true", chain.Complete, "chain.completed complete"},
	} {
		t.Run("done="+tc.done, func(t *testing.T) {
			dir := t.TempDir()
			agent, fifo := blockingAgent(t, dir, false)
			desk := newDesk()
			r := startRun(t, "drain", filepath.Join(dir, "state"), desk, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
			r.stdout.waitLine(t, "running pgid=")
			if err := r.d.ch.Send(worker.Message{Type: worker.TypeShutdown, DeadlineMS: 20000, Drain: true}); err != nil {
				t.Fatal(err)
			}
			r.d.next(t, "the drain status", func(m worker.Message) bool {
				return m.Type == worker.TypeStatus && strings.Contains(m.Text, "drain")
			})
			if err := os.WriteFile(fifo, []byte(tc.done+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			msgs := r.finish(t)
			c := onlyChain(t, r.desk, "drain")
			if c.Status != tc.chain || len(c.Sessions) != 1 || c.Sessions[0].Status != chain.SessionComplete || !approx(c.TotalCostUSD, 0.25) {
				t.Fatalf("chain %+v, want %s with one complete session", c, tc.chain)
			}
			names := eventNames(msgs)
			if names[len(names)-1] != tc.event {
				t.Fatalf("events %q, want the last to be %q", names, tc.event)
			}
			if acq, rel, active, _ := desk.counts(); acq != 1 || rel != 1 || active != 0 {
				t.Fatalf("leases: %d acquired, %d released, %d active; want 1, 1, 0", acq, rel, active)
			}
		})
	}
}

// TestStopWhileWaitingForLease: a worker waiting for a lease says why in its status, and a
// shutdown, even with drain, ends it at once with the chain interrupted and no session.
func TestStopWhileWaitingForLease(t *testing.T) {
	dir := t.TempDir()
	desk := newDesk()
	desk.maxConcurrent = 1
	if _, ok := desk.grant("other"); !ok {
		t.Fatal("test lease not granted")
	}
	agent := script(t, dir, "agent.sh", "exit 0\n")
	r := startRun(t, "wait", filepath.Join(dir, "state"), desk, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
	r.d.next(t, "the lease status", func(m worker.Message) bool {
		return m.Type == worker.TypeStatus && m.Text == "waiting for a session lease: max_concurrent_sessions (1) running"
	})
	if err := r.d.ch.Send(worker.Message{Type: worker.TypeShutdown, DeadlineMS: 20000, Drain: true}); err != nil {
		t.Fatal(err)
	}
	msgs := r.finish(t)
	c := onlyChain(t, r.desk, "wait")
	if c.Status != chain.Interrupted || len(c.Sessions) != 0 {
		t.Fatalf("chain %s with %d sessions, want interrupted with none", c.Status, len(c.Sessions))
	}
	if diff := cmp.Diff([]string{"chain.created", "chain.interrupted interrupted"}, eventNames(msgs)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// TestResumeInProcess: with resume, the newest incomplete chain of the unit is interrupted and
// continued with its last handoff; chains of other units and older ones are left alone.
func TestResumeInProcess(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	h0 := filepath.Join(dir, "h0.md")
	os.WriteFile(h0, []byte("old handoff\n"), 0o644)
	d := newDesk()
	now := time.Now()
	older, newest, other := "c-older", "c-newest", "c-other"
	d.seed(chain.New(older, "res", "t", dir, chain.Config{}, "", now))
	nc := chain.New(newest, "res", "t", dir, chain.Config{}, "", now)
	nc.Record(chain.Session{Index: 0, Status: chain.SessionComplete, HandoffFile: h0, CostUSD: 1}, now)
	nc.Record(chain.Session{Index: 1, Status: chain.SessionError, HandoffFile: filepath.Join(dir, "none.md")}, now)
	d.seed(nc)
	d.seed(chain.New(other, "res2", "t", dir, chain.Config{}, "", now))
	agent := script(t, dir, "agent.sh", `cat > "`+dir+`/stdin"; printf '%s' "$OPSVC_HANDOFF_IN" > "`+dir+`/in"; echo '{"done":true}' > "$OPSVC_RESULT"`+"\n")
	r := startRun(t, "res", state, d, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}, Resume: true})
	msgs := r.finish(t)
	cs := d.chainsOf("res")
	if len(cs) != 3 || cs[0].ID != older || cs[1].ID != newest {
		t.Fatalf("chains %+v", cs)
	}
	if cs[0].Status != chain.Running || cs[1].Status != chain.Interrupted || cs[2].Status != chain.Complete ||
		cs[2].RestartedFrom != newest || !approx(cs[1].TotalCostUSD, 1) || len(cs[1].Sessions) != 2 {
		t.Fatalf("chains %+v; want the older left running, the newest interrupted and resumed by a complete one", cs)
	}
	if c := onlyChain(t, r.desk, "res2"); c.ID != other || c.Status != chain.Running {
		t.Fatalf("another unit's chain changed: %+v", c)
	}
	if got := readFile(t, filepath.Join(dir, "in")); got != h0 {
		t.Fatalf("OPSVC_HANDOFF_IN %q, want %q", got, h0)
	}
	if got := readFile(t, filepath.Join(dir, "stdin")); got != "t\n\nPrevious session handoff:\nold handoff\n" {
		t.Fatalf("prompt %q", got)
	}
	ev := r.d.seen[0]
	if ev.Name != "chain.resumed" || !strings.Contains(string(ev.Data), `"restarted_from":"`+newest+`"`) {
		t.Fatalf("first message %+v, want chain.resumed from %s", ev, newest)
	}
	_ = msgs
}

// TestRecordRetries: a record the daemon cannot take for now (its storage is full) is asked for
// again, with the status line and the log saying so, until it is taken; nothing is lost or
// counted twice.
func TestRecordRetries(t *testing.T) {
	dir := t.TempDir()
	d := newDesk()
	d.failures[chain.MethodBegin] = 1
	d.failures[chain.MethodRecord] = 2
	d.failures[chain.MethodFinish] = 1
	agent := script(t, dir, "agent.sh", `cat >/dev/null; printf '{"turns":4,"cost_usd":0.5,"done":true}' > "$OPSVC_RESULT"`+"\n")
	r := startRun(t, "full", filepath.Join(dir, "state"), d, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
	msgs := r.finish(t)
	c := onlyChain(t, d, "full")
	if c.Status != chain.Complete || len(c.Sessions) != 1 || c.TotalTurns != 4 || !approx(c.TotalCostUSD, 0.5) {
		t.Fatalf("chain %+v, want complete with the one session", c)
	}
	d.mu.Lock()
	asked := maps.Clone(d.requests)
	d.mu.Unlock()
	if asked[chain.MethodBegin] != 2 || asked[chain.MethodRecord] != 3 || asked[chain.MethodFinish] != 2 {
		t.Fatalf("requests %v, want chain.begin 2, session.record 3, chain.finish 2", asked)
	}
	if !slices.ContainsFunc(msgs, func(m worker.Message) bool {
		return m.Type == worker.TypeStatus && strings.HasPrefix(m.Text, "record session 0 of chain "+c.ID+" failed") &&
			strings.Contains(m.Text, "no space left on device") && strings.Contains(m.Text, "trying again in")
	}) {
		t.Error("no status line about the record that failed")
	}
	logged := r.stderr.String()
	for _, want := range []string{
		"record session 0 of chain " + c.ID + ": worker: request \"session.record\" failed: write registry.json.tmp: no space left on device; asking again",
		`the session: {"index":0,`,
		"record session 0 of chain " + c.ID + ": done at attempt 3",
	} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
}

// TestRecordRefused: a record the daemon refuses outright ends the worker with an error that
// says what could not be recorded; the session's result is in the log.
func TestRecordRefused(t *testing.T) {
	dir := t.TempDir()
	d := newDesk()
	d.refuse[chain.MethodRecord] = "no such chain"
	agent := script(t, dir, "agent.sh", `cat >/dev/null; printf '{"turns":4,"cost_usd":0.5,"session_id":"keep-me"}' > "$OPSVC_RESULT"`+"\n")
	r := startRun(t, "refused", filepath.Join(dir, "state"), d, unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}})
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "record session 0 of chain") || !strings.Contains(err.Error(), "no such chain") {
		t.Fatalf("Run = %v, want the refused record", err)
	}
	if logged := r.stderr.String(); !strings.Contains(logged, `"session_id":"keep-me"`) {
		t.Fatalf("log lacks the session:\n%s", logged)
	}
}

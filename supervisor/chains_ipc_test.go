//go:build unix

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-cmp/cmp"

	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
	"github.com/opsvc/opsvc/worker/orchestrator"
)

// The daemon starts an orchestrator unit as Options.Executable (here, this test binary) with the
// arguments "worker orchestrator", and the worker starts each session's guard the same way: both
// are package orchestrator's Main, as in opsvc. A test binary asked to be the chain-asking worker
// of TestChainRequestRules is that instead. This runs before TestMain.
func init() {
	if len(os.Args) >= 3 && os.Args[1] == "worker" && os.Args[2] == "orchestrator" {
		os.Exit(orchestrator.Main(context.Background(), os.Stderr))
	}
	if os.Getenv(envChainAsker) != "" {
		os.Exit(chainAsker())
	}
}

// envChainAsker makes the test binary an ipc worker that sends chain requests (chainAsker).
const envChainAsker = "OPSVC_TEST_CHAIN_ASKER"

// chainAsker is an ipc worker that asks the daemon to begin a chain and prints the answer.
func chainAsker() int {
	c, err := worker.ConnectWith(worker.Options{OnEOF: func() { os.Exit(0) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.Ready()
	_, err = c.Request(context.Background(), chain.MethodBegin, chain.Begin{Task: "t"})
	var re *worker.ReplyError
	if errors.As(err, &re) {
		fmt.Printf("refused code=%s: %s\n", re.Code, re.Text)
	} else {
		fmt.Printf("answered: %v\n", err)
	}
	<-c.Shutdown()
	return 0
}

// withRegistry gives the daemon a registry in its state directory, as opsvc daemon does.
func withRegistry(t *testing.T) func(*Options) {
	return func(o *Options) {
		reg, err := registry.Open(o.Paths.State, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		o.Registry = reg
	}
}

// waitEventWhere reads the event stream until an event of type typ for unit whose data match
// accepts arrives (15 s at most), and returns it.
func (h *harness) waitEventWhere(typ, unit string, match func(map[string]any) bool) bus.Event {
	h.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-h.sub.C():
			if !ok {
				h.t.Fatalf("event stream ended waiting for %s %s", typ, unit)
			}
			if e.Type == typ && e.Unit == unit && match(e.Data) {
				return e
			}
		case <-timeout:
			h.t.Fatalf("no matching %s event for %q within 15s", typ, unit)
		}
	}
}

// chainsOf returns the registry's chains of unit, oldest first.
func chainsOf(t *testing.T, reg registry.Backend, unit string) []registry.Chain {
	t.Helper()
	var out []registry.Chain
	err := reg.View(func(r *registry.Registry) error {
		for _, c := range r.Chains {
			if c.Unit == unit {
				out = append(out, *c)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// orchestratorUnit is an orchestrator unit running agent, with a result file the agent writes.
func orchestratorUnit(agent, extra string) string {
	return `[service]
restart = "on-failure"
restart_delay = "50ms"
environment = { GORACE = "atexit_sleep_ms=0" }
[orchestrator]
project_dir = "."
task = "Work on %i"
agent = ["` + agent + `"]
` + extra
}

// TestOrchestratorResumesAfterKill9 runs a real orchestrator worker under the daemon, with the
// registry written by the daemon alone, and kills the worker with SIGKILL during its second
// session: its session's group dies with it, the unit restarts, and the new worker resumes the
// chain: the cut-off chain is interrupted, the new one has it as restarted_from, carries its
// handoff over and completes, and the lineage holds both.
func TestOrchestratorResumesAfterKill9(t *testing.T) {
	dir := shortTemp(t)
	block := filepath.Join(dir, "block")
	os.WriteFile(block, nil, 0o644)
	agent := filepath.Join(dir, "agent.sh")
	os.WriteFile(agent, []byte(`#!/bin/sh
prompt=$(cat)
out=$(dirname "$OPSVC_HANDOFF_OUT")
printf '%s\n' "$prompt" > "$out/prompt-$OPSVC_SESSION_INDEX.txt"
if [ "$OPSVC_SESSION_INDEX" = 1 ] && [ -e "`+block+`" ]; then
	echo "running pgid=$(cut -d' ' -f5 /proc/$$/stat)"
	exec sleep 1000
fi
echo "handoff of session $OPSVC_SESSION_INDEX" > "$OPSVC_HANDOFF_OUT"
done=false; [ "$OPSVC_SESSION_INDEX" -ge 1 ] && done=true
printf '{"turns":3,"cost_usd":0.1,"done":%s}' "$done" > "$OPSVC_RESULT"
`), 0o755)
	h := newHarness(t, map[string]string{
		"agent@.toml":  orchestratorUnit(agent, "max_continuations = 3\nresume = true\n"),
		"agent@k.toml": "",
	}, withRegistry(t))
	const name = "agent@k"
	created := h.waitEvent("chain.created", name)
	old, _ := created.Data["chain_id"].(string)
	h.waitEventWhere("session.finished", name, func(d map[string]any) bool { return num(d["index"]) == 0 })
	h.waitEventWhere("session.started", name, func(d map[string]any) bool { return num(d["index"]) == 1 })
	h.waitLog(name, "running pgid=")
	var pgid int
	for _, l := range h.logs.Tail(name, 100) {
		if _, v, ok := strings.Cut(l.Text, "running pgid="); ok {
			pgid, _ = strconv.Atoi(v)
		}
	}
	pid := h.status(name).PID
	if pid <= 0 || pgid <= 1 || pgid == pid {
		t.Fatalf("worker pid %d, session group %d", pid, pgid)
	}
	os.Remove(block)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	resumed := h.waitEvent("chain.resumed", name)
	h.waitEvent("chain.completed", name)
	waitGone(t, pgid)

	reg := h.sup.opts.Registry
	cs := chainsOf(t, reg, name)
	if len(cs) != 2 {
		t.Fatalf("%d chains, want 2: %+v", len(cs), cs)
	}
	oc, nc := cs[0], cs[1]
	if oc.ID != old || resumed.Data["chain_id"] != nc.ID || resumed.Data["restarted_from"] != old {
		t.Fatalf("chain.resumed %v; chains %s, %s; want %s resumed", resumed.Data, oc.ID, nc.ID, old)
	}
	if oc.Status != registry.ChainInterrupted || len(oc.Sessions) != 1 || oc.TotalTurns != 3 {
		t.Fatalf("old chain %+v, want interrupted with its first session (3 turns)", oc)
	}
	if nc.Status != registry.ChainComplete || nc.RestartedFrom != old || len(nc.Sessions) != 2 || nc.TotalTurns != 6 ||
		nc.Task != "Work on k" || nc.Config != (chain.Config{Model: chain.DefaultModel, MaxTurns: chain.DefaultMaxTurns, MaxContinuations: 3, MaxBudgetUSD: chain.DefaultMaxBudgetUSD}) {
		t.Fatalf("new chain %+v, want complete from %s with two sessions (6 turns), the task and its limits", nc, old)
	}
	prompt, err := os.ReadFile(filepath.Join(h.state, orchestrator.HandoffDir, nc.ID, "prompt-0.txt"))
	if err != nil || !strings.Contains(string(prompt), "Previous session handoff:\nhandoff of session 0") {
		t.Fatalf("the resumed chain's first prompt %q (%v) lacks the old chain's handoff", prompt, err)
	}
	var lineage []registry.LineageEntry
	if err := reg.View(func(r *registry.Registry) (err error) {
		lineage, err = r.Lineage(nc.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range lineage {
		got = append(got, fmt.Sprintf("%s %d %d", e.ID, e.Depth, e.Sessions))
	}
	if diff := cmp.Diff([]string{old + " 0 1", nc.ID + " 1 2"}, got); diff != "" {
		t.Fatalf("lineage (-want +got):\n%s", diff)
	}
}

// waitGone waits (15 s at most) for process group pgid to have no process left but zombies.
func waitGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still alive", pgid)
		}
		<-tick.C
	}
}

// TestConcurrentOrchestratorChains runs six orchestrators at once under one daemon with
// max_concurrent_sessions = 2: no more than two agents ever run at once, every chain completes,
// and the registry, written for all of them by the daemon, lost no session.
func TestConcurrentOrchestratorChains(t *testing.T) {
	dir := shortTemp(t)
	running := filepath.Join(dir, "running")
	os.Mkdir(running, 0o755)
	counts := filepath.Join(dir, "counts")
	agent := filepath.Join(dir, "agent.sh")
	// Each agent marks itself running, then counts the running agents: at the moment the most
	// agents run, the last of them to start sees them all.
	os.WriteFile(agent, []byte(`#!/bin/sh
cat >/dev/null
touch "`+running+`/$OPSVC_CHAIN_ID"
ls "`+running+`" | wc -l >> "`+counts+`"
sleep 0.1
rm "`+running+`/$OPSVC_CHAIN_ID"
done=false; [ "$OPSVC_SESSION_INDEX" = 1 ] && done=true
printf '{"turns":1,"cost_usd":0.01,"done":%s}' "$done" > "$OPSVC_RESULT"
`), 0o755)
	files := map[string]string{"agent@.toml": orchestratorUnit(agent, "")}
	const n = 6
	for i := range n {
		files["agent@"+strconv.Itoa(i)+".toml"] = ""
	}
	h := newHarness(t, files, withRegistry(t), func(o *Options) {
		o.Settings.Orchestrator.MaxConcurrentSessions = 2
		o.Settings.Orchestrator.MaxSessionsPerMinute = 0
	})
	completed := map[string]bool{}
	evs := map[string][]string{}
	timeout := time.After(30 * time.Second)
	for len(completed) < n {
		select {
		case e := <-h.sub.C():
			evs[e.Unit] = append(evs[e.Unit], fmt.Sprintf("%d %s %v", e.Seq, e.Type, e.Data))
			if e.Type == "chain.completed" {
				completed[e.Unit] = true
			}
		case <-timeout:
			// What the chains that did not complete were doing, for the
			// next look at a failure.
			for i := range n {
				name := "agent@" + strconv.Itoa(i)
				if completed[name] {
					continue
				}
				st := h.status(name)
				t.Logf("%s: %s/%s pid %d, %s; %+v", name, st.State, st.Sub, st.PID, st.StatusText, st)
				for _, e := range evs[name] {
					t.Logf("  event %s", e)
				}
				t.Logf("  chains %+v", chainsOf(t, h.sup.opts.Registry, name))
				for _, l := range h.logs.Tail(name, 30) {
					t.Logf("  %s: %s", name, l.Text)
				}
			}
			var leases []string
			h.sup.do(context.Background(), func() {
				for id, l := range h.sup.leases.active {
					leases = append(leases, id+" "+l.unit+" "+l.chainID)
				}
				for u := range h.sup.leases.waiting {
					leases = append(leases, "waiting "+u)
				}
			})
			t.Fatalf("chains completed within 30s: %v, want %d (leases: %q)", completed, n, leases)
		}
	}
	for i := range n {
		cs := chainsOf(t, h.sup.opts.Registry, "agent@"+strconv.Itoa(i))
		if len(cs) != 1 || cs[0].Status != registry.ChainComplete || len(cs[0].Sessions) != 2 || cs[0].TotalTurns != 2 {
			t.Fatalf("chains of agent@%d: %+v, want one complete with 2 sessions", i, cs)
		}
	}
	b, err := os.ReadFile(counts)
	if err != nil {
		t.Fatal(err)
	}
	seen := strings.Fields(string(b))
	if len(seen) != 2*n {
		t.Fatalf("%d sessions ran, want %d", len(seen), 2*n)
	}
	for _, c := range seen {
		if k, _ := strconv.Atoi(c); k > 2 {
			t.Fatalf("%d agents ran at once (counts %v), want at most 2", k, seen)
		}
	}
}

// TestChainRequestsOffTheLoop holds the registry's lock, as a long write would, while an
// orchestrator asks for its chain: once the daemon's write waits for the lock, the daemon still
// goes on (it loads and starts another unit, and its API answers), and once the lock is free the
// chain is recorded and runs.
func TestChainRequestsOffTheLoop(t *testing.T) {
	dir := shortTemp(t)
	agent := filepath.Join(dir, "agent.sh")
	os.WriteFile(agent, []byte("#!/bin/sh\ncat >/dev/null; echo '{\"done\":true}' > \"$OPSVC_RESULT\"\n"), 0o755)
	h := newHarness(t, nil, withRegistry(t))
	lockPath := filepath.Join(h.state, registry.LockName)
	lock := flock.New(lockPath)
	if err := lock.Lock(); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			lock.Unlock()
		}
	}()
	h.write("agent@l.toml", orchestratorUnit(agent, ""))
	h.waitEvent("unit.started", "agent@l")
	waitLockWaiter(t, lockPath)
	h.write("other.toml", "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n")
	h.waitEvent("unit.ready", "other")
	if st := h.status("agent@l"); st.State != Activating {
		t.Fatalf("agent@l is %s while its chain cannot be written, want activating", st.State)
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	locked = false
	h.waitEvent("chain.completed", "agent@l")
	if cs := chainsOf(t, h.sup.opts.Registry, "agent@l"); len(cs) != 1 || cs[0].Status != registry.ChainComplete {
		t.Fatalf("chains %+v, want one complete", cs)
	}
}

// waitLockWaiter waits (15 s at most) until someone waits for the flock of path: /proc/locks
// lists a waiter as "N: -> FLOCK ... MAJ:MIN:INODE ...".
func waitLockWaiter(t *testing.T, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	suffix := ":" + strconv.FormatUint(st.Ino, 10)
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Skipf("no /proc/locks to see lock waiters in: %v", err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 7 && f[1] == "->" && f[2] == "FLOCK" && strings.HasSuffix(f[6], suffix) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody waits for the lock of %s", path)
		}
		<-tick.C
	}
}

// TestChainRequestRules: only orchestrator units record chains.
func TestChainRequestRules(t *testing.T) {
	h := newHarness(t, map[string]string{
		"asker.toml": fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = [%q]\nenvironment = { %s = \"1\", GORACE = \"atexit_sleep_ms=0\" }\n", testExe(t), envChainAsker),
	}, withRegistry(t))
	h.waitLog("asker", "refused code=invalid: chain.begin: only orchestrator units record chains")
}

// failingStore is a ChainStore whose storage fails.
type failingStore struct{ err error }

func (f failingStore) BeginChain(string, chain.Begin, time.Time) (chain.Begun, error) {
	return chain.Begun{}, f.err
}
func (f failingStore) RecordSession(string, chain.RecordSession, time.Time) (chain.Totals, error) {
	return chain.Totals{}, f.err
}
func (f failingStore) FinishChain(string, chain.Finish, time.Time) (chain.Totals, error) {
	return chain.Totals{}, f.err
}

// TestAnswerChain: what each kind of failure is answered with, and a real registry's answers to
// requests that touch another unit's chain.
func TestAnswerChain(t *testing.T) {
	reg, err := registry.Open(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	begun, err := answerChain(reg, "a", chain.MethodBegin, json.RawMessage(`{"id":"c-1","task":"t"}`), now)
	if err != nil || begun.(chain.Begun).ID != "c-1" {
		t.Fatalf("begin = %+v, %v", begun, err)
	}
	again, err := answerChain(reg, "a", chain.MethodBegin, json.RawMessage(`{"id":"c-1","task":"t","resume":true}`), now)
	if err != nil || again != begun {
		t.Fatalf("begin again = %+v, %v; want %+v", again, err, begun)
	}
	enospc := fmt.Errorf("registry: write registry.json.tmp: %w", syscall.ENOSPC)
	for _, tc := range []struct {
		name   string
		store  ChainStore
		unit   string
		method string
		params string
		code   string
		text   string
	}{
		{"no params", reg, "a", chain.MethodRecord, ``, worker.CodeInvalid, "session.record: request refused: no params"},
		{"not an object", reg, "a", chain.MethodRecord, `[1]`, worker.CodeInvalid, "session.record: request refused: params: json: cannot unmarshal"},
		{"bad session", reg, "a", chain.MethodRecord, `{"chain_id":"c-1","session":{"index":-1,"status":"complete"}}`, worker.CodeInvalid, "session index -1 is out of range"},
		{"bad id", reg, "a", chain.MethodBegin, `{"id":"../x","task":"t"}`, worker.CodeInvalid, `chain id "../x" starts with '.'`},
		{"another unit's chain", reg, "b", chain.MethodRecord, `{"chain_id":"c-1","session":{"index":0,"status":"complete"}}`, worker.CodeInvalid, "no such chain"},
		{"another unit's id", reg, "b", chain.MethodBegin, `{"id":"c-1","task":"t"}`, worker.CodeInvalid, "the id is taken by a chain of unit a"},
		{"finish as running", reg, "a", chain.MethodFinish, `{"chain_id":"c-1","status":"running"}`, worker.CodeInvalid, "cannot be finished as running"},
		{"storage full", failingStore{enospc}, "a", chain.MethodRecord, `{"chain_id":"c-1","session":{"index":0,"status":"complete"}}`, worker.CodeUnavailable, "no space left on device"},
		{"corrupt registry", failingStore{&registry.CorruptError{Path: "r", Aside: "r.x", Err: errors.New("bad")}}, "a", chain.MethodFinish, `{"chain_id":"c-1","status":"complete"}`, worker.CodeUnavailable, "was corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := answerChain(tc.store, tc.unit, tc.method, json.RawMessage(tc.params), now)
			var ce *worker.CodedError
			if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("answer = %v, want code %s and %q", err, tc.code, tc.text)
			}
		})
	}
	// Finishing twice with the same status is harmless; with another one it is refused.
	for i, want := range []string{"", "", "cannot become interrupted"} {
		status := []string{"complete", "complete", "interrupted"}[i]
		_, err := answerChain(reg, "a", chain.MethodFinish, json.RawMessage(`{"chain_id":"c-1","status":"`+status+`"}`), now)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Fatalf("finish %d as %s = %v, want %q", i, status, err, want)
		}
	}
	if cs := chainsOf(t, reg, "a"); len(cs) != 1 || cs[0].Status != registry.ChainComplete || !slices.Equal(cs[0].Sessions, []registry.Session{}) {
		t.Fatalf("chains of a: %+v", cs)
	}
}

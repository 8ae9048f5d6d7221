//go:build linux

package orchestrator

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// subWorker is the test binary re-executed as `opsvc worker orchestrator` (Main), with its IPC
// channel as fd 3, as the daemon starts it.
type subWorker struct {
	cmd     *exec.Cmd
	d       *daemonEnd
	stdout  *lineSink
	stderr  *lineSink
	exited  chan struct{}
	waitErr error
}

// environWithout is os.Environ without the named variables.
func environWithout(names ...string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

func startWorker(t *testing.T, name, state string, desk *desk, cfg unit.Orchestrator, env ...string) *subWorker {
	t.Helper()
	ch, child, err := worker.NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &subWorker{stdout: newLineSink(), stderr: newLineSink(), exited: make(chan struct{})}
	w.cmd = exec.Command(exe, "-test.run=^$")
	w.cmd.Env = append(environWithout(worker.EnvIPCFD, worker.EnvHeartbeatUSEC, worker.EnvNodeChannelFD, envGuard, EnvConfig),
		mainVar+"=1", EnvState+"="+state, EnvConfig+"="+string(js), noRaceExitSleep)
	w.cmd.Env = append(w.cmd.Env, worker.ChildEnv(name, 0)...)
	w.cmd.Env = append(w.cmd.Env, env...)
	w.cmd.ExtraFiles = []*os.File{child}
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = w.cmd.Start()
	child.Close()
	if err != nil {
		ch.Close()
		t.Fatal(err)
	}
	go func() {
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()
	w.d = newDaemonEnd(t, ch, name, desk)
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.exited
		}
		ch.Close()
		<-w.d.done
		if t.Failed() {
			t.Logf("worker %s stderr:\n%s", name, w.stderr.String())
		}
	})
	return w
}

// exit waits for the worker to exit and returns its exit status (-1 for a signal).
func (w *subWorker) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-w.exited:
	case <-time.After(waitFor):
		t.Fatalf("worker still running after %v", waitFor)
	}
	var ee *exec.ExitError
	if w.waitErr != nil && !errors.As(w.waitErr, &ee) {
		t.Fatal(w.waitErr)
	}
	return w.cmd.ProcessState.ExitCode()
}

// TestResumeAfterKill9 kills a real worker with SIGKILL while its agent runs: the session's whole
// process group dies with it. A new worker with resume = true then asks for the cut-off chain to
// be continued as a new chain with restarted_from set, carries the last handoff over, and nothing
// is counted twice. (The daemon's side of it, with the real registry, is tested in package
// supervisor.)
func TestResumeAfterKill9(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	agent := script(t, dir, "agent.sh", `
i=$OPSVC_SESSION_INDEX
cat > "$OUT/stdin.$PHASE.$i"
printf '%s' "$OPSVC_HANDOFF_IN" > "$OUT/in.$PHASE.$i"
if [ "$PHASE" = 1 ] && [ "$i" = 1 ]; then
	sleep 1000 &
	echo "running pgid=$(cut -d' ' -f5 /proc/$$/stat)"
	wait
	exit 0
fi
echo "handoff $PHASE.$i" > "$OPSVC_HANDOFF_OUT"
done=false; [ "$PHASE" = 2 ] && done=true
printf '{"turns":1,"cost_usd":0.25,"done":%s}' "$done" > "$OPSVC_RESULT"
`)
	desk := newDesk()
	cfg := unit.Orchestrator{ProjectDir: dir, Task: "Resume me", Agent: []string{agent}, Resume: true}

	w1 := startWorker(t, "agent@k", state, desk, cfg, "PHASE=1", "OUT="+dir)
	old, _ := w1.d.event(t, "chain.created")["chain_id"].(string)
	w1.d.next(t, "session.started 1", func(m worker.Message) bool {
		return m.Name == "session.started" && strings.Contains(string(m.Data), `"index":1`)
	})
	pgid := pgidOf(t, w1.stdout.waitLine(t, "running pgid="))
	if pgid == w1.cmd.Process.Pid {
		t.Fatal("the session runs in the worker's process group")
	}
	if err := syscall.Kill(w1.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := w1.exit(t); code != -1 {
		t.Fatalf("worker exit status %d, want death by SIGKILL", code)
	}
	waitGroupGone(t, pgid)

	if c := onlyChain(t, desk, "agent@k"); c.ID != old || c.Status != chain.Running || len(c.Sessions) != 1 {
		t.Fatalf("after the kill: chain %+v, want %s running with its first session", c, old)
	}

	w2 := startWorker(t, "agent@k", state, desk, cfg, "PHASE=2", "OUT="+dir)
	resumed := w2.d.event(t, "chain.resumed")
	if code := w2.exit(t); code != 0 {
		t.Fatalf("second worker exit status %d, want 0", code)
	}
	cs := desk.chainsOf("agent@k")
	if len(cs) != 2 {
		t.Fatalf("%d chains, want 2", len(cs))
	}
	oc, nc := cs[0], cs[1]
	if resumed["chain_id"] != nc.ID || resumed["restarted_from"] != old {
		t.Fatalf("chain.resumed %v, want chain %s from %s", resumed, nc.ID, old)
	}
	if oc.Status != chain.Interrupted || len(oc.Sessions) != 1 || !approx(oc.TotalCostUSD, 0.25) || oc.TotalTurns != 1 {
		t.Fatalf("old chain %+v, want interrupted with one session of $0.25", oc)
	}
	if nc.Status != chain.Complete || nc.RestartedFrom != old || len(nc.Sessions) != 1 || !approx(nc.TotalCostUSD, 0.25) {
		t.Fatalf("new chain %+v, want complete, restarted from %s, one session of $0.25", nc, old)
	}
	oldHandoff := filepath.Join(state, HandoffDir, old, "0.md")
	if got := readFile(t, filepath.Join(dir, "in.2.0")); got != oldHandoff {
		t.Fatalf("first resumed session OPSVC_HANDOFF_IN %q, want %q", got, oldHandoff)
	}
	if got, want := readFile(t, filepath.Join(dir, "stdin.2.0")), "Resume me\n\nPrevious session handoff:\nhandoff 1.0\n"; got != want {
		t.Fatalf("first resumed session prompt %q, want %q", got, want)
	}
	if acq, rel, _, _ := desk.counts(); acq != 3 || rel != 2 {
		t.Fatalf("leases: %d acquired, %d released; want 3 and 2 (the killed worker's last one is the daemon's to drop)", acq, rel)
	}
}

// TestConcurrentOrchestrators runs six orchestrators at once against one daemon, with
// max_concurrent_sessions = 2: no more than two agents ever run at once, and every chain completes.
func TestConcurrentOrchestrators(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	running := filepath.Join(dir, "running")
	os.Mkdir(running, 0o755)
	// Each agent marks itself running, then counts the running agents: at the moment the most
	// agents run, the last of them to start sees them all.
	agent := script(t, dir, "agent.sh", `cat >/dev/null
touch "$RUNNING/$OPSVC_CHAIN_ID"
n=$(ls "$RUNNING" | wc -l)
echo "$n" >> "$OUT/counts"
sleep 0.2
rm "$RUNNING/$OPSVC_CHAIN_ID"
done=false; [ "$OPSVC_SESSION_INDEX" = 1 ] && done=true
printf '{"turns":1,"cost_usd":0.01,"done":%s}' "$done" > "$OPSVC_RESULT"
`)
	desk := newDesk()
	desk.maxConcurrent = 2
	runs := make([]*inRun, 6)
	for i := range runs {
		cfg := unit.Orchestrator{ProjectDir: dir, Task: "t", Agent: []string{agent}}
		runs[i] = startRun(t, "agent@"+strconv.Itoa(i), state, desk, cfg, "RUNNING="+running, "OUT="+dir)
	}
	for i, r := range runs {
		r.finish(t)
		if c := onlyChain(t, r.desk, "agent@"+strconv.Itoa(i)); c.Status != chain.Complete || len(c.Sessions) != 2 {
			t.Fatalf("chain of agent@%d: %s with %d sessions, want complete with 2", i, c.Status, len(c.Sessions))
		}
	}
	counts := strings.Fields(readFile(t, filepath.Join(dir, "counts")))
	if len(counts) != 12 {
		t.Fatalf("%d sessions ran, want 12", len(counts))
	}
	most := 0
	for _, c := range counts {
		n, _ := strconv.Atoi(c)
		most = max(most, n)
	}
	if most > 2 {
		t.Fatalf("%d agents ran at once (counts %v), want at most 2", most, counts)
	}
	if acq, rel, active, maxActive := desk.counts(); acq != 12 || rel != 12 || active != 0 || maxActive > 2 {
		t.Fatalf("leases: %d acquired, %d released, %d active, at most %d at once; want 12, 12, 0, ≤2", acq, rel, active, maxActive)
	}
	t.Logf("at most %d agents ran at once", most)
}

// TestGuardRefuses: a guard started by hand, not as the leader of its own process group with its
// lifeline, refuses to run anything (it would otherwise kill a group that is not its own).
func TestGuardRefuses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	agent := script(t, dir, "a.sh", "touch "+marker+"\n")
	for _, tc := range []struct {
		name   string
		setpg  bool
		env    string
		stderr string
	}{
		{"not a group leader", false, `["` + agent + `"]`, "not the leader of its own process group"},
		{"no lifeline", true, `["` + agent + `"]`, "fd 3 is not the worker's lifeline pipe"},
		{"no command", true, `[]`, "OPSVC_SESSION_GUARD is not an agent command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(environWithout(envGuard, mainVar), envGuard+"="+tc.env, noRaceExitSleep)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: tc.setpg}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("guard: %v, stderr %q; want exit status 127 and %q", err, stderr.String(), tc.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the guard ran the agent")
			}
		})
	}
}

// TestMainEnvironment: Main explains what is missing from its environment.
func TestMainEnvironment(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no config", map[string]string{EnvConfig: ""}, "OPSVC_ORCHESTRATOR is not set (opsvc runs this worker for units with an [orchestrator] table"},
		{"bad config", map[string]string{EnvConfig: "{"}, "OPSVC_ORCHESTRATOR is not the JSON of an [orchestrator] table"},
		{"no unit", map[string]string{EnvConfig: "{}", worker.EnvUnit: ""}, "OPSVC_UNIT is not set"},
		{"no state", map[string]string{EnvConfig: "{}", worker.EnvUnit: "u", EnvState: ""}, "OPSVC_STATE is not set"},
		{"bad fd", map[string]string{EnvConfig: "{}", worker.EnvUnit: "u", EnvState: state, worker.EnvIPCFD: "x"}, `OPSVC_IPC_FD="x" is not a descriptor number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr strings.Builder
			if code := Main(t.Context(), &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("Main = %d, stderr %q; want 1 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// BenchmarkSessionStart measures one whole session of an agent that does nothing but print a
// result: prompt in, guard and agent started, result read, group reaped.
func BenchmarkSessionStart(b *testing.B) {
	dir := b.TempDir()
	agent := script(b, dir, "agent.sh", `echo '{"type":"result","num_turns":1}'`+"\n")
	r := &runner{
		opts: Options{Now: time.Now, Stdout: io.Discard, Stderr: io.Discard, Executable: selfExe},
		stop: &stopWatch{any: make(chan struct{}), hard: make(chan struct{})},
	}
	spec := sessionSpec{
		call: agentCall{argv: []string{agent}}, budget: budgetLimit{left: -1}, dir: dir, env: []string{"PATH=/usr/bin:/bin", noRaceExitSleep}, prompt: "task\n",
		handoffOut: filepath.Join(dir, "0.md"), resultPath: filepath.Join(dir, "0.result.json"),
	}
	for b.Loop() {
		if out := r.runSession(spec); out.Status != chain.SessionComplete {
			b.Fatalf("session %s: %s", out.Status, out.Error)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// treeScript is a worker that starts two children, one in its own session
// (as a daemonising program would), and waits.
const treeScript = `sleep 3600 & setsid sleep 3600 & wait`

// fastAgent is a stand-in agent: a short session that does not finish its chain.
const fastAgent = `#!/bin/sh
cat >/dev/null
sleep 0.3
[ -n "${OPSVC_HANDOFF_OUT:-}" ] && echo "handoff $OPSVC_SESSION_INDEX" > "$OPSVC_HANDOFF_OUT"
[ -n "${OPSVC_RESULT:-}" ] && printf '{"session_id":"s-%s","turns":1,"cost_usd":0,"done":false}\n' "$OPSVC_SESSION_INDEX" > "$OPSVC_RESULT"
exit 0
`

// slowAgent is a stand-in agent whose session lasts until it is ended.
const slowAgent = `#!/bin/sh
cat >/dev/null
echo "agent session $OPSVC_SESSION_INDEX running"
sleep 3600 &
wait
`

// orchUnit writes an orchestrator unit whose sessions run agent, marked with the token.
func (f *fixture) orchUnit(name, agent string) {
	if err := os.WriteFile(filepath.Join(f.units, name+"-agent.sh"), []byte(agent), 0o755); err != nil {
		panic(err)
	}
	f.write(name+".toml", fmt.Sprintf(`[service]
restart = "always"
restart_delay = "200ms"
start_limit_burst = 1000
stop_timeout = "3s"
environment = { FAULTS_TOKEN = %q, FAULTS_UNIT = %q }

[orchestrator]
project_dir = "."
task = "fault suite"
agent = ["/bin/sh", "./%s-agent.sh", %q]
max_continuations = 3
max_budget_usd = 1.0
resume = true
`, f.token, name, name, f.marker(name+"-agent")))
}

// scenarioKillDaemon kills the daemon with SIGKILL at random moments while
// its units start, restart, print and record chains, then starts it again
// and counts what the dead daemon left behind.
func scenarioKillDaemon(ctx context.Context, s *suite, r *result) {
	n := s.opt.kills
	r.did = fmt.Sprintf("kill -9 of the daemon ×%d at random moments under load (3 units with a setsid child, a crash loop, an output loop, an orchestrator), then restart", n)
	f := s.setup(r, "kill9-daemon")
	if f == nil {
		return
	}
	defer f.close()
	trees := []string{"tree1", "tree2", "tree3"}
	for _, t := range trees {
		f.shellUnit(t, treeScript, "", "")
	}
	f.shellUnit("blink", "sleep 0.3; exit 1", "restart = \"always\"\nrestart_delay = \"100ms\"\nstart_limit_burst = 10000\n", "")
	f.shellUnit("chatty", "while :; do seq 1 100; sleep 0.05; done", "", "")
	f.orchUnit("orch", fastAgent)
	all := append(slices.Clone(trees), "blink", "chatty", "orch")

	rng := rand.New(rand.NewSource(s.opt.seed))
	var prev []proc // the units' processes just before a kill
	orphans, dups, regValid, restarted, atKill := 0, 0, 0, 0, 0
	var escapedCmds []string
	var d *daemon
	var err error
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d, err = f.start(ctx); err != nil {
			r.fail("round %d: start: %v", i+1, err)
			return
		}
		if i > 0 {
			// What the daemon found when it came back up.
			if _, err := f.waitUnits(ctx, 20*time.Second, allActive(trees...)); err != nil {
				r.fail("round %d: units not active again after the restart: %v", i+1, err)
			} else {
				restarted++
			}
			o, dd, cmds := f.leftovers(ctx, prev, all)
			orphans += o
			dups += dd
			escapedCmds = append(escapedCmds, cmds...)
		}
		// Load: a client asking for status all the time.
		lctx, stopLoad := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				f.unitList(lctx, 2*time.Second)
				time.Sleep(20 * time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(rng.Int63n(int64(1500 * time.Millisecond))))
		prev = f.procs()
		atKill += len(prev)
		d.kill9()
		stopLoad()
		wg.Wait()
		if registryValid(f.state) {
			regValid++
		}
	}
	// A last start: what the last kill left, then the stored history.
	if ctx.Err() == nil {
		if d, err = f.start(ctx); err != nil {
			r.fail("last start: %v", err)
			return
		}
		if _, err := f.waitUnits(ctx, 20*time.Second, allActive(trees...)); err != nil {
			r.fail("units not active after the last restart: %v", err)
		} else {
			restarted++
		}
		o, dd, cmds := f.leftovers(ctx, prev, all)
		orphans += o
		dups += dd
		escapedCmds = append(escapedCmds, cmds...)
	}
	var chains struct {
		Chains []json.RawMessage `json:"chains"`
	}
	if err := f.getJSON(ctx, "/v1/chains", 10*time.Second, &chains); err != nil {
		r.fail("chains after the kills: %v", err)
	}
	evs, err := f.storedEvents(ctx, "since=0")
	if err != nil {
		r.fail("stored events: %v", err)
	}
	gaps, missing, disorder := seqGaps(evs)
	d.stop(15 * time.Second)
	left := f.procs()

	r.check(orphans == 0, "%d orphans (of %d unit processes alive at the kills)", orphans, atKill)
	r.check(dups == 0, "%d duplicate workers", dups)
	r.check(regValid == n, "registry valid %d/%d", regValid, n)
	r.check(restarted == n, "units back %d/%d", restarted, n)
	r.check(gaps == 0 && disorder == 0, "%d seq gaps (%d seqs missing, %d out of order) in %d events", gaps, missing, disorder, len(evs))
	r.figure("%d chains recorded", len(chains.Chains))
	r.check(len(left) == 0, "%d processes left after the final stop", len(left))
	if len(escapedCmds) > 0 {
		slices.Sort(escapedCmds)
		escapedCmds = slices.Compact(escapedCmds)
		r.figure("left behind: %s", strings.Join(first(escapedCmds, 4), "; "))
	}
}

// leftovers waits (up to a few seconds) for the processes of the killed
// daemon to be gone and each unit to run once, then counts the processes of
// before still alive (orphans) and the extra process trees per unit
// (duplicates), and ends the orphans so the next round starts clean.
func (f *fixture) leftovers(ctx context.Context, before []proc, units []string) (orphans, dups int, cmds []string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := f.procs()
		alive := make(map[string]proc)
		for _, p := range now {
			alive[p.key()] = p
		}
		var old []proc
		for _, p := range before {
			if q, ok := alive[p.key()]; ok {
				old = append(old, q)
			}
		}
		rs := roots(now)
		dups = 0
		for _, u := range units {
			if rs[u] > 1 {
				dups += rs[u] - 1
			}
		}
		if (len(old) == 0 && dups == 0) || time.Now().After(deadline) || ctx.Err() != nil {
			for _, p := range old {
				cmds = append(cmds, p.unit+": "+strings.Join(p.argv, " "))
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
			return len(old), dups, cmds
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func registryValid(state string) bool {
	b, err := os.ReadFile(filepath.Join(state, "registry.json"))
	if os.IsNotExist(err) {
		return true // nothing recorded yet is a valid registry
	}
	if err != nil {
		return false
	}
	var v map[string]any
	return json.Unmarshal(b, &v) == nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// scenarioKillWorker kills an orchestrator worker with SIGKILL while its
// agent session runs: the session must die with it, the unit come back and
// the chain be resumed.
func scenarioKillWorker(ctx context.Context, s *suite, r *result) {
	n := 3
	if s.opt.short {
		n = 2
	}
	r.did = fmt.Sprintf("kill -9 of an orchestrator worker ×%d mid-session (stand-in agent with a child), and of a worker with a child and a setsid child", n)
	f := s.setup(r, "kill9-worker")
	if f == nil {
		return
	}
	defer f.close()
	f.orchUnit("orch", slowAgent)
	f.shellUnit("tree", treeScript, "restart = \"always\"\nrestart_delay = \"100ms\"\n", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	// A plain worker: what it started, in its group or not, goes with it.
	if m, err := f.waitUnits(ctx, 10*time.Second, allActive("tree")); err != nil {
		r.fail("tree not active: %v", err)
	} else {
		var kids []proc
		deadline := time.Now().Add(5 * time.Second)
		for len(kids) < 2 && time.Now().Before(deadline) {
			kids = nil
			for _, p := range f.procs() {
				if p.unit == "tree" && p.ppid == m["tree"].PID {
					kids = append(kids, p)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		syscall.Kill(m["tree"].PID, syscall.SIGKILL)
		left := 0
		deadline = time.Now().Add(10 * time.Second)
		for {
			left = 0
			for _, k := range kids {
				if _, st := statOf(k.pid); st == k.start && !isZombie(k.pid) {
					left++
				}
			}
			if left == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, k := range kids {
			syscall.Kill(k.pid, syscall.SIGKILL)
		}
		r.check(len(kids) == 2 && left == 0, "plain worker: %d of its %d children left", left, len(kids))
	}
	evs, err := f.follow(ctx, "unit=orch&type=session.started")
	if err != nil {
		r.fail("follow events: %v", err)
		return
	}
	leftRunning, back, sessionProcs := 0, 0, 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, ok := waitEvent(evs, 30*time.Second, func(e event) bool { return e.Type == "session.started" }); !ok {
			r.fail("round %d: no session.started within 30 s", i+1)
			break
		}
		// The session is up once the agent's child is there. Everything of
		// the unit but the worker (the agent, its child, its guard) belongs
		// to the session.
		var worker proc
		var agents []proc
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			worker, agents = proc{}, nil
			child := false
			for _, p := range f.procs() {
				if p.unit != "orch" {
					continue
				}
				if p.ppid == d.pid && len(p.argv) >= 3 && p.argv[1] == "worker" && p.argv[2] == "orchestrator" {
					worker = p
					continue
				}
				agents = append(agents, p)
				child = child || (len(p.argv) > 0 && strings.HasSuffix(p.argv[0], "sleep"))
			}
			if worker.pid != 0 && child {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if worker.pid == 0 || len(agents) == 0 {
			r.fail("round %d: worker or agent process not found", i+1)
			break
		}
		sessionProcs += len(agents)
		syscall.Kill(worker.pid, syscall.SIGKILL)
		// The agent and its child must go with the worker.
		gone := false
		deadline = time.Now().Add(10 * time.Second)
		for !gone && time.Now().Before(deadline) {
			gone = true
			for _, a := range agents {
				if pp, st := statOf(a.pid); st == a.start && pp != 0 && !isZombie(a.pid) {
					gone = false
				}
			}
			if !gone {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if !gone {
			leftRunning++
			for _, a := range agents {
				syscall.Kill(a.pid, syscall.SIGKILL)
			}
		}
		if _, err := f.waitUnits(ctx, 20*time.Second, func(m map[string]unitStatus) bool {
			u := m["orch"]
			return u.PID != 0 && u.PID != worker.pid && u.State == "active"
		}); err == nil {
			back++
		}
	}
	// The chains: every chain cut off by a kill is resumed by a later one.
	type chain struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		RestartedFrom string `json:"restarted_from"`
	}
	var cs struct {
		Chains []chain `json:"chains"`
	}
	resumed := 0
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := f.getJSON(ctx, "/v1/chains", 10*time.Second, &cs); err == nil {
			resumed = 0
			for _, c := range cs.Chains {
				if c.RestartedFrom != "" {
					resumed++
				}
			}
			if resumed >= n {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(15 * time.Second)
	left := f.procs()
	r.check(leftRunning == 0, "%d sessions left running (of %d processes)", leftRunning, sessionProcs)
	r.check(back == n, "unit back %d/%d", back, n)
	r.check(resumed >= n, "chains resumed %d/%d", resumed, n)
	if resumed < n {
		var st []string
		for _, c := range cs.Chains {
			st = append(st, c.Status+"<-"+c.RestartedFrom)
		}
		r.figure("chains: %s", strings.Join(first(st, 8), " "))
	}
	r.check(registryValid(f.state), "registry valid")
	r.check(len(left) == 0, "%d processes left after stop", len(left))
}

// scenarioSecondDaemon starts a second daemon on a state directory in use.
func scenarioSecondDaemon(ctx context.Context, s *suite, r *result) {
	r.did = "a second `opsvc daemon` on the state directory of a running one (own socket)"
	f := s.setup(r, "second-daemon")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("one", "sleep 3600 & wait", "", "")
	a, err := f.start(ctx)
	if err != nil {
		r.fail("start: %v", err)
		return
	}
	if _, err := f.waitUnits(ctx, 10*time.Second, allActive("one")); err != nil {
		r.fail("unit not active: %v", err)
	}
	g := *f
	g.sock = filepath.Join(f.dir, "second.sock")
	g.daemons = nil
	b, err := g.spawn(nil)
	if err != nil {
		r.fail("spawn the second: %v", err)
		return
	}
	want := fmt.Sprintf("opsvc: state directory %s is in use by pid %d (stop it, or use --state)", f.state, a.pid)
	t0 := time.Now()
	select {
	case <-b.done:
		r.check(b.state.ExitCode() == 1, "second daemon exited %d after %s", b.state.ExitCode(), ms(time.Since(t0)))
		r.check(b.stderr.contains(want), "message %q", want)
		if !b.stderr.contains(want) {
			r.figure("it said %q", b.stderr.last(300))
		}
	case <-time.After(10 * time.Second):
		r.fail("second daemon still running after 10 s")
		b.stop(10 * time.Second)
	}
	// CLI readers are not blocked by the lock.
	_, e1, c1, err1 := f.cli(ctx, 10*time.Second, "validate", f.units)
	r.check(err1 == nil && c1 == 0, "validate answered (exit %d%s)", c1, said(e1))
	_, e2, c2, err2 := f.cli(ctx, 10*time.Second, "chains", "ls", "--json")
	r.check(err2 == nil && c2 == 0, "chains answered (exit %d%s)", c2, said(e2))
	// The first daemon is unharmed and its history single.
	_, err = f.waitUnits(ctx, 5*time.Second, allActive("one"))
	r.check(err == nil && a.alive(), "first daemon still serving")
	if evs, err := f.storedEvents(ctx, "since=0"); err == nil {
		gaps, _, disorder := seqGaps(evs)
		r.check(gaps == 0 && disorder == 0, "%d seq gaps, %d out of order", gaps, disorder)
	} else {
		r.fail("stored events: %v", err)
	}
	ones := roots(f.procs())["one"]
	r.check(ones == 1, "unit running %d time(s)", ones)
}

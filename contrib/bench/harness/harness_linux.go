package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// harness is one run: the work directory, the tag of the run's children, the
// event watcher and the results so far.
type harness struct {
	opt    options
	ctx    context.Context
	work   string
	child  string // child.sh in the work directory
	prefix string // argv[0] prefix of every child of this run
	w      *watcher
	res    *results
	begin  time.Time
	seq    int       // instances made
	active *instance // the instance up now, for cleanup on interrupt
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{opt: o, ctx: ctx, begin: time.Now(), res: &results{GoBench: map[string]map[string]float64{}}}
	if err := h.prepare(); err != nil {
		return err
	}
	defer h.cleanup()

	if o.statusOnly {
		h.statusOnly()
		return h.finish()
	}
	if o.reexecOnly {
		p := opsvcPeer{bin: o.opsvcBin}
		pr := &peerResult{Name: p.name()}
		h.res.Peers = append(h.res.Peers, pr)
		if err := p.available(); err != nil {
			pr.Skipped = err.Error()
			logf("%s: skipped (%v)", p.name(), err)
			return h.finish()
		}
		pr.Version = p.version()
		h.reexecAll()
		return h.finish()
	}
	peers := h.peers()
	logf("run %s: %s; N=%v; detail N=%d; work dir on %s; timing by %s", strings.TrimSuffix(h.prefix, ":"),
		names(peers), o.ns, o.detailN, h.res.Meta.WorkFS, h.w.method)
	for _, p := range peers {
		if ctx.Err() != nil {
			break
		}
		h.runPeer(p)
	}
	if ctx.Err() == nil {
		if ops := h.res.peer("opsvc"); ops != nil && ops.Skipped == "" {
			h.opsvcOnly()
			h.reexecAll()
		}
		h.goBenchmarks()
	}
	if ctx.Err() != nil {
		h.res.Problems = append(h.res.Problems, "the run was interrupted; the figures are incomplete")
	}
	return h.finish()
}

// statusOnly times opsvc's status commands at each -status-n, and nothing
// else.
func (h *harness) statusOnly() {
	p := opsvcPeer{bin: h.opt.opsvcBin}
	pr := &peerResult{Name: p.name()}
	h.res.Peers = append(h.res.Peers, pr)
	if err := p.available(); err != nil {
		pr.Skipped = err.Error()
		logf("%s: skipped (%v)", p.name(), err)
		return
	}
	pr.Version = p.version()
	for _, n := range h.opt.statusNs {
		if h.overBudget() || h.ctx.Err() != nil {
			return
		}
		h.statusCost(p, pr, n)
	}
}

func names(ps []peer) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.name()
	}
	return strings.Join(s, ", ")
}

func (h *harness) peers() []peer {
	all := []peer{
		opsvcPeer{bin: h.opt.opsvcBin},
		floorPeer{bin: h.opt.floorBin},
		supervisordPeer{},
		runitPeer{},
		s6Peer{},
		pm2Peer{bin: h.opt.pm2Bin},
	}
	if len(h.opt.only) == 0 {
		return all
	}
	var out []peer
	for _, p := range all {
		if slices.Contains(h.opt.only, p.name()) {
			out = append(out, p)
		}
	}
	return out
}

// prepare makes the work directory (on tmpfs when one is writable: file
// churn on a disk slows every supervisor and drifts between repetitions),
// copies the child there, opens the watcher and records the machine.
// wantFiles is the open-file limit the harness asks for: every supervisor
// holds a pipe or more per child, and the usual 1024 (or 20000) is too few
// for 10,000 children. The supervisors inherit it.
const wantFiles = 1 << 18

// raiseFileLimit raises RLIMIT_NOFILE as a user of a large install would be
// told to (root may raise the hard limit up to fs.nr_open).
func raiseFileLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil || r.Cur >= wantFiles {
		return
	}
	want := syscall.Rlimit{Cur: wantFiles, Max: max(r.Max, wantFiles)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		want = syscall.Rlimit{Cur: r.Max, Max: r.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil {
		logf("open files limit: %d", r.Cur)
	}
}

func (h *harness) prepare() error {
	raiseFileLimit()
	abs := func(p *string) {
		if *p != "" {
			if a, err := filepath.Abs(*p); err == nil {
				*p = a
			}
		}
	}
	abs(&h.opt.opsvcBin)
	abs(&h.opt.floorBin)
	abs(&h.opt.regBin)
	abs(&h.opt.childSrc)
	abs(&h.opt.out)
	abs(&h.opt.repo)
	if strings.Contains(h.opt.pm2Bin, "/") {
		abs(&h.opt.pm2Bin)
	}
	base := h.opt.workBase
	if base == "" {
		base = os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && syscall.Access("/dev/shm", 2) == nil && fsType("/dev/shm") == "tmpfs" {
			base = "/dev/shm"
		}
	}
	work, err := os.MkdirTemp(base, "ob.")
	if err != nil {
		return fmt.Errorf("make work directory: %w (use -workdir-base)", err)
	}
	h.work = work
	src, err := os.ReadFile(h.opt.childSrc)
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("read child program: %w (-child)", err)
	}
	h.child = filepath.Join(work, "child.sh")
	if err := os.WriteFile(h.child, src, 0o755); err != nil {
		os.RemoveAll(work)
		return err
	}
	if err := syscall.Mkfifo(filepath.Join(work, "child.fifo"), 0o600); err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("make child.fifo: %w", err)
	}
	var id [4]byte
	rand.Read(id[:])
	h.prefix = "ob-" + hex.EncodeToString(id[:]) + ":"
	h.w = newWatcher(h.prefix, h.opt.poll || os.Geteuid() != 0)
	h.res.Meta = h.machine()
	return nil
}

func fsType(path string) string {
	var st syscall.Statfs_t
	if syscall.Statfs(path, &st) != nil {
		return "unknown"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x9123683E:
		return "btrfs"
	case 0x58465342:
		return "xfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}

func firstLine(path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			v = strings.TrimLeft(v, " \t:=")
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return "?"
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (h *harness) machine() meta {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	gov := "go ?"
	if out, err := command(h.ctx, 20*time.Second, nil, "go", "version"); err == nil {
		gov = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	commit := ""
	if out, err := command(h.ctx, 20*time.Second, nil, "git", "-C", h.opt.repo, "rev-parse", "--short", "HEAD"); err == nil {
		commit = "commit " + strings.TrimSpace(string(out))
		if st, err := command(h.ctx, 20*time.Second, nil, "git", "-C", h.opt.repo, "status", "--porcelain", "--untracked-files=no"); err == nil && len(st) > 0 {
			commit += " with uncommitted changes"
		}
	}
	o := h.opt
	return meta{
		Date: time.Now().UTC().Format(time.RFC3339), Command: o.command, NProc: runtime.NumCPU(),
		Kernel: strings.TrimSpace(string(kernel)), OS: firstLine("/etc/os-release", "PRETTY_NAME="),
		CPU: firstLine("/proc/cpuinfo", "model name"), MemTotal: firstLine("/proc/meminfo", "MemTotal:"),
		GoVersion: gov, Commit: commit, Versions: map[string]string{}, Timing: h.w.method, WorkFS: fsType(h.work),
		LoadStart: loadavg(), NList: o.ns, DetailN: o.detailN, Reps: o.reps, StopReps: o.stopReps,
		CrashReps: o.crashReps, RapidReps: o.rapidReps, IdleS: o.idle.Seconds(), StopTimeout: o.stopTimeout.Seconds(),
		StatusOnly: o.statusOnly, ReexecOnly: o.reexecOnly,
	}
}

func (h *harness) cleanup() {
	if h.active != nil {
		logf("cleaning up %s", h.active.peer.name())
		h.down(h.active, nil)
	}
	if left := scanTagged(h.prefix); len(left) > 0 {
		ps := make([]proc, 0, len(left))
		for _, p := range left {
			ps = append(ps, p)
		}
		killProcs(ps, 5*time.Second)
	}
	h.w.close()
	if h.opt.keepWork {
		logf("work directory kept: %s", h.work)
	} else {
		os.RemoveAll(h.work)
	}
}

func (h *harness) overBudget() bool { return time.Since(h.begin) > h.opt.budget }

func (h *harness) finish() error {
	m := &h.res.Meta
	m.LoadEnd = loadavg()
	m.DurationS = time.Since(h.begin).Seconds()
	m.EventsLost = h.w.lostEvents()
	if m.EventsLost > 0 {
		h.res.Problems = append(h.res.Problems, fmt.Sprintf("%d process events were lost (kernel buffer or a slow reader); a figure may be late", m.EventsLost))
	}
	for _, p := range h.res.Peers {
		if p.Version != "" {
			m.Versions[p.Name] = p.Version
		}
	}
	var md strings.Builder
	h.res.writeMarkdown(&md)
	os.Stdout.WriteString(md.String())
	if err := os.MkdirAll(h.opt.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.opt.out, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(h.res, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.opt.out, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := h.res.plotScale(h.opt.out); err != nil {
		logf("plot: %v", err)
	}
	logf("done in %.0f s; results in %s", m.DurationS, h.opt.out)
	return nil
}

// ---------------------------------------------------------------- instances

func (h *harness) problem(pr *peerResult, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	logf("PROBLEM %s: %s", pr.Name, msg)
	pr.Problems = append(pr.Problems, strings.ReplaceAll(msg, h.work, "$WORK"))
}

// up sets up and launches an instance and times its cold start: from the
// launch to the exec of the N-th child (max over the N children of their
// last tagged exec), then until the supervisor's own status reports N
// running. It checks the count of tagged pids and that they run under the
// supervisor.
func (h *harness) up(p peer, pr *peerResult, n int, mode string) (*instance, coldSample, error) {
	var cs coldSample
	if left := scanTagged(h.prefix); len(left) > 0 {
		h.problem(pr, "%d tagged processes alive before setup; killed by pid", len(left))
		ps := make([]proc, 0, len(left))
		for _, q := range left {
			ps = append(ps, q)
		}
		killProcs(ps, 5*time.Second)
	}
	h.seq++
	in := &instance{h: h, peer: p, n: n, mode: mode, dir: filepath.Join(h.work, fmt.Sprintf("%s%d", p.name()[:2], h.seq)),
		probs: len(pr.Problems)}
	if err := os.MkdirAll(in.dir, 0o755); err != nil {
		return nil, cs, err
	}
	if err := p.setup(in); err != nil {
		os.RemoveAll(in.dir)
		return nil, cs, fmt.Errorf("setup: %w", err)
	}
	h.active = in
	sub := h.w.subscribe()
	defer h.w.unsubscribe(sub)
	t0 := monoNow()
	startErr := p.start(h.ctx, in)
	tCmd := monoNow()
	if startErr != nil {
		h.problem(pr, "N=%d: start: %v", n, startErr)
		if in.cmd == nil && len(in.roots) == 0 {
			return in, cs, startErr
		}
	}
	live := make(map[int]int64)
	first := int64(0)
	// At most 10 minutes: a supervisor that needs longer did not finish.
	limit := min(60+n/2, 600)
	deadline := monoNow() + int64(time.Duration(limit)*time.Second)
	for len(live) < n {
		e, err := next(sub, min(deadline, monoNow()+int64(time.Second)))
		if err != nil {
			if h.ctx.Err() == nil && monoNow() < deadline {
				continue
			}
			return in, cs, fmt.Errorf("n=%d: did not finish: %d of %d children alive after %ds", n, len(live), n, limit)
		}
		if e.exit {
			delete(live, e.pid)
			continue
		}
		live[e.pid] = e.ts
		if first == 0 {
			first = e.ts
		}
	}
	// Later exec events of the same pids (a tagged bash exec'ing again) move
	// their alive instant; fold what is already queued.
	for settle := monoNow() + int64(20*time.Millisecond); ; {
		e, err := next(sub, settle)
		if err != nil {
			break
		}
		if e.exit {
			delete(live, e.pid)
		} else if _, ok := live[e.pid]; ok {
			live[e.pid] = e.ts
		}
	}
	tAll := int64(0)
	for _, ts := range live {
		tAll = max(tAll, ts)
	}
	cs = coldSample{N: n, AllS: sec(tAll - t0), FirstS: sec(first - t0), CmdS: sec(tCmd - t0)}

	// The supervisor's own status command, polled from the moment all pids are alive.
	sdeadline := time.Now().Add(120 * time.Second)
	for {
		c, err := p.status(h.ctx, in)
		if errors.Is(err, errNoStatus) {
			break
		}
		if err == nil && c == n {
			cs.StatusS = ptr(sec(monoNow() - t0))
			break
		}
		if time.Now().After(sdeadline) || h.ctx.Err() != nil {
			return in, cs, fmt.Errorf("n=%d: own status shows %d running, not %d (last error: %v)", n, c, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(scanTagged(h.prefix)); got != n {
		return in, cs, fmt.Errorf("n=%d: %d tagged child pids alive, not %d", n, got, n)
	}
	return in, cs, nil
}

func sec(ns int64) float64 { return float64(ns) / 1e9 }

// down tears an instance down: a snapshot of its processes (pid, start
// time), the supervisor's own teardown, then SIGKILL by pid for whatever of
// the snapshot is left, reported as a problem.
func (h *harness) down(in *instance, pr *peerResult) {
	if in == nil {
		return
	}
	sup, children := tree(in.roots, h.prefix)
	snap := append(sup, children...)
	for _, p := range scanTagged(h.prefix) {
		snap = append(snap, p)
	}
	in.peer.teardown(in)
	if !waitGone(snap, 10*time.Second) {
		if k := killProcs(snap, 5*time.Second); k > 0 && pr != nil {
			h.problem(pr, "teardown left %d processes (supervisor or children); killed by pid", k)
		}
	}
	if in.cmd != nil && !in.waitRoot(5*time.Second) {
		in.cmd.Process.Kill()
		in.waitRoot(5 * time.Second)
	}
	if pr != nil && len(pr.Problems) > in.probs {
		h.keepLogs(in)
	}
	if !h.opt.keepWork {
		os.RemoveAll(in.dir)
	}
	h.active = nil
}

// keepLogs copies the tail of an instance's logs next to the results when
// something went wrong.
func (h *harness) keepLogs(in *instance) {
	dst := filepath.Join(h.opt.out, "logs", filepath.Base(in.dir))
	for _, name := range []string{"out.log", "supervisord.log", "pm2-cli.log", "pm2/pm2.log", "state/logs/opsvc.log"} {
		data, err := os.ReadFile(in.path(name))
		if err != nil {
			continue
		}
		if len(data) > 32<<10 {
			data = data[len(data)-32<<10:]
		}
		os.MkdirAll(dst, 0o755)
		os.WriteFile(filepath.Join(dst, strings.ReplaceAll(name, "/", "_")), []byte(strings.ReplaceAll(string(data), h.work, "$WORK")), 0o644)
	}
}

// ---------------------------------------------------------------- measurements

func (h *harness) runPeer(p peer) {
	pr := &peerResult{Name: p.name()}
	h.res.Peers = append(h.res.Peers, pr)
	if err := p.available(); err != nil {
		pr.Skipped = err.Error()
		logf("%s: skipped (%v)", p.name(), err)
		return
	}
	pr.Version = p.version()
	logf("%s: %s", p.name(), pr.Version)
	o := h.opt
	detailDone := false
	for _, n := range o.ns {
		if o.skipN(p.name(), n) {
			pr.NotRun = append(pr.NotRun, n)
			logf("%s: N=%d not run (-peer-max-n %d)", p.name(), n, o.scale.peerMaxN)
			continue
		}
		for rep := 1; rep <= o.repsAt(n); rep++ {
			if h.ctx.Err() != nil {
				return
			}
			if h.overBudget() {
				h.problem(pr, "skipped N=%d rep %d: the %v budget is spent", n, rep, o.budget)
				continue
			}
			in, cs, err := h.up(p, pr, n, "sleep")
			if err != nil {
				h.problem(pr, "cold start: %v", err)
				h.down(in, pr)
				continue
			}
			pr.Cold = append(pr.Cold, cs)
			status := "—"
			if cs.StatusS != nil {
				status = fmt.Sprintf("%.3fs", *cs.StatusS)
			}
			logf("%s: N=%d rep %d: all alive %.3fs (first %.3fs), status %s, start returned %.3fs", p.name(), n, rep, cs.AllS, cs.FirstS, status, cs.CmdS)
			h.sleep(o.settle)
			h.memory(in, pr, false)
			if n == slices.Max(o.ns) && rep == 1 {
				h.restartAll(in, pr)
			}
			if n == o.detailN && !detailDone {
				h.idleCPU(in, pr)
				h.crashes(in, pr)
				detailDone = true
			}
			if o.scale.on && rep == 1 {
				h.scaleAt(p, in, pr)
			}
			h.down(in, pr)
		}
	}
	if !detailDone && h.ctx.Err() == nil && !h.overBudget() {
		in, _, err := h.up(p, pr, o.detailN, "sleep")
		if err != nil {
			h.problem(pr, "detail instance: %v", err)
		} else {
			h.sleep(o.settle)
			h.idleCPU(in, pr)
			h.crashes(in, pr)
		}
		h.down(in, pr)
	}
	for _, mode := range []string{"graceful", "ignore"} {
		for rep := 1; rep <= o.stopReps; rep++ {
			if h.ctx.Err() != nil {
				return
			}
			if h.overBudget() {
				h.problem(pr, "skipped stop-all %s rep %d: the %v budget is spent", mode, rep, o.budget)
				break
			}
			s, ok := h.stopAll(p, pr, mode, p.stopAll)
			if !ok {
				continue
			}
			pr.Stop = append(pr.Stop, s)
			if s.GoneS != nil && *s.GoneS > o.longStop.Seconds() {
				if rep < o.stopReps {
					logf("%s: stop-all %s took over %v; not repeating it", p.name(), mode, o.longStop)
				}
				break
			}
		}
	}
}

func (h *harness) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.ctx.Done():
	}
}

func (h *harness) memory(in *instance, pr *peerResult, restarted bool) {
	sup, children := tree(in.roots, h.prefix)
	m := memSample{N: in.n, Restart: restarted, Procs: len(sup), Children: len(children)}
	for _, p := range sup {
		rss, pss := memKB(p.pid)
		m.RSSKB += rss
		m.PSSKB += pss
	}
	pr.Mem = append(pr.Mem, m)
	if len(children) != in.n {
		h.problem(pr, "N=%d: %d children found under the supervisor's processes, not %d", in.n, len(children), in.n)
	}
}

// restartAll SIGKILLs every child once, waits until all N are back and
// measures memory again: what restarts leave behind in the supervisor.
func (h *harness) restartAll(in *instance, pr *peerResult) {
	old := scanTagged(h.prefix)
	for _, p := range old {
		if p.alive() {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(60*time.Second + time.Duration(in.n)*10*time.Millisecond)
	for {
		fresh := 0
		for pid, p := range scanTagged(h.prefix) {
			if o, ok := old[pid]; !ok || o.start != p.start {
				fresh++
			}
		}
		if fresh == in.n {
			break
		}
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			h.problem(pr, "N=%d: %d of %d children back %v after killing them all", in.n, fresh, in.n, 60*time.Second+time.Duration(in.n)*10*time.Millisecond)
			return
		}
		h.sleep(100 * time.Millisecond)
	}
	h.sleep(h.opt.settle)
	h.memory(in, pr, true)
	logf("%s: N=%d: every child killed once and restarted", pr.Name, in.n)
}

func (h *harness) idleCPU(in *instance, pr *peerResult) {
	logf("%s: idle CPU, %v with N=%d", pr.Name, h.opt.idle, in.n)
	sup0, _ := tree(in.roots, h.prefix)
	start := make(map[proc]int64, len(sup0))
	for _, p := range sup0 {
		start[p] = cpuNS(p.pid)
	}
	b0, t0 := machineBusy()
	w0 := time.Now()
	h.sleep(h.opt.idle)
	window := time.Since(w0)
	b1, t1 := machineBusy()
	sup1, _ := tree(in.roots, h.prefix)
	var total int64
	for _, p := range sup1 {
		total += cpuNS(p.pid) - start[p]
	}
	busy := 0.0
	if t1 > t0 {
		busy = float64(b1-b0) / float64(t1-t0) * 100
	}
	pr.Idle = &idleSample{N: in.n, CPUS: sec(total), WindowS: window.Seconds(), MachBusyPc: busy}
	logf("%s: idle CPU %.2f ms in %.1f s (machine %.0f%% busy)", pr.Name, sec(total)*1000, window.Seconds(), busy)
}

// crashes: SIGKILL one child, time until a new pid with its tag has exec'd;
// each kill hits a program that has been up for a while. Then re-crashes:
// the restarted child is killed again at once and the second restart timed.
func (h *harness) crashes(in *instance, pr *peerResult) {
	logf("%s: crash → restart x%d, re-crash x%d", pr.Name, h.opt.crashReps, h.opt.rapidReps)
	for i := 1; i <= h.opt.crashReps && h.ctx.Err() == nil; i++ {
		idx := (i-1)%in.n + 1
		lat, _, err := h.killRestart(in.tag(idx), false)
		if err != nil {
			h.problem(pr, "crash %s: %v", prog(idx), err)
			continue
		}
		pr.Crash = append(pr.Crash, lat)
		h.sleep(100 * time.Millisecond)
	}
	for i := 1; i <= h.opt.rapidReps && h.ctx.Err() == nil; i++ {
		idx := (h.opt.crashReps+i-1)%in.n + 1
		lat, _, err := h.killRestart(in.tag(idx), true)
		if err != nil {
			h.problem(pr, "re-crash %s: %v", prog(idx), err)
			continue
		}
		pr.Recrash = append(pr.Recrash, lat)
		h.sleep(100 * time.Millisecond)
	}
	// every child back before the next measurement
	deadline := time.Now().Add(15 * time.Second)
	for len(scanTagged(h.prefix)) != in.n {
		if time.Now().After(deadline) {
			h.problem(pr, "not all %d children alive 15 s after the crash tests", in.n)
			break
		}
		h.sleep(100 * time.Millisecond)
	}
	c50, _ := median(pr.Crash)
	r50, _ := median(pr.Recrash)
	logf("%s: crash p50 %.1f ms, re-crash p50 %.1f ms", pr.Name, c50*1000, r50*1000)
}

// killRestart kills the child tagged tag and returns the time until a new
// pid with that tag exec'd (with twice, the second restart's).
func (h *harness) killRestart(tag string, twice bool) (float64, int, error) {
	old, n := findTag(tag)
	if n != 1 {
		return 0, 0, fmt.Errorf("%d live processes tagged %s, want 1", n, tag)
	}
	sub := h.w.subscribe()
	defer h.w.unsubscribe(sub)
	waitNew := func(not map[int]bool, t0 int64) (int, int64, error) {
		deadline := monoNow() + int64(15*time.Second)
		for {
			e, err := next(sub, deadline)
			if err != nil {
				return 0, 0, errors.New("no restart within 15 s")
			}
			if !e.exit && e.tag == tag && !not[e.pid] {
				return e.pid, e.ts, nil
			}
		}
	}
	t0 := monoNow()
	if !old.alive() {
		return 0, 0, errors.New("child gone before the kill")
	}
	syscall.Kill(old.pid, syscall.SIGKILL)
	pid, ts, err := waitNew(map[int]bool{old.pid: true}, t0)
	if err != nil || !twice {
		return sec(ts - t0), pid, err
	}
	t1 := monoNow()
	syscall.Kill(pid, syscall.SIGKILL)
	pid2, ts2, err := waitNew(map[int]bool{old.pid: true, pid: true}, t1)
	return sec(ts2 - t1), pid2, err
}

// stopAll brings up detailN children in mode, waits a second, runs stop (the
// supervisor's own stop-all) and times until every child has exited, also
// until stop returned; it counts children respawned meanwhile.
func (h *harness) stopAll(p peer, pr *peerResult, mode string, stop func(context.Context, *instance) error) (stopSample, bool) {
	s := stopSample{Mode: mode}
	in, _, err := h.up(p, pr, h.opt.detailN, mode)
	if err != nil {
		h.problem(pr, "stop-all %s: %v", mode, err)
		h.down(in, pr)
		return s, false
	}
	defer h.down(in, pr)
	h.sleep(time.Second)
	h.w.seed()
	live := make(map[int]bool)
	for pid := range scanTagged(h.prefix) {
		live[pid] = true
	}
	sub := h.w.subscribe()
	defer h.w.unsubscribe(sub)
	t0 := monoNow()
	if err := stop(h.ctx, in); err != nil {
		h.problem(pr, "stop-all %s: the stop command: %v", mode, err)
	}
	s.CmdS = sec(monoNow() - t0)
	var last int64
	deadline := monoNow() + int64(60*time.Second+time.Duration(h.opt.detailN)*(h.opt.stopTimeout+time.Second))
	for len(live) > 0 {
		e, err := next(sub, deadline)
		if err != nil {
			// missed events, or polling: look at /proc before giving up
			for pid := range live {
				if !(proc{pid: pid}).alive() {
					delete(live, pid)
				}
			}
			if len(live) > 0 {
				h.problem(pr, "stop-all %s: %d children still alive", mode, len(live))
				return s, true
			}
			last = monoNow()
			break
		}
		if e.exit {
			if live[e.pid] {
				delete(live, e.pid)
				last = e.ts
			}
		} else if !live[e.pid] {
			live[e.pid] = true
			s.Respawned++
		}
	}
	s.GoneS = ptr(sec(last - t0))
	if s.Respawned > 0 {
		h.problem(pr, "stop-all %s: the supervisor respawned %d children during stop-all", mode, s.Respawned)
	}
	logf("%s: stop-all %s: all gone %.3fs, command returned %.3fs", pr.Name, mode, *s.GoneS, s.CmdS)
	return s, true
}

// ---------------------------------------------------------------- Go benchmarks

// goBenchmarks takes the Go figures from -gobench, running those missing.
func (h *harness) goBenchmarks() {
	if h.opt.goBench != "" {
		if f, err := os.Open(h.opt.goBench); err == nil {
			maps := parseGoBench(f)
			f.Close()
			for k, v := range maps {
				h.res.GoBench[k] = v
			}
		}
	}
	want := map[string]string{
		"./supervisor":          "^BenchmarkPlan",
		"./worker":              "^BenchmarkRoundTrip$",
		"./supervisor/bus":      "^BenchmarkFanout$",
		"./supervisor/registry": "^BenchmarkUpdate$",
		"./worker/orchestrator": "^BenchmarkSessionStart$",
	}
	have := map[string]string{
		"./supervisor": "BenchmarkPlan/1000-steady", "./worker": "BenchmarkRoundTrip", "./supervisor/bus": "BenchmarkFanout",
		"./supervisor/registry": "BenchmarkUpdate", "./worker/orchestrator": "BenchmarkSessionStart",
	}
	for _, pkg := range []string{"./supervisor", "./worker", "./supervisor/bus", "./supervisor/registry", "./worker/orchestrator"} {
		if _, ok := h.res.GoBench[have[pkg]]; ok || h.ctx.Err() != nil {
			continue
		}
		logf("go test -bench %s %s", want[pkg], pkg)
		cmd := exec.CommandContext(h.ctx, "go", "test", "-run", "^$", "-bench", want[pkg], "-benchmem", pkg)
		cmd.Dir = h.opt.repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			h.res.Problems = append(h.res.Problems, fmt.Sprintf("go test -bench %s %s: %v: %s", want[pkg], pkg, err, lastLine(string(out))))
			continue
		}
		for k, v := range parseGoBench(strings.NewReader(string(out))) {
			h.res.GoBench[k] = v
		}
	}
}

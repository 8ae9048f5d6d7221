package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// opsvcOnly measures what only opsvc has: reload latency, the loop's latency
// while a subscriber stalls, the registry across processes, and other ways
// to stop everything.
func (h *harness) opsvcOnly() {
	pr := h.res.peer("opsvc")
	p := opsvcPeer{bin: h.opt.opsvcBin}
	if !h.overBudget() {
		h.reloadAndLoop(p, pr)
	}
	for _, n := range h.opt.statusNs {
		if !h.overBudget() && h.ctx.Err() == nil {
			h.statusCost(p, pr, n)
		}
	}
	for _, n := range h.opt.reloadNs {
		if n != h.opt.detailN && !h.overBudget() && h.ctx.Err() == nil {
			h.reloadAt(p, pr, n)
		}
	}
	if !h.overBudget() && h.ctx.Err() == nil {
		h.stopVariants(p, pr)
	}
	if h.ctx.Err() == nil {
		h.registry()
	}
}

// api is a client of the daemon's control socket.
func api(sock string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

type busEvent struct {
	Seq  uint64 `json:"seq"`
	Type string `json:"type"`
	Unit string `json:"unit"`
}

// lastSeq reads the stored events and returns the last seq.
func lastSeq(ctx context.Context, c *http.Client) (uint64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?follow=0", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var last uint64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e busEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Seq > last {
			last = e.Seq
		}
	}
	return last, sc.Err()
}

// follow streams the events after since into the returned channel until ctx ends.
func follow(ctx context.Context, c *http.Client, since uint64) (<-chan busEvent, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?follow=1&since="+strconv.FormatUint(since, 10), nil)
	cl := *c
	cl.Timeout = 0
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	ch := make(chan busEvent, 1<<14)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e busEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				select {
				case ch <- e:
				default:
				}
			}
		}
	}()
	return ch, nil
}

// reloadAndLoop runs 100 units, then (1) edits one unit file at a time the
// way an editor saves (temp file, rename) and times edit → the changed
// unit's new pid alive, counting unit.stopped events of the units not
// edited; (2) times GET /v1/units round trips (what `opsvc status --json`
// does, through the reconcile loop) while the daemon is quiet, while
// children are killed, and while the same churn goes on with one events
// subscriber that never reads.
func (h *harness) reloadAndLoop(p opsvcPeer, pr *peerResult) {
	o := &h.res.Opsvc
	n := h.opt.detailN
	in, _, err := h.up(p, pr, n, "sleep")
	if err != nil {
		h.problem(pr, "reload instance: %v", err)
		h.down(in, pr)
		return
	}
	defer h.down(in, pr)
	h.sleep(h.opt.settle)
	c := api(p.socket(in))
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()

	// (1) reload latency
	if !h.reloadLatency(ctx, p, pr, in, c, n, &o.ReloadS, &o.ReloadReadyS, &o.ReloadOthers, &o.ReloadEdited) {
		return
	}
	cancel()

	// (2) loop latency
	if h.ctx.Err() != nil {
		return
	}
	logf("opsvc: loop latency: quiet, churn, churn with a stalled subscriber")
	phase := 3 * time.Second
	o.LoopIdleMS = h.roundTrips(c, phase, nil)
	churn := func(stop <-chan struct{}) { h.churn(in, stop) }
	o.LoopChurnMS = h.roundTrips(c, phase, churn)
	stalled, err := stallSubscriber(p.socket(in))
	if err != nil {
		h.problem(pr, "loop latency: stalled subscriber: %v", err)
		return
	}
	before, _ := lastSeq(h.ctx, c)
	// longer, so that more events pass than a subscriber may fall behind by
	o.LoopStalledMS = h.roundTrips(c, 5*time.Second, churn)
	after, _ := lastSeq(h.ctx, c)
	o.StalledEvents = int(after - before)
	cut := stalled.cutOff()
	o.StalledCut = &cut
	for _, x := range []struct {
		name string
		xs   []float64
	}{{"quiet", o.LoopIdleMS}, {"churn", o.LoopChurnMS}, {"churn + stalled subscriber", o.LoopStalledMS}} {
		a, _ := median(x.xs)
		b, _ := p95(x.xs)
		logf("opsvc: loop latency %s: p50 %.2f ms, p95 %.2f ms (%d round trips)", x.name, a, b, len(x.xs))
	}
}

// reloadLatency edits one unit file at a time among the n of in the way an
// editor saves (temp file, rename) and times edit → the changed unit's new
// pid alive and its unit.ready event, counting unit.stopped events of the
// units not edited. It is false when the events could not be followed.
func (h *harness) reloadLatency(ctx context.Context, p opsvcPeer, pr *peerResult, in *instance, c *http.Client, n int,
	reloadS, readyS *[]float64, othersOut **int, editedOut *int) bool {
	since, err := lastSeq(ctx, c)
	if err != nil {
		h.problem(pr, "reload: read events: %v", err)
		return false
	}
	events, err := follow(ctx, c, since)
	if err != nil {
		h.problem(pr, "reload: follow events: %v", err)
		return false
	}
	reps := min(h.opt.reloadReps, n)
	if reps > 0 {
		logf("opsvc: reload latency, %d edits with %d units", reps, n)
	}
	edited := make(map[string]bool)
	others, editedStops := 0, 0
	count := func(e busEvent) {
		if e.Type == "unit.stopped" {
			if edited[e.Unit] {
				editedStops++
			} else {
				others++
			}
		}
	}
	sub := h.w.subscribe()
	for i := 1; i <= reps && ctx.Err() == nil; i++ {
		name := prog(i)
		tag := in.tag(i)
		old, _ := findTag(tag)
		edited[name] = true
		tmp := in.path("units/." + name + ".toml.tmp")
		if err := os.WriteFile(tmp, p.unitFile(in, i, fmt.Sprintf("environment = { BENCH_EDIT = \"%d\" }\n", i)), 0o644); err != nil {
			h.problem(pr, "reload: %v", err)
			break
		}
		t0 := monoNow()
		if err := os.Rename(tmp, in.path("units/"+name+".toml")); err != nil {
			h.problem(pr, "reload: %v", err)
			break
		}
		deadline := monoNow() + int64(10*time.Second)
		gotPid, gotReady := false, false
		for !(gotPid && gotReady) {
			var e procEvent
			var be busEvent
			var ok bool
			wait := time.Duration(deadline - monoNow())
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case e = <-sub:
				if !e.exit && e.tag == tag && e.pid != old.pid && !gotPid {
					*reloadS = append(*reloadS, sec(e.ts-t0))
					gotPid = true
				}
			case be, ok = <-events:
				if !ok {
					events = nil
					gotReady = true
					break
				}
				count(be)
				if be.Type == "unit.ready" && be.Unit == name && !gotReady {
					*readyS = append(*readyS, sec(monoNow()-t0))
					gotReady = true
				}
			case <-t.C:
			}
			t.Stop()
		}
		if !gotPid {
			h.problem(pr, "reload: %s did not restart within 10 s of the edit", name)
		}
		h.sleep(150 * time.Millisecond) // past the watcher's debounce: each edit is its own reload
	}
	h.w.unsubscribe(sub)
	// the events of the last edit, and any late stop of another unit
	for drain := time.After(500 * time.Millisecond); events != nil; {
		select {
		case be, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			count(be)
		case <-drain:
			events = nil
		}
	}
	if reps > 0 {
		*othersOut, *editedOut = &others, editedStops
		p50, _ := median(*reloadS)
		p, _ := p95(*reloadS)
		logf("opsvc: reload p50 %.1f ms, p95 %.1f ms; unit.stopped: %d edited, %d others", p50*1000, p*1000, editedStops, others)
	}
	return true
}

// reloadAt measures reload latency with n units on their own instance.
func (h *harness) reloadAt(p opsvcPeer, pr *peerResult, n int) {
	in, _, err := h.up(p, pr, n, "sleep")
	if err != nil {
		h.problem(pr, "reload instance of %d: %v", n, err)
		h.down(in, pr)
		return
	}
	defer h.down(in, pr)
	h.sleep(h.opt.settle)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	r := reloadRun{N: n}
	if h.reloadLatency(ctx, p, pr, in, api(p.socket(in)), n, &r.S, &r.ReadyS, &r.Others, &r.Edited) && len(r.S) > 0 {
		h.res.Opsvc.ReloadAt = append(h.res.Opsvc.ReloadAt, r)
	}
}

// statusCost times `opsvc status --json` and `opsvc list`, each run as a
// user would, with n units running.
func (h *harness) statusCost(p opsvcPeer, pr *peerResult, n int) {
	in, _, err := h.up(p, pr, n, "sleep")
	if err != nil {
		h.problem(pr, "status instance of %d: %v", n, err)
		h.down(in, pr)
		return
	}
	defer h.down(in, pr)
	h.sleep(h.opt.settle)
	r := statusRun{N: n, Load: loadavg()}
	logf("opsvc: %d units: timing status --json and list (load %s)", n, r.Load)
	for _, x := range []struct {
		args []string
		out  *[]float64
	}{{[]string{"status", "--json"}, &r.StatusJSONS}, {[]string{"list"}, &r.ListS}} {
		for range 10 {
			if h.ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			_, err := command(h.ctx, 60*time.Second, nil, p.bin, append([]string{"--socket", p.socket(in)}, x.args...)...)
			if err != nil {
				h.problem(pr, "opsvc %v with %d units: %v", x.args, n, err)
				break
			}
			*x.out = append(*x.out, time.Since(t0).Seconds())
		}
	}
	a, _ := median(r.StatusJSONS)
	b, _ := median(r.ListS)
	logf("opsvc: %d units: status --json p50 %.1f ms, list p50 %.1f ms", n, a*1000, b*1000)
	h.res.Opsvc.StatusAt = append(h.res.Opsvc.StatusAt, r)
}

// roundTrips times GET /v1/units every 10 ms for d, with load running meanwhile.
func (h *harness) roundTrips(c *http.Client, d time.Duration, load func(stop <-chan struct{})) []float64 {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if load != nil {
		wg.Go(func() { load(stop) })
	}
	var ms []float64
	end := time.Now().Add(d)
	for time.Now().Before(end) && h.ctx.Err() == nil {
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(h.ctx, "GET", "http://opsvc/v1/units", nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
		h.sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	return ms
}

// churn SIGKILLs one child every 5 ms, round robin, until stop: each kill is
// an exit, a restart and five or so events.
func (h *harness) churn(in *instance, stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	cur := scanTagged(h.prefix)
	byTag := make(map[string]proc, len(cur))
	for _, p := range cur {
		byTag[p.tag] = p
	}
	sub := h.w.subscribe()
	defer h.w.unsubscribe(sub)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
	drain:
		for {
			select {
			case e := <-sub:
				if !e.exit {
					byTag[e.tag] = proc{pid: e.pid, tag: e.tag}
				}
			default:
				break drain
			}
		}
		tag := in.tag(i%in.n + 1)
		if p, ok := byTag[tag]; ok && string(argv0(p.pid)) == tag {
			syscall.Kill(p.pid, syscall.SIGKILL)
			delete(byTag, tag)
		}
	}
}

// stalled is an events subscriber that never reads.
type stalled struct{ conn *net.UnixConn }

func stallSubscriber(sock string) (*stalled, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(4096)
	if _, err := conn.Write([]byte("GET /v1/events?since=0&follow=1 HTTP/1.1\r\nHost: opsvc\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	return &stalled{conn: conn}, nil
}

// cutOff reads what the stalled subscriber was sent and reports whether the
// daemon cut it off (bus.lagged); it closes the connection.
func (s *stalled) cutOff() bool {
	defer s.conn.Close()
	s.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	var tail []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		tail = append(tail, buf[:n]...)
		if bytes.Contains(tail, []byte(`"bus.lagged"`)) {
			return true
		}
		if len(tail) > 1<<10 {
			tail = tail[len(tail)-1<<10:]
		}
		if err != nil {
			return false
		}
	}
}

// stopVariants: the other ways to stop every opsvc unit, one run each in
// both child modes: the waiting `opsvc stop NAME…`, and SIGTERM to the
// daemon (its shutdown).
func (h *harness) stopVariants(p opsvcPeer, pr *peerResult) {
	o := &h.res.Opsvc
	limit := 60 * time.Second
	ways := []struct {
		via  string
		stop func(context.Context, *instance) error
	}{
		{"`opsvc stop NAME…` (waits)", func(ctx context.Context, in *instance) error { return p.stopAllWaiting(ctx, in, limit) }},
		{"SIGTERM to the daemon", func(_ context.Context, in *instance) error { return in.cmd.Process.Signal(syscall.SIGTERM) }},
	}
	for _, way := range ways {
		for _, mode := range []string{"graceful", "ignore"} {
			if h.ctx.Err() != nil || h.overBudget() {
				return
			}
			logf("opsvc: stop-all by %s, %s", way.via, mode)
			s, ok := h.stopAll(p, pr, mode, way.stop)
			if !ok {
				continue
			}
			s.Via = way.via
			if s.CmdS >= limit.Seconds()-0.5 {
				s.Note = fmt.Sprintf("the command did not return within %v", limit)
			}
			o.StopVariants = append(o.StopVariants, s)
		}
	}
}

// registry runs contrib/bench/regbench: 4 processes × a fixed count of
// locked updates, in the temp directory (on disk here, as the state directory
// is) and on the tmpfs work directory.
func (h *harness) registry() {
	if h.opt.regBin == "" {
		h.res.Problems = append(h.res.Problems, "registry benchmark not built (-regbench)")
		return
	}
	dirs := []string{}
	if d, err := os.MkdirTemp("", "opsvc-regbench."); err == nil {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, filepath.Join(h.work, "regbench"))
	for _, d := range dirs {
		fs := fsTypeOf(d)
		logf("opsvc: registry updates, 4 processes, state dir on %s", fs)
		out, err := command(h.ctx, 5*time.Minute, nil, h.opt.regBin, "-dir", d, "-procs", "4", "-n", "250")
		os.RemoveAll(d)
		if err != nil {
			h.res.Problems = append(h.res.Problems, fmt.Sprintf("regbench on %s: %v", fs, err))
			continue
		}
		var g regSample
		if err := json.Unmarshal(out, &g); err != nil {
			h.res.Problems = append(h.res.Problems, fmt.Sprintf("regbench on %s: %v", fs, err))
			continue
		}
		g.FS = fs
		h.res.Opsvc.Registry = append(h.res.Opsvc.Registry, g)
		logf("opsvc: registry %.0f updates/s on %s (%d lost)", g.PerSec, fs, g.Lost)
	}
}

// fsTypeOf is the file system of path, or of its parent when path does not exist yet.
func fsTypeOf(path string) string {
	if _, err := os.Stat(path); err != nil {
		path = filepath.Dir(path)
	}
	return fsType(path)
}

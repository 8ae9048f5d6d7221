package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// largeN is where a cold start is repeated largeReps times, not -reps.
const largeN = 5000

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// repsAt is how often a cold start of n is repeated.
func (o *options) repsAt(n int) int {
	if n >= largeN && o.scale.largeReps > 0 {
		return min(o.reps, o.scale.largeReps)
	}
	return o.reps
}

// skipN says whether the peer named name does not run n (-peer-max-n).
func (o *options) skipN(name string, n int) bool {
	return o.scale.peerMaxN > 0 && n > o.scale.peerMaxN && !slices.Contains([]string{"opsvc", "floor"}, name)
}

// fileLimit is the open-files limit the harness runs with (raised by
// raiseFileLimit); the supervisors inherit it.
func fileLimit() uint64 {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 1024
	}
	return r.Cur
}

// sharedOutput is the line opsvc's unit files get at n units: stderr =
// "stdout" where two pipes per unit would not fit the open-files limit
// (the daemon holds the read end of each), else nothing. The default is
// measured wherever it fits.
func sharedOutput(n int) string {
	if needsSharedOutput(n) {
		return "stderr = \"stdout\"\n"
	}
	return ""
}

// needsSharedOutput: 2 pipes per unit, plus room for the daemon's own files.
func needsSharedOutput(n int) bool { return uint64(2*n+1024) > fileLimit() }

// scaleAt measures, on an instance of n running children: idle CPU, crash →
// restart, and for opsvc its status commands, reload and the loop's latency
// while 1% of units crash-loop (last: it changes those units).
func (h *harness) scaleAt(p peer, in *instance, pr *peerResult) {
	s := scaleSample{N: in.n}
	if _, ok := p.(opsvcPeer); ok {
		s.SharedOut = needsSharedOutput(in.n)
	}
	defer func() { pr.Scale = append(pr.Scale, s) }()
	if h.ctx.Err() != nil {
		return
	}
	// idle CPU
	h.sleep(h.opt.settle)
	h.idleCPU(in, pr)
	if pr.Idle != nil && pr.Idle.N == in.n {
		s.IdleCPUS, s.IdleS = pr.Idle.CPUS, pr.Idle.WindowS
	}
	// crash → restart, on programs spread over the N
	kills := min(10, in.n)
	logf("%s: N=%d: crash → restart x%d", pr.Name, in.n, kills)
	for i := range kills {
		if h.ctx.Err() != nil {
			return
		}
		idx := i*(in.n/kills) + 1
		lat, _, err := h.killRestart(in.tag(idx), false)
		if err != nil {
			h.problem(pr, "N=%d: crash %s: %v", in.n, prog(idx), err)
			continue
		}
		s.CrashS = append(s.CrashS, lat)
		h.sleep(100 * time.Millisecond)
	}
	c50, _ := median(s.CrashS)
	logf("%s: N=%d: crash p50 %.1f ms", pr.Name, in.n, c50*1000)

	ops, ok := p.(opsvcPeer)
	if !ok || h.ctx.Err() != nil {
		return
	}
	// every child back before the status commands count them
	h.waitAllBack(in, pr)
	// status commands
	for _, x := range []struct {
		args []string
		out  *[]float64
	}{{[]string{"status", "--json"}, &s.StatusJSONS}, {[]string{"list"}, &s.ListS}} {
		for range 5 {
			if h.ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			if _, err := command(h.ctx, 120*time.Second, nil, ops.bin, append([]string{"--socket", ops.socket(in)}, x.args...)...); err != nil {
				h.problem(pr, "N=%d: opsvc %v: %v", in.n, x.args, err)
				break
			}
			*x.out = append(*x.out, time.Since(t0).Seconds())
		}
	}
	a, _ := median(s.StatusJSONS)
	b, _ := median(s.ListS)
	logf("opsvc: N=%d: status --json p50 %.1f ms, list p50 %.1f ms", in.n, a*1000, b*1000)

	// reload: 20 edits among the n (programs 1..20): with fewer, the p95 is
	// the slowest edit, which varies by tens of milliseconds from run to run
	c := api(ops.socket(in))
	ctx, cancel := context.WithCancel(h.ctx)
	reps := h.opt.reloadReps
	h.opt.reloadReps = min(reps, 20)
	var ready []float64
	var edited int
	h.reloadLatency(ctx, ops, pr, in, c, in.n, &s.ReloadS, &ready, &s.ReloadOther, &edited)
	h.opt.reloadReps = reps
	cancel()
	if h.ctx.Err() != nil {
		return
	}

	// loop latency with 1% crash-looping
	h.crashLoopLatency(ops, in, pr, c, &s)
}

// waitAllBack waits until n tagged children are alive.
func (h *harness) waitAllBack(in *instance, pr *peerResult) {
	deadline := time.Now().Add(30 * time.Second)
	for len(scanTagged(h.prefix)) < in.n {
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			h.problem(pr, "N=%d: not all children alive 30 s after the crash tests", in.n)
			return
		}
		h.sleep(100 * time.Millisecond)
	}
}

// crashLoopLatency turns 1% of the units (at least one) into programs that
// exit at once with an error and are restarted after 1 s, for ever, then
// times GET /v1/units/NAME (one unit's status, through the reconcile loop)
// every 10 ms for 10 s.
func (h *harness) crashLoopLatency(ops opsvcPeer, in *instance, pr *peerResult, c *http.Client, s *scaleSample) {
	k := max(1, in.n/100)
	logf("opsvc: N=%d: loop latency with %d units crash-looping", in.n, k)
	// the last k programs: the reload edits took the first ones
	for i := in.n - k + 1; i <= in.n; i++ {
		body := fmt.Appendf(nil, "[service]\nexec = [%s, \"crash\", %s]\nrestart = \"always\"\nrestart_delay = \"1s\"\nrestart_delay_max = \"1s\"\nstart_limit_burst = 100000\nstop_timeout = %q\n%s",
			strconv.Quote(in.h.child), strconv.Quote(in.tag(i)), h.opt.stopTimeout.String(), sharedOutput(in.n))
		tmp := in.path("units/." + prog(i) + ".toml.tmp")
		if err := os.WriteFile(tmp, body, 0o644); err != nil {
			h.problem(pr, "crash loop: %v", err)
			return
		}
		if err := os.Rename(tmp, in.path("units/"+prog(i)+".toml")); err != nil {
			h.problem(pr, "crash loop: %v", err)
			return
		}
	}
	s.CrashLoop = k
	// until the last of them has left its sleeping child behind
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := 0
		for _, q := range scanTagged(h.prefix) {
			if n, err := strconv.Atoi(strings.TrimPrefix(q.tag, h.prefix+"p")); err == nil && n > in.n-k {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			h.problem(pr, "N=%d: %d crash-looping units still run their old program 60 s after the edit", in.n, left)
			return
		}
		h.sleep(100 * time.Millisecond)
	}
	h.sleep(2 * time.Second) // the loops are going
	before := h.restartsOf(c, in, k)
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) && h.ctx.Err() == nil {
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(h.ctx, "GET", "http://opsvc/v1/units/"+prog(1), nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.LoopMS = append(s.LoopMS, float64(time.Since(t0).Microseconds())/1000)
			}
		}
		h.sleep(10 * time.Millisecond)
	}
	s.LoopRestarts = h.restartsOf(c, in, k) - before
	p99v, _ := p99(s.LoopMS)
	logf("opsvc: N=%d: loop p99 %.2f ms (%d round trips; %d restarts of the crash-looping units meanwhile)", in.n, p99v, len(s.LoopMS), s.LoopRestarts)
	if s.LoopRestarts == 0 {
		h.problem(pr, "N=%d: the crash-looping units did not restart during the loop-latency window", in.n)
	}
}

// restartsOf sums the restarts of the last k units.
func (h *harness) restartsOf(c *http.Client, in *instance, k int) int {
	total := 0
	for i := in.n - k + 1; i <= in.n; i++ {
		req, _ := http.NewRequestWithContext(h.ctx, "GET", "http://opsvc/v1/units/"+prog(i), nil)
		resp, err := c.Do(req)
		if err != nil {
			continue
		}
		var st struct {
			Restarts int `json:"restarts"`
		}
		decodeJSON(resp.Body, &st)
		resp.Body.Close()
		total += st.Restarts
	}
	return total
}

// decodeJSON decodes one JSON value of at most 1 MiB from r into v.
func decodeJSON(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v)
}

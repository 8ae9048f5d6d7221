package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// reexecAll measures opsvc's re-exec downtime at each -reexec-n unit count,
// and a full restart of the daemon at the same count for comparison.
func (h *harness) reexecAll() {
	pr := h.res.peer("opsvc")
	p := opsvcPeer{bin: h.opt.opsvcBin}
	for _, n := range h.opt.reexecNs {
		if h.overBudget() || h.ctx.Err() != nil {
			return
		}
		h.reexecAt(p, pr, n)
	}
}

// answers polls GET /v1/units back to back from one goroutine and keeps the
// instant each answer arrived.
type answers struct {
	mu   sync.Mutex
	at   []time.Time
	stop chan struct{}
	done chan struct{}
}

func pollUnits(ctx context.Context, c *http.Client) *answers {
	a := &answers{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			select {
			case <-a.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/units", nil)
			resp, err := c.Do(req)
			if err != nil {
				// The old image closed the connection: ask again at once,
				// the listening socket is kept across the exec.
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				a.mu.Lock()
				a.at = append(a.at, time.Now())
				a.mu.Unlock()
			}
		}
	}()
	return a
}

// firstAfter is the first answer after t, zero if none yet.
func (a *answers) firstAfter(t time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range a.at {
		if x.After(t) {
			return x
		}
	}
	return time.Time{}
}

// maxGap is the longest time between two answers (or from -> the first
// answer after it) from `from` on.
func (a *answers) maxGap(from time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, x := range a.at {
		if x.Before(from) {
			prev = x
			continue
		}
		gap = max(gap, x.Sub(prev))
		prev = x
	}
	return gap
}

func (a *answers) end() {
	close(a.stop)
	<-a.done
}

// reexecAt runs n units, re-execs the daemon -reexec-reps times (SIGUSR2),
// each time timing the signal → the first answer of GET /v1/units from the
// new image (the first after the event stream of the old one ended), and the
// longest gap a client polling GET /v1/units saw; every child must keep its
// pid. Then it stops and starts the daemon once (every worker restarted) and
// times the same.
func (h *harness) reexecAt(p opsvcPeer, pr *peerResult, n int) {
	in, _, err := h.up(p, pr, n, "sleep")
	if err != nil {
		h.problem(pr, "re-exec instance of %d: %v", n, err)
		h.down(in, pr)
		return
	}
	defer h.down(in, pr)
	h.sleep(h.opt.settle)
	c := api(p.socket(in))
	run := reexecRun{N: n, PIDsKept: true}
	before := scanTagged(h.prefix)
	for rep := 0; rep < h.opt.reexecReps && h.ctx.Err() == nil; rep++ {
		ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
		seq, err := lastSeq(ctx, c)
		if err != nil {
			cancel()
			h.problem(pr, "re-exec of %d: read the events: %v", n, err)
			return
		}
		evs, err := follow(ctx, c, seq)
		if err != nil {
			cancel()
			h.problem(pr, "re-exec of %d: follow the events: %v", n, err)
			return
		}
		poll := pollUnits(ctx, api(p.socket(in)))
		t0 := time.Now()
		in.cmd.Process.Signal(syscall.SIGUSR2)
		// The old image's streams end when it execs.
		for range evs {
		}
		tEOF := time.Now()
		var ans time.Time
		for ans.IsZero() && ctx.Err() == nil {
			h.sleep(time.Millisecond)
			ans = poll.firstAfter(tEOF)
		}
		h.sleep(100 * time.Millisecond) // answers after the first, for the gap
		poll.end()
		cancel()
		if ans.IsZero() {
			h.problem(pr, "re-exec of %d: the socket did not answer within 60 s of SIGUSR2", n)
			return
		}
		select {
		case <-in.done:
			h.problem(pr, "re-exec of %d: the daemon exited on SIGUSR2", n)
			return
		default:
		}
		run.DowntimeS = append(run.DowntimeS, ans.Sub(t0).Seconds())
		run.MaxGapS = append(run.MaxGapS, poll.maxGap(t0).Seconds())
		after := scanTagged(h.prefix)
		for pid, q := range before {
			if a, ok := after[pid]; !ok || a.start != q.start {
				run.PIDsKept = false
			}
		}
		if len(after) != len(before) {
			run.PIDsKept = false
		}
		logf("opsvc: re-exec with %d units: socket answers again after %.1f ms, longest gap %.1f ms, pids kept %v",
			n, run.DowntimeS[len(run.DowntimeS)-1]*1000, run.MaxGapS[len(run.MaxGapS)-1]*1000, run.PIDsKept)
	}
	if !run.PIDsKept {
		h.problem(pr, "re-exec of %d: children changed pid", n)
	}
	// The same count, stopped and started again.
	if h.ctx.Err() == nil {
		if s, all, err := h.fullRestart(p, in, n); err != nil {
			h.problem(pr, "restart of %d: %v", n, err)
		} else {
			run.RestartAnswerS, run.RestartAllS = ptr(s), ptr(all)
			logf("opsvc: stop + start with %d units: socket answers after %.1f ms, all running after %.1f ms", n, s*1000, all*1000)
		}
	}
	h.res.Opsvc.Reexec = append(h.res.Opsvc.Reexec, run)
}

// fullRestart stops the daemon (SIGTERM: every unit stopped) and starts it
// again on the same directories; it returns the time from SIGTERM until the
// socket answers again, and until every unit is active again.
func (h *harness) fullRestart(p opsvcPeer, in *instance, n int) (answer, all float64, err error) {
	t0 := time.Now()
	if !in.signalRoot(syscall.SIGTERM, 60*time.Second) {
		return 0, 0, fmt.Errorf("the daemon did not stop within 60 s of SIGTERM")
	}
	if err := p.start(h.ctx, in); err != nil {
		return 0, 0, err
	}
	c := api(p.socket(in))
	deadline := time.Now().Add(120 * time.Second)
	for answer == 0 {
		req, _ := http.NewRequestWithContext(h.ctx, "GET", "http://opsvc/v1/units", nil)
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answer = time.Since(t0).Seconds()
				break
			}
		}
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			return 0, 0, fmt.Errorf("the socket did not answer within 120 s")
		}
		h.sleep(time.Millisecond)
	}
	for {
		k, err := p.status(h.ctx, in)
		if err == nil && k == n {
			return answer, time.Since(t0).Seconds(), nil
		}
		if time.Now().After(deadline) || h.ctx.Err() != nil {
			return 0, 0, fmt.Errorf("%d of %d units active 120 s after the start (last error: %v)", k, n, err)
		}
		h.sleep(5 * time.Millisecond)
	}
}

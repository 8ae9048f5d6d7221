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
// pid. Then it replaces the daemon -replace-reps times with `opsvc daemon
// --replace` (a new process takes over), timed the same from its start.
// Then it stops and starts the daemon once (every worker restarted) and
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
	run := reexecRun{N: n, PIDsKept: true}
	before := scanTagged(h.prefix)
	kept := func() bool {
		after := scanTagged(h.prefix)
		for pid, q := range before {
			if a, ok := after[pid]; !ok || a.start != q.start {
				return false
			}
		}
		return len(after) == len(before)
	}
	for rep := 0; rep < h.opt.reexecReps && h.ctx.Err() == nil; rep++ {
		answer, gap, err := h.handover(p, in, func() error { return in.cmd.Process.Signal(syscall.SIGUSR2) })
		if err != nil {
			h.problem(pr, "re-exec of %d: %v", n, err)
			return
		}
		select {
		case <-in.done:
			h.problem(pr, "re-exec of %d: the daemon exited on SIGUSR2", n)
			return
		default:
		}
		run.DowntimeS, run.MaxGapS = append(run.DowntimeS, answer.Seconds()), append(run.MaxGapS, gap.Seconds())
		run.PIDsKept = run.PIDsKept && kept()
		logf("opsvc: re-exec with %d units: socket answers again after %.1f ms, longest gap %.1f ms, pids kept %v",
			n, answer.Seconds()*1000, gap.Seconds()*1000, run.PIDsKept)
	}
	if !run.PIDsKept {
		h.problem(pr, "re-exec of %d: children changed pid", n)
	}
	for rep := 0; rep < h.opt.replaceReps && h.ctx.Err() == nil; rep++ {
		answer, gap, err := h.handover(p, in, func() error { return p.replace(in) })
		if err != nil {
			h.problem(pr, "replace of %d: %v", n, err)
			break
		}
		run.ReplaceS, run.ReplaceGapS = append(run.ReplaceS, answer.Seconds()), append(run.ReplaceGapS, gap.Seconds())
		k := kept()
		all := k && (run.ReplacePIDsKept == nil || *run.ReplacePIDsKept)
		run.ReplacePIDsKept = &all
		logf("opsvc: daemon --replace with %d units: socket answers again after %.1f ms, longest gap %.1f ms, pids kept %v",
			n, answer.Seconds()*1000, gap.Seconds()*1000, k)
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

// handover runs start (a re-exec or a replacement of the daemon of in) while
// a client polls GET /v1/units, and returns the time from start to the first
// answer of the new daemon (the first after the event stream of the old one
// ended) and the longest time the client went without an answer.
func (h *harness) handover(p opsvcPeer, in *instance, start func() error) (answer, gap time.Duration, err error) {
	c := api(p.socket(in))
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	seq, err := lastSeq(ctx, c)
	if err != nil {
		return 0, 0, fmt.Errorf("read the events: %v", err)
	}
	evs, err := follow(ctx, c, seq)
	if err != nil {
		return 0, 0, fmt.Errorf("follow the events: %v", err)
	}
	poll := pollUnits(ctx, api(p.socket(in)))
	t0 := time.Now()
	if err := start(); err != nil {
		poll.end()
		return 0, 0, err
	}
	// The old daemon's streams end when it execs or exits.
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
	if ans.IsZero() {
		return 0, 0, fmt.Errorf("the socket did not answer within 60 s")
	}
	return ans.Sub(t0), poll.maxGap(t0), nil
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

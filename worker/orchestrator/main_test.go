//go:build linux

package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// mainVar makes the re-executed test binary run Main, as `opsvc worker orchestrator` does.
const mainVar = "OPSVC_ORCHESTRATOR_TEST_MAIN"

// waitFor bounds every wait in these tests; generous, for a loaded two-core machine.
const waitFor = 20 * time.Second

// noRaceExitSleep keeps a re-executed test binary built with -race (a session's guard, a worker)
// from sleeping a second before it exits, as the race detector does by default.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

func TestMain(m *testing.M) {
	// A session's guard is this binary re-executed (Options.Executable defaults to it), and so is
	// the worker of the process tests: both go through Main, as in opsvc.
	if os.Getenv(envGuard) != "" || os.Getenv(mainVar) != "" {
		os.Exit(Main(context.Background(), os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// desk stands in for the daemon of any number of workers: it grants session leases under a cap
// on how many run at once, and records chains in memory, as the daemon's registry does (pure
// bookkeeping: the real daemon side is tested in package supervisor). It can be told to fail
// requests as a full disk would.
type desk struct {
	mu sync.Mutex

	// leases
	maxConcurrent int               // 0: unlimited
	active        map[string]string // lease id → unit
	nextLease     int
	acquired      int
	released      int
	maxActive     int
	costs         float64

	// chains
	chains   []*chain.Chain
	failures map[string]int    // method → how many of its next requests fail with CodeUnavailable
	refuse   map[string]string // method → the error every request gets, with CodeInvalid
	requests map[string]int    // method → requests seen

	// budgets and settings sent with each lease
	dailyLeft *float64      // budget_left_usd, or nil
	limits    *chain.Limits // the current limits, or nil
	closed    bool          // refuse leases (a budget spent) until opened
	refusals  int           // leases refused while closed
}

func newDesk() *desk {
	return &desk{active: map[string]string{}, failures: map[string]int{}, refuse: map[string]string{}, requests: map[string]int{}}
}

// grant takes a lease for unitName if the cap allows.
func (d *desk) grant(unitName string) (string, bool) {
	if d.maxConcurrent > 0 && len(d.active) >= d.maxConcurrent {
		return "", false
	}
	d.nextLease++
	id := "l" + strconv.Itoa(d.nextLease)
	d.active[id] = unitName
	d.acquired++
	d.maxActive = max(d.maxActive, len(d.active))
	return id, true
}

// answer answers one request of unitName's worker.
func (d *desk) answer(unitName string, m worker.Message) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests[m.Method]++
	if text, ok := d.refuse[m.Method]; ok {
		return nil, worker.WithCode(worker.CodeInvalid, errors.New(text))
	}
	if d.failures[m.Method] > 0 {
		d.failures[m.Method]--
		return nil, worker.WithCode(worker.CodeUnavailable, errors.New("write registry.json.tmp: no space left on device"))
	}
	switch m.Method {
	case MethodAcquire:
		var p struct {
			ChainID string `json:"chain_id"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil || p.ChainID == "" {
			return nil, fmt.Errorf("session.acquire without chain_id: %s", m.Params)
		}
		if d.closed {
			d.refusals++
			return grant{Reason: "global_budget_usd 1.00 spent today", RetryMS: int64(time.Hour / time.Millisecond)}, nil
		}
		id, ok := d.grant(unitName)
		if ok {
			return grant{Granted: true, LeaseID: id, Limits: d.limits, BudgetLeftUSD: d.dailyLeft}, nil
		}
		if !ok {
			return grant{Reason: fmt.Sprintf("max_concurrent_sessions (%d) running", d.maxConcurrent), RetryMS: 20}, nil
		}
		return grant{Granted: true, LeaseID: id}, nil
	case MethodRelease:
		var p struct {
			LeaseID string  `json:"lease_id"`
			CostUSD float64 `json:"cost_usd"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			return nil, err
		}
		if _, ok := d.active[p.LeaseID]; !ok {
			return nil, fmt.Errorf("no lease %q", p.LeaseID)
		}
		delete(d.active, p.LeaseID)
		d.released++
		d.costs += p.CostUSD
		return map[string]any{"released": true}, nil
	case chain.MethodBegin:
		var p chain.Begin
		if err := json.Unmarshal(m.Params, &p); err != nil || p.Check() != nil || p.ID == "" {
			return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("bad chain.begin %s", m.Params))
		}
		if c := d.find(unitName, p.ID); c != nil { // asked again
			return chain.Begun{ID: c.ID, RestartedFrom: c.RestartedFrom, Branch: c.Branch}, nil
		}
		var out chain.Begun
		if p.Resume {
			resumed := map[string]bool{}
			for _, c := range d.chains {
				resumed[c.RestartedFrom] = true
			}
			for i := len(d.chains) - 1; i >= 0; i-- {
				c := d.chains[i]
				if c.Unit == unitName && (c.Status == chain.Running || c.Status == chain.Interrupted) && !resumed[c.ID] {
					c.SetStatus(chain.Interrupted, time.Now())
					out.RestartedFrom, out.Handoff, out.Branch = c.ID, c.LastHandoff(), c.Branch
					break
				}
			}
		}
		if out.Branch == "" {
			out.Branch = p.Branch
		}
		c := chain.New(p.ID, unitName, p.Task, p.ProjectDir, p.Config, out.RestartedFrom, time.Now())
		c.Branch = out.Branch
		d.chains = append(d.chains, c)
		out.ID = p.ID
		return out, nil
	case chain.MethodRecord:
		var p chain.RecordSession
		if err := json.Unmarshal(m.Params, &p); err != nil || p.Check() != nil {
			return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("bad session.record %s", m.Params))
		}
		c := d.find(unitName, p.ChainID)
		if c == nil {
			return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("no chain %q", p.ChainID))
		}
		if err := c.Record(p.Session, time.Now()); err != nil {
			return nil, err
		}
		return c.Totals(), nil
	case chain.MethodFinish:
		var p chain.Finish
		if err := json.Unmarshal(m.Params, &p); err != nil || p.Check() != nil {
			return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("bad chain.finish %s", m.Params))
		}
		c := d.find(unitName, p.ChainID)
		if c == nil {
			return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("no chain %q", p.ChainID))
		}
		if err := c.SetStatus(p.Status, time.Now()); err != nil {
			return nil, worker.WithCode(worker.CodeInvalid, err)
		}
		return c.Totals(), nil
	}
	return nil, fmt.Errorf("unknown method %q", m.Method)
}

// find returns unitName's chain id, or nil.
func (d *desk) find(unitName, id string) *chain.Chain {
	for _, c := range d.chains {
		if c.ID == id && c.Unit == unitName {
			return c
		}
	}
	return nil
}

// seed adds a chain, as an earlier worker would have left it.
func (d *desk) seed(c *chain.Chain) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.chains = append(d.chains, c)
}

func (d *desk) counts() (acquired, released, active, maxActive int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acquired, d.released, len(d.active), d.maxActive
}

// chainsOf returns copies of unitName's chains, oldest first.
func (d *desk) chainsOf(unitName string) []chain.Chain {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []chain.Chain
	for _, c := range d.chains {
		if c.Unit == unitName {
			cp := *c
			cp.Sessions = slices.Clone(c.Sessions)
			out = append(out, cp)
		}
	}
	return out
}

// daemonEnd is the test's end of one worker's channel: it answers requests from a desk (from a
// goroutine per request, as the daemon does) and queues everything else the worker sends.
type daemonEnd struct {
	ch   *worker.Channel
	msgs chan worker.Message
	seen []worker.Message
	done chan struct{}
}

func newDaemonEnd(t *testing.T, ch *worker.Channel, unitName string, d *desk) *daemonEnd {
	e := &daemonEnd{ch: ch, msgs: make(chan worker.Message, 100000), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		defer close(e.msgs)
		for m := range ch.Messages() {
			if m.Type == worker.TypeRequest {
				ch.Go(m.ID, func() (any, error) { return d.answer(unitName, m) })
				continue
			}
			e.msgs <- m
		}
	}()
	return e
}

// next returns the next message that match accepts, failing after waitFor.
func (d *daemonEnd) next(t *testing.T, what string, match func(worker.Message) bool) worker.Message {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				t.Fatalf("channel closed while waiting for %s", what)
			}
			d.seen = append(d.seen, m)
			if match(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s within %v", what, waitFor)
		}
	}
}

// event waits for the next event called name and returns its data.
func (d *daemonEnd) event(t *testing.T, name string) map[string]any {
	t.Helper()
	m := d.next(t, "event "+name, func(m worker.Message) bool { return m.Type == worker.TypeEvent && m.Name == name })
	var data map[string]any
	if err := json.Unmarshal(m.Data, &data); err != nil {
		t.Fatalf("event %s data %s: %v", name, m.Data, err)
	}
	return data
}

// rest returns every message seen and still queued, once the channel has closed.
func (d *daemonEnd) rest(t *testing.T) []worker.Message {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(waitFor):
		t.Fatal("channel still open")
	}
	for m := range d.msgs {
		d.seen = append(d.seen, m)
	}
	return d.seen
}

// eventNames lists the events among msgs, with the index of session events.
func eventNames(msgs []worker.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Type != worker.TypeEvent {
			continue
		}
		name := m.Name
		if name == chain.EventProgress {
			continue // see TestProgress
		}
		var d struct {
			Index  *int   `json:"index"`
			Status string `json:"status"`
		}
		json.Unmarshal(m.Data, &d)
		if d.Index != nil {
			name += " " + strconv.Itoa(*d.Index)
		}
		if d.Status != "" {
			name += " " + d.Status
		}
		out = append(out, name)
	}
	return out
}

// lineSink collects output lines, and hands them to whoever waits for one.
type lineSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	bytes int64
	lines chan string
}

func newLineSink() *lineSink { return &lineSink{lines: make(chan string, 100000)} }

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes += int64(len(p))
	if s.buf.Len() < 1<<20 {
		s.buf.Write(p)
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(p), "\n"), "\n") {
		select {
		case s.lines <- line:
		default:
		}
	}
	return len(p), nil
}

func (s *lineSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *lineSink) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// waitLine returns the next line starting with prefix.
func (s *lineSink) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case l := <-s.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no output line starting with %q within %v", prefix, waitFor)
		}
	}
}

// inRun is Run driven in this process over a real channel.
type inRun struct {
	d      *daemonEnd
	desk   *desk
	conn   *worker.Conn
	stdout *lineSink
	stderr *lineSink
	cancel context.CancelFunc
	done   chan error
}

// startRun starts Run for unit name with cfg, its state in state (shared by runs that share it),
// leases and chains from desk, and env as the sessions' base environment (PATH is added).
func startRun(t *testing.T, name, state string, desk *desk, cfg unit.Orchestrator, env ...string) *inRun {
	t.Helper()
	ch, child, err := worker.NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := worker.NewConn(child, worker.Options{OnEOF: func() {}, Logf: t.Logf})
	if err != nil {
		ch.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &inRun{
		d:      newDaemonEnd(t, ch, name, desk),
		desk:   desk,
		conn:   conn,
		stdout: newLineSink(),
		stderr: newLineSink(),
		cancel: cancel,
		done:   make(chan error, 1),
	}
	opts := Options{
		Conn:     conn,
		Config:   cfg,
		Unit:     name,
		StateDir: state,
		Env:      append([]string{"PATH=" + os.Getenv("PATH"), noRaceExitSleep}, env...),
		Logf:     func(format string, args ...any) { fmt.Fprintf(r.stderr, "orchestrator: "+format+"\n", args...) },
		Stdout:   r.stdout,
		Stderr:   r.stderr,
	}
	go func() { r.done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitFor):
			t.Errorf("Run did not return within %v of its context's end", waitFor)
		}
		conn.Close()
		ch.Close()
		<-r.d.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, r.stderr.String())
		}
	})
	return r
}

// wait returns Run's result.
func (r *inRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		t.Fatalf("Run still running after %v", waitFor)
	}
	return nil
}

// finish waits for Run to return nil, closes the channel and returns every message it sent.
func (r *inRun) finish(t *testing.T) []worker.Message {
	t.Helper()
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.conn.Close()
	return r.d.rest(t)
}

// onlyChain returns the one chain of unit name.
func onlyChain(t *testing.T, d *desk, name string) chain.Chain {
	t.Helper()
	cs := d.chainsOf(name)
	if len(cs) != 1 {
		t.Fatalf("unit %s has %d chains, want 1: %+v", name, len(cs), cs)
	}
	return cs[0]
}

// script writes an executable /bin/sh script.
func script(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// readFile returns a file's content, failing the test when it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// groupGone reports whether no live process is left in process group pgid; zombies waiting for
// a reaper count as gone.
func groupGone(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid pgrp ...
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return false
		}
	}
	return true
}

// waitGroupGone waits for process group pgid to be gone. Nothing signals that, so it looks
// every few milliseconds, within waitFor.
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(waitFor)
	for !groupGone(pgid) {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("process group %d still has live processes after %v", pgid, waitFor)
		}
	}
}

// pgidOf parses the "running pgid=N" line the test agents print.
func pgidOf(t *testing.T, line string) int {
	t.Helper()
	_, v, _ := strings.Cut(line, "pgid=")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 1 {
		t.Fatalf("no pgid in %q", line)
	}
	return n
}

// approx compares money.
func approx(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

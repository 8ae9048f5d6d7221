package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// Recorder records a worker's chain and its sessions. Under opsvc the daemon does, asked over the
// IPC channel (NewIPCRecorder): it is the registry's one writer. Each call is one atomic change,
// and asking again after a failure is harmless.
type Recorder interface {
	// Begin starts the chain, resuming the unit's newest incomplete one if p.Resume says so.
	Begin(ctx context.Context, p chain.Begin) (chain.Begun, error)
	// RecordSession records a session and returns the chain's totals after it.
	RecordSession(ctx context.Context, p chain.RecordSession) (chain.Totals, error)
	// Finish gives the chain its final status, or interrupted, and returns its totals.
	Finish(ctx context.Context, p chain.Finish) (chain.Totals, error)
}

// NewIPCRecorder returns the Recorder that asks the daemon at the other end of conn: requests
// chain.begin, session.record and chain.finish.
func NewIPCRecorder(conn *worker.Conn) Recorder { return ipcRecorder{conn} }

type ipcRecorder struct{ conn *worker.Conn }

func (r ipcRecorder) Begin(ctx context.Context, p chain.Begin) (chain.Begun, error) {
	var out chain.Begun
	return out, r.ask(ctx, chain.MethodBegin, p, &out)
}

func (r ipcRecorder) RecordSession(ctx context.Context, p chain.RecordSession) (chain.Totals, error) {
	var out chain.Totals
	return out, r.ask(ctx, chain.MethodRecord, p, &out)
}

func (r ipcRecorder) Finish(ctx context.Context, p chain.Finish) (chain.Totals, error) {
	var out chain.Totals
	return out, r.ask(ctx, chain.MethodFinish, p, &out)
}

func (r ipcRecorder) ask(ctx context.Context, method string, params, out any) error {
	raw, err := r.conn.Request(ctx, method, params)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the daemon's reply to %s is not what it should be (%v): %.200s", method, err, raw)
	}
	return nil
}

// localRecorder keeps the chain of a worker started outside opsvc in memory: there is no daemon
// to record it, and no earlier chain to resume.
type localRecorder struct {
	unit string
	mu   sync.Mutex
	c    *chain.Chain
}

func (r *localRecorder) Begin(_ context.Context, p chain.Begin) (chain.Begun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.ID == "" {
		p.ID = chain.NewID(time.Now())
	}
	if r.c == nil || r.c.ID != p.ID {
		r.c = chain.New(p.ID, r.unit, p.Task, p.ProjectDir, p.Config, "", time.Now())
		r.c.Branch = p.Branch
	}
	return chain.Begun{ID: r.c.ID, Branch: r.c.Branch}, nil
}

func (r *localRecorder) RecordSession(_ context.Context, p chain.RecordSession) (chain.Totals, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.chain(p.ChainID)
	if err != nil {
		return chain.Totals{}, err
	}
	if err := c.Record(p.Session, time.Now()); err != nil {
		return chain.Totals{}, err
	}
	return c.Totals(), nil
}

func (r *localRecorder) Finish(_ context.Context, p chain.Finish) (chain.Totals, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.chain(p.ChainID)
	if err != nil {
		return chain.Totals{}, err
	}
	if err := c.SetStatus(p.Status, time.Now()); err != nil {
		return chain.Totals{}, err
	}
	return c.Totals(), nil
}

func (r *localRecorder) chain(id string) (*chain.Chain, error) {
	if r.c == nil || r.c.ID != id {
		return nil, fmt.Errorf("no chain %q", id)
	}
	return r.c, nil
}

// Retrying a record the daemon could not take.
const (
	// requestTimeout bounds one attempt: a daemon that has not answered by then is asked again
	// (asking twice is harmless).
	requestTimeout = 30 * time.Second
	// retryFirst and retryMax bound the wait between attempts, doubled after each failure.
	retryFirst = 250 * time.Millisecond
	retryMax   = 30 * time.Second
)

// errDaemonGone is wrapped by record's error when the channel closed: nothing can be recorded any
// more.
var errDaemonGone = errors.New("the daemon is gone (the IPC channel closed)")

// retryable reports whether asking again may record what failed: the daemon said so (storage
// full, busy), or it did not answer in time.
func retryable(err error) bool {
	return worker.Unavailable(err) || errors.Is(err, context.DeadlineExceeded)
}

// record runs one request to the recorder until it succeeds, waiting longer after each failure
// the daemon says may pass; it says so in the status line and the log, where detail (what the
// request carries, such as a finished session's result) is written once, so that nothing is lost
// silently. It stops when the request cannot succeed, and with an error wrapping errDaemonGone
// when the channel has closed. A stop request does not cut it short: the daemon's stop deadline does.
func (r *runner) record(what, detail string, do func(ctx context.Context) error) error {
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		err := do(ctx)
		cancel()
		switch {
		case err == nil:
			if attempt > 1 {
				r.logf("%s: done at attempt %d", what, attempt)
			}
			return nil
		case r.channelGone():
			return fmt.Errorf("%s: %w", what, errDaemonGone)
		case !retryable(err):
			return fmt.Errorf("%s: %w", what, err)
		}
		if attempt == 1 {
			r.logf("%s: %v; asking again, at most every %v, until the daemon takes it (%s)", what, err, retryMax, detail)
		} else {
			r.logf("%s: attempt %d: %v; again in %v", what, attempt, err, delay)
		}
		r.status(fmt.Sprintf("%s failed (%v); trying again in %v", what, err, delay))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.opts.Conn.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, errDaemonGone)
		}
		delay = min(2*delay, retryMax)
	}
}

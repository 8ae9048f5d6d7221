package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opsvc/opsvc/worker"
)

// maxGrace is the longest a session gets between SIGINT and SIGKILL.
const maxGrace = 5 * time.Second

// graceFor is the time a session gets between SIGINT and SIGKILL when the daemon gives the worker
// deadline to stop: half of it, at most maxGrace; maxGrace when there is no deadline.
func graceFor(deadline time.Duration) time.Duration {
	if deadline <= 0 {
		return maxGrace
	}
	return min(deadline/2, maxGrace)
}

// stopWatch turns the ways a worker is asked to stop (a shutdown message, with or without drain;
// EOF on the channel; the end of Run's context) into two channels: any, closed on the first of
// them, and hard, closed when the running session must be interrupted rather than finished.
type stopWatch struct {
	any  chan struct{}
	hard chan struct{}
	// ctx is cancelled with any: requests to the daemon give up when the worker is to stop.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	reason string
	grace  time.Duration

	quit chan struct{}
	done chan struct{}
}

// watchStop starts watching. notify, when not nil, is called (from the watching goroutine) on the
// first request and again when a drain turns into an interruption; drain says which it is.
func watchStop(ctx context.Context, conn *worker.Conn, notify func(drain bool)) *stopWatch {
	s := &stopWatch{
		any:   make(chan struct{}),
		hard:  make(chan struct{}),
		grace: maxGrace,
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.watch(ctx, conn, notify)
	return s
}

func (s *stopWatch) watch(ctx context.Context, conn *worker.Conn, notify func(drain bool)) {
	defer close(s.done)
	shutdown := conn.Shutdown()
	for {
		select {
		case d, ok := <-shutdown:
			shutdown = nil
			if !ok {
				continue
			}
			if conn.ShutdownDrain() {
				s.trigger(false, "the daemon asked the worker to stop after the running session (drain)", 0, notify)
				continue
			}
			s.trigger(true, "the daemon asked the worker to stop", graceFor(d), notify)
			return
		case <-conn.Done():
			s.trigger(true, "the daemon closed the IPC channel (it is gone)", maxGrace, notify)
			return
		case <-ctx.Done():
			s.trigger(true, fmt.Sprintf("the worker was cancelled (%v)", context.Cause(ctx)), maxGrace, notify)
			return
		case <-s.quit:
			return
		}
	}
}

// trigger records a request; hard ones interrupt the running session.
func (s *stopWatch) trigger(hard bool, reason string, grace time.Duration, notify func(drain bool)) {
	s.mu.Lock()
	first := s.reason == ""
	if first || hard {
		s.reason = reason
	}
	if hard {
		s.grace = grace
	}
	s.mu.Unlock()
	if first {
		close(s.any)
		s.cancel()
	}
	if hard {
		close(s.hard)
	}
	if notify != nil {
		notify(!hard)
	}
}

// requested reports whether the worker has been asked to stop, in any way.
func (s *stopWatch) requested() bool {
	select {
	case <-s.any:
		return true
	default:
		return false
	}
}

// why says why the worker stops, or "" when it was not asked to.
func (s *stopWatch) why() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// graceTime is the time between SIGINT and SIGKILL for the running session; valid once hard is
// closed.
func (s *stopWatch) graceTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grace
}

// close stops the watching goroutine and waits for it.
func (s *stopWatch) close() {
	close(s.quit)
	<-s.done
	s.cancel()
}

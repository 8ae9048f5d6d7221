package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// ChainStore records the chains of orchestrator units for their workers, which ask over their
// IPC channel (requests chain.begin, session.record and chain.finish): the daemon is the one
// writer of the registry. *registry.Store, the registry file, is one; a shared store can replace
// it without touching the workers. Each call is one atomic change, made for the unit named, to
// that unit's chains only. A call may block on storage (a file lock, a slow disk), so the daemon
// makes it off its loop. An error wrapping registry.ErrNotFound or registry.ErrNotAllowed says
// that asking again will not help; any other, that the storage failed and may work later.
type ChainStore interface {
	BeginChain(unit string, p chain.Begin, now time.Time) (chain.Begun, error)
	RecordSession(unit string, p chain.RecordSession, now time.Time) (chain.Totals, error)
	FinishChain(unit string, p chain.Finish, now time.Time) (chain.Totals, error)
}

// interruptOrphans marks interrupted the running chains of unit ("" for all) that began before
// now, and publishes chain.interrupted for each. It blocks on storage.
func (s *Supervisor) interruptOrphans(unit string, now time.Time, reason string) {
	store := s.opts.Registry
	if store == nil {
		return
	}
	ids, err := store.InterruptOrphans(unit, now, reason, now)
	if err != nil {
		s.logf("registry: mark the chains of a worker that is gone interrupted: %v", err)
	}
	for _, id := range ids {
		s.emit(unit, 0, api.ChainInterrupted{ChainEnd: api.ChainEnd{ChainID: id, Status: string(chain.Interrupted), Reason: reason}})
	}
}

// workerGone runs on the loop when a unit's process was reaped: the running chains of an
// orchestrator unit are marked interrupted, off the loop, since no worker is left to end them (a
// unit with resume = true continues them when it starts again).
func (s *Supervisor) workerGone(name string) {
	d := s.desired[name]
	if d.Unit == nil || d.Unit.Service.Type != unit.TypeOrchestrator || s.opts.Registry == nil {
		return
	}
	go s.interruptOrphans(name, s.now(), "its worker exited without ending it")
}

// chainStore is where chain requests are recorded, or nil.
func (s *Supervisor) chainStore() ChainStore {
	if s.opts.Registry == nil {
		return nil
	}
	return s.opts.Registry
}

// chainRequest takes a chain request of unit name's worker, and reports whether m was one. It runs
// on the loop; the change is made, and answered, from a goroutine of its own (at most a few at once
// per worker, see worker.Channel.Go), so that storage never holds up the loop.
func (s *Supervisor) chainRequest(name string, ch *worker.Channel, m worker.Message) bool {
	switch m.Method {
	case chain.MethodBegin, chain.MethodRecord, chain.MethodFinish:
	default:
		return false
	}
	refuse := func(format string, args ...any) bool {
		err := worker.WithCode(worker.CodeInvalid, fmt.Errorf(format, args...))
		if rerr := ch.Reply(m.ID, nil, err); rerr != nil {
			s.logf("%s: reply to %s: %v", name, m.Method, rerr)
		}
		return true
	}
	if d := s.desired[name]; d.Unit == nil || d.Unit.Service.Type != unit.TypeOrchestrator {
		return refuse("%s: only orchestrator units record chains", m.Method)
	}
	store := s.chainStore()
	if store == nil {
		return refuse("%s: this daemon keeps no registry", m.Method)
	}
	method, params := m.Method, m.Params
	ch.Go(m.ID, func() (any, error) {
		out, err := answerChain(store, name, method, params, s.now())
		if err != nil && !errors.Is(err, errRefused) {
			s.logf("%s: %s: %v (the worker asks again)", name, method, err)
		}
		return out, err
	})
	return true
}

// errRefused marks a chain request that cannot succeed.
var errRefused = errors.New("request refused")

// answerChain makes the change a chain request asks for. Its error carries a reply code: invalid
// for a request that cannot succeed, unavailable for a storage failure.
func answerChain(store ChainStore, name, method string, params json.RawMessage, now time.Time) (any, error) {
	var (
		out any
		err error
	)
	switch method {
	case chain.MethodBegin:
		out, err = change(params, (*chain.Begin).Check, func(p chain.Begin) (chain.Begun, error) { return store.BeginChain(name, p, now) })
	case chain.MethodRecord:
		out, err = change(params, (*chain.RecordSession).Check, func(p chain.RecordSession) (chain.Totals, error) { return store.RecordSession(name, p, now) })
	case chain.MethodFinish:
		out, err = change(params, (*chain.Finish).Check, func(p chain.Finish) (chain.Totals, error) { return store.FinishChain(name, p, now) })
	default:
		err = fmt.Errorf("%w: unknown method %q", errRefused, method)
	}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, errRefused), errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNotAllowed):
		return nil, worker.WithCode(worker.CodeInvalid, fmt.Errorf("%s: %w", method, err))
	default:
		return nil, worker.WithCode(worker.CodeUnavailable, fmt.Errorf("%s: %w", method, err))
	}
}

// change decodes a request's params, checks them and makes the change. Params that are missing,
// are not the request's kind of object or fail the check are refused.
func change[P, R any](params json.RawMessage, check func(*P) error, do func(P) (R, error)) (any, error) {
	var p P
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: no params", errRefused)
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, fmt.Errorf("%w: params: %v", errRefused, err)
	}
	if err := check(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", errRefused, err)
	}
	return do(p)
}

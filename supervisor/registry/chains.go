package registry

import (
	"errors"
	"fmt"
	"slices"
	"time"

	rec "github.com/opsvc/opsvc/worker/chain"
)

// ErrNotAllowed is wrapped by the error about a change the registry refuses whatever the state of
// its storage: a chain that has ended taking another status, or a chain id another unit holds.
var ErrNotAllowed = errors.New("registry: change not allowed")

// The requests of an orchestrator worker (package chain's chain.begin, session.record and
// chain.finish), each one Update: the daemon answers them for the unit at the other end of the
// channel, which is the only unit whose chains they touch. They block while another Update holds
// the lock and while the file is written: run them off any loop that must not wait.

// BeginChain starts a chain of unit as p asks (see Registry.Begin).
func (s *Store) BeginChain(unit string, p rec.Begin, now time.Time) (rec.Begun, error) {
	var out rec.Begun
	err := s.Update(func(r *Registry) error {
		var err error
		out, err = r.Begin(unit, p, now)
		return err
	})
	return out, err
}

// RecordSession records a session of one of unit's chains (see Registry.RecordFor).
func (s *Store) RecordSession(unit string, p rec.RecordSession, now time.Time) (rec.Totals, error) {
	var out rec.Totals
	err := s.Update(func(r *Registry) error {
		var err error
		out, err = r.RecordFor(unit, p, now)
		return err
	})
	return out, err
}

// FinishChain gives one of unit's chains its final status, or interrupted (see
// Registry.FinishFor).
func (s *Store) FinishChain(unit string, p rec.Finish, now time.Time) (rec.Totals, error) {
	var out rec.Totals
	err := s.Update(func(r *Registry) error {
		var err error
		out, err = r.FinishFor(unit, p, now)
		return err
	})
	return out, err
}

// Begin creates a running chain of unit from p. With p.Resume, the unit's newest incomplete chain
// (see FindIncomplete) is marked interrupted first and becomes the new chain's restarted_from,
// and the reply carries its newest non-empty handoff file. With p.ID set, a chain of that id must
// not exist yet, unless it is unit's: then the request was made before (its reply lost) and Begin
// answers as it did then, changing nothing.
func (r *Registry) Begin(unit string, p rec.Begin, now time.Time) (rec.Begun, error) {
	if p.ID != "" {
		if c := r.Find(p.ID); c != nil {
			if c.Unit != unit {
				return rec.Begun{}, fmt.Errorf("%w: begin chain %q for unit %s: the id is taken by a chain of unit %s (choose another id)", ErrNotAllowed, p.ID, unit, c.Unit)
			}
			out := rec.Begun{ID: c.ID, RestartedFrom: c.RestartedFrom, Branch: c.Branch}
			if old := r.Find(c.RestartedFrom); old != nil {
				out.Handoff = old.LastHandoff()
			}
			return out, nil
		}
	}
	var out rec.Begun
	if p.Resume {
		if inc := r.resumable(unit); len(inc) > 0 {
			old := inc[len(inc)-1]
			if old.Status == ChainRunning && old.Host != r.Host && r.lost(old) {
				// Its host lost the unit: nothing there will end it.
				interrupt(old, "its host "+old.Host+" lost the unit", now)
			} else if err := r.SetStatus(old.ID, ChainInterrupted, now); err != nil {
				return rec.Begun{}, err
			}
			out.RestartedFrom = old.ID
			out.Handoff = old.LastHandoff()
			out.Branch = old.Branch
		}
	}
	if out.Branch == "" {
		out.Branch = p.Branch
	}
	var c *Chain
	if p.ID != "" {
		c = rec.New(p.ID, unit, p.Task, p.ProjectDir, p.Config, out.RestartedFrom, now)
		r.Chains = append(r.Chains, c)
	} else {
		c = r.CreateChain(unit, p.Task, p.ProjectDir, p.Config, out.RestartedFrom, now)
	}
	c.Branch = out.Branch
	out.ID = c.ID
	return out, nil
}

// resumable returns the unit's incomplete chains that this host may resume: on a fleet
// (r.Host set), a chain another host still runs is that host's, unless that host lost the fleet
// unit it ran the chain for (see Registry.Lost).
func (r *Registry) resumable(unit string) []*Chain {
	inc := r.FindIncomplete(unit)
	if r.Host == "" {
		return inc
	}
	return slices.DeleteFunc(inc, func(c *Chain) bool { return c.Status == ChainRunning && c.Host != r.Host && !r.lost(c) })
}

func (r *Registry) lost(c *Chain) bool { return r.Lost != nil && r.Lost(c) }

// resumedBy returns the chain that resumed c, or nil.
func (r *Registry) resumedBy(c *Chain) *Chain {
	for _, n := range r.Chains {
		if n.RestartedFrom == c.ID {
			return n
		}
	}
	return nil
}

// refuseResumed refuses a change of c once another chain has resumed it: what is left of its
// worker (on a host that lost its fleet unit, say) no longer speaks for it.
func (r *Registry) refuseResumed(c *Chain, op string) error {
	if n := r.resumedBy(c); n != nil {
		return notAllowed{fmt.Errorf("registry: %s chain %q: chain %s (host %q) has resumed it; it takes no more changes (nothing to do: the chain goes on as %s)", op, c.ID, n.ID, n.Host, n.ID)}
	}
	return nil
}

// RecordFor records p.Session in chain p.ChainID, which must be unit's, and returns the chain's
// totals after it.
func (r *Registry) RecordFor(unit string, p rec.RecordSession, now time.Time) (rec.Totals, error) {
	c, err := r.findOf(unit, p.ChainID, "record a session of")
	if err != nil {
		return rec.Totals{}, err
	}
	if err := r.refuseResumed(c, "record a session of"); err != nil {
		return rec.Totals{}, err
	}
	if err := r.RecordSession(c.ID, p.Session, now); err != nil {
		return rec.Totals{}, notAllowed{err}
	}
	return c.Totals(), nil
}

// FinishFor sets the status of chain p.ChainID, which must be unit's, and returns its totals. A
// chain that has ended keeps its status: finishing it again with the same one changes nothing,
// with another one is an error wrapping ErrNotAllowed.
func (r *Registry) FinishFor(unit string, p rec.Finish, now time.Time) (rec.Totals, error) {
	c, err := r.findOf(unit, p.ChainID, "finish")
	if err != nil {
		return rec.Totals{}, err
	}
	if p.Status == ChainInterrupted && c.Status == ChainInterrupted && r.resumedBy(c) != nil {
		return c.Totals(), nil // as it was: interrupted, and resumed
	}
	if err := r.refuseResumed(c, "finish"); err != nil {
		return rec.Totals{}, err
	}
	final := c.Status.Final()
	if err := r.SetStatus(c.ID, p.Status, now); err != nil {
		return rec.Totals{}, notAllowed{err}
	}
	if !final && p.Reason != "" {
		c.Reason = p.Reason
	}
	return c.Totals(), nil
}

// InterruptOrphans marks interrupted, with reason, the running chains of unit ("" for every unit)
// that started before before: their worker is gone, so nothing will record their end. It returns
// them.
func (r *Registry) InterruptOrphans(unit string, before time.Time, reason string, now time.Time) []*Chain {
	var out []*Chain
	for _, c := range r.Chains {
		if c.Status != ChainRunning || (unit != "" && c.Unit != unit) || c.StartedAt.After(before) {
			continue
		}
		if interrupt(c, reason, now) {
			out = append(out, c)
		}
	}
	return out
}

// interrupt marks interrupted, with reason, a running chain whose worker is gone, and its
// running sessions; it reports whether it did.
func interrupt(c *Chain, reason string, now time.Time) bool {
	lastSeen := c.UpdatedAt
	if c.SetStatus(ChainInterrupted, now) != nil {
		return false
	}
	c.Reason = reason
	c.EndAt(lastSeen) // its last sign of life, not when the loss was noticed
	for i := range c.Sessions {
		if s := &c.Sessions[i]; s.Status == SessionRunning {
			s.Status, s.Reason, s.Error = SessionInterrupted, rec.ReasonGone, "interrupted: "+reason
		}
	}
	return true
}

// InterruptOrphans marks interrupted the running chains of unit ("" for all) that started before
// before, in one Update, and returns their ids (see Registry.InterruptOrphans).
func (s *Store) InterruptOrphans(unit string, before time.Time, reason string, now time.Time) ([]string, error) {
	var ids []string
	err := s.Update(func(r *Registry) error {
		ids = nil
		for _, c := range r.InterruptOrphans(unit, before, reason, now) {
			ids = append(ids, c.ID)
		}
		return nil
	})
	return ids, err
}

// notAllowed is a refused change: its text, and errors.Is ErrNotAllowed.
type notAllowed struct{ err error }

func (e notAllowed) Error() string   { return e.err.Error() }
func (e notAllowed) Unwrap() []error { return []error{ErrNotAllowed, e.err} }

// findOf returns unit's chain id; a chain of another unit is not found either.
func (r *Registry) findOf(unit, id, op string) (*Chain, error) {
	c := r.Find(id)
	if c == nil || c.Unit != unit {
		return nil, fmt.Errorf("%s chain %q of unit %s: %w", op, id, unit, ErrNotFound)
	}
	return c, nil
}

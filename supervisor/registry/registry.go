// Package registry keeps the crash-safe, flock-protected record of orchestrator
// chains and sessions (STATE/registry.json). It never starts processes.
package registry

import (
	"errors"
	"fmt"
	"slices"
	"time"

	rec "github.com/opsvc/opsvc/worker/chain"
)

// ErrNotFound is wrapped by every error about a chain id the registry does not hold.
var ErrNotFound = errors.New("registry: no such chain")

// The record types are package chain's (imported as rec), shared with the orchestrator worker, which reports its
// chains to the daemon over the IPC channel; the names here keep the registry's own API whole.
type (
	// ChainStatus is where a chain is in its life.
	ChainStatus = rec.Status
	// SessionStatus is the outcome of one session of a chain.
	SessionStatus = rec.SessionStatus
	// ChainConfig is the limits a chain was started with.
	ChainConfig = rec.Config
	// Chain is one run of an orchestrator unit.
	Chain = rec.Chain
	// Session is one run of the agent command within a chain.
	Session = rec.Session
)

// Chain statuses.
const (
	ChainRunning        = rec.Running
	ChainComplete       = rec.Complete
	ChainFailed         = rec.Failed
	ChainInterrupted    = rec.Interrupted
	ChainExhausted      = rec.Exhausted
	ChainBudgetExceeded = rec.BudgetExceeded
)

// Session statuses; SessionRunning marks a session in progress.
const (
	SessionRunning     = rec.SessionRunning
	SessionComplete    = rec.SessionComplete
	SessionError       = rec.SessionError
	SessionInterrupted = rec.SessionInterrupted
)

// ParseChainStatus returns the chain status named s.
func ParseChainStatus(s string) (ChainStatus, error) { return rec.ParseStatus(s) }

// ParseSessionStatus returns the session status named s.
func ParseSessionStatus(s string) (SessionStatus, error) { return rec.ParseSessionStatus(s) }

// ChainSummary is a chain as `opsvc chains ls --json` lists it: Sessions is
// the number of sessions.
type ChainSummary struct {
	ID              string      `json:"id"`
	Unit            string      `json:"unit"`
	Task            string      `json:"task"`
	Status          ChainStatus `json:"status"`
	StartedAt       time.Time   `json:"started_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
	RestartedFrom   string      `json:"restarted_from"`
	Sessions        int         `json:"sessions"`
	TotalCostUSD    float64     `json:"total_cost_usd"`
	TotalTurns      int         `json:"total_turns"`
	TotalDurationMS int64       `json:"total_duration_ms"`
	// Host is the daemon of the fleet that ran the chain; absent on a single host.
	Host string `json:"host,omitempty"`
}

// LineageEntry is one chain of a lineage: its summary and its distance from
// the root (the oldest ancestor still in the registry), which has depth 0.
type LineageEntry struct {
	ChainSummary
	Depth int `json:"depth"`
}

// ChainList is the answer of GET /v1/chains: Archived is true (and said) only for the
// archive's list, GET /v1/chains?archived=1.
type ChainList struct {
	Archived bool           `json:"archived,omitempty"`
	Chains   []ChainSummary `json:"chains"`
}

// Lineage is the answer of GET /v1/chains/{id}/lineage: root first.
type Lineage struct {
	Lineage []LineageEntry `json:"lineage"`
}

// Registry is the content of registry.json. Its methods are pure: they change
// the value in memory only; Store.Update writes it back.
type Registry struct {
	// Chains in the order they were created.
	Chains []*Chain
	// NewID returns a fresh chain id; nil means NewChainID. Tests set it to
	// get deterministic ids.
	NewID func(now time.Time) string
	// Host is the daemon of a fleet making the change ("" on a single host):
	// Begin resumes no chain that another host still runs.
	Host string
	// Lost, on a fleet, says whether the host of a running chain has lost
	// the fleet unit it ran the chain for, to the host making the change:
	// Begin then resumes the chain although it is still marked running.
	// nil means no chain is lost.
	Lost func(*Chain) bool
}

// NewChainID returns a chain id that is unique without coordination:
// "c-<UTC time>-<12 random hex digits>".
func NewChainID(now time.Time) string { return rec.NewID(now) }

// CreateChain adds a running chain and returns it. restartedFrom is the id of
// the chain it resumes, or "".
func (r *Registry) CreateChain(unit, task, projectDir string, cfg ChainConfig, restartedFrom string, now time.Time) *Chain {
	newID := r.NewID
	if newID == nil {
		newID = NewChainID
	}
	id := newID(now)
	for i := 2; r.Find(id) != nil; i++ {
		// A clash is all but impossible with random ids; a fixed test
		// generator still gets distinct ids.
		id = fmt.Sprintf("%s-%d", newID(now), i)
	}
	c := rec.New(id, unit, task, projectDir, cfg, restartedFrom, now)
	r.Chains = append(r.Chains, c)
	return c
}

// Find returns the chain with the given id, or nil.
func (r *Registry) Find(id string) *Chain {
	for _, c := range r.Chains {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// RecordSession stores s in the chain: appended, or replacing the session with
// the same Index. The chain's totals and consecutive_errors are recomputed from
// all its sessions, so recording the same session twice never counts it twice.
func (r *Registry) RecordSession(chainID string, s Session, now time.Time) error {
	c := r.Find(chainID)
	if c == nil {
		return fmt.Errorf("registry: record session %d of chain %q: %w", s.Index, chainID, ErrNotFound)
	}
	if err := c.Record(s, now); err != nil {
		return fmt.Errorf("registry: record session %d of chain %q: %w", s.Index, chainID, err)
	}
	return nil
}

// SetStatus changes a chain's status. A chain with a final status (see
// ChainStatus.Final) keeps it: setting another one is an error.
func (r *Registry) SetStatus(chainID string, status ChainStatus, now time.Time) error {
	c := r.Find(chainID)
	if c == nil {
		return fmt.Errorf("registry: set status of chain %q: %w", chainID, ErrNotFound)
	}
	if err := c.SetStatus(status, now); err != nil {
		return fmt.Errorf("registry: set status of chain %q: %w", chainID, err)
	}
	return nil
}

// FindIncomplete returns the unit's chains that were cut off: status running
// or interrupted, and not yet resumed (no chain has them as restarted_from).
// An empty unit matches every unit. The order is the order of creation.
func (r *Registry) FindIncomplete(unit string) []*Chain {
	resumed := make(map[string]bool)
	for _, c := range r.Chains {
		if c.RestartedFrom != "" {
			resumed[c.RestartedFrom] = true
		}
	}
	var out []*Chain
	for _, c := range r.Chains {
		if unit != "" && c.Unit != unit {
			continue
		}
		if (c.Status == ChainRunning || c.Status == ChainInterrupted) && !resumed[c.ID] {
			out = append(out, c)
		}
	}
	return out
}

// Summary returns c as `opsvc chains ls` shows it.
func (r *Registry) Summary(c *Chain) ChainSummary {
	return ChainSummary{
		ID:              c.ID,
		Unit:            c.Unit,
		Task:            c.Task,
		Status:          c.Status,
		StartedAt:       c.StartedAt,
		UpdatedAt:       c.UpdatedAt,
		RestartedFrom:   c.RestartedFrom,
		Sessions:        len(c.Sessions),
		TotalCostUSD:    c.TotalCostUSD,
		TotalTurns:      c.TotalTurns,
		TotalDurationMS: c.TotalDurationMS,
		Host:            c.Host,
	}
}

// Summaries returns the summary of every chain, in the order of creation.
func (r *Registry) Summaries() []ChainSummary {
	out := make([]ChainSummary, 0, len(r.Chains))
	for _, c := range r.Chains {
		out = append(out, r.Summary(c))
	}
	return out
}

// Lineage returns the chain's ancestors (through restarted_from, as far as
// they are still in the registry), the chain itself and its descendants (the
// chains restarted from it, recursively; siblings in order of start), root
// first, each with its depth below the root.
func (r *Registry) Lineage(id string) ([]LineageEntry, error) {
	c := r.Find(id)
	if c == nil {
		return nil, fmt.Errorf("registry: lineage of chain %q: %w", id, ErrNotFound)
	}
	// Ancestors, walking up; seen guards against a cycle in a hand-edited file.
	seen := map[string]bool{c.ID: true}
	path := []*Chain{c}
	for p := c; p.RestartedFrom != ""; {
		parent := r.Find(p.RestartedFrom)
		if parent == nil || seen[parent.ID] {
			break
		}
		seen[parent.ID] = true
		path = append(path, parent)
		p = parent
	}
	slices.Reverse(path)
	out := make([]LineageEntry, 0, len(path))
	for depth, a := range path {
		out = append(out, LineageEntry{ChainSummary: r.Summary(a), Depth: depth})
	}

	children := make(map[string][]*Chain)
	for _, ch := range r.Chains {
		if ch.RestartedFrom != "" {
			children[ch.RestartedFrom] = append(children[ch.RestartedFrom], ch)
		}
	}
	for _, list := range children {
		slices.SortStableFunc(list, func(a, b *Chain) int { return a.StartedAt.Compare(b.StartedAt) })
	}
	var walk func(parent *Chain, depth int)
	walk = func(parent *Chain, depth int) {
		for _, ch := range children[parent.ID] {
			if seen[ch.ID] {
				continue
			}
			seen[ch.ID] = true
			out = append(out, LineageEntry{ChainSummary: r.Summary(ch), Depth: depth})
			walk(ch, depth+1)
		}
	}
	walk(c, len(path))
	return out, nil
}

// finished reports whether nothing more will happen to c: its status is
// final, or it was interrupted and has been resumed by another chain.
func finished(c *Chain, resumed map[string]bool) bool {
	return c.Status.Final() || (c.Status == ChainInterrupted && resumed[c.ID])
}

// Archive removes the finished chains beyond limit (oldest updated_at first)
// and returns them, oldest first, for the archive file. Running chains, and
// interrupted chains not yet resumed, are never archived, so the registry may
// hold more than limit of them. A negative limit archives nothing.
func (r *Registry) Archive(limit int) []Chain {
	if limit < 0 || len(r.Chains) <= limit {
		return nil
	}
	resumed := make(map[string]bool)
	for _, c := range r.Chains {
		if c.RestartedFrom != "" {
			resumed[c.RestartedFrom] = true
		}
	}
	var candidates []*Chain
	for _, c := range r.Chains {
		if finished(c, resumed) {
			candidates = append(candidates, c)
		}
	}
	slices.SortStableFunc(candidates, func(a, b *Chain) int {
		if n := a.UpdatedAt.Compare(b.UpdatedAt); n != 0 {
			return n
		}
		return a.StartedAt.Compare(b.StartedAt)
	})
	n := min(len(r.Chains)-limit, len(candidates))
	if n == 0 {
		return nil
	}
	gone := make(map[*Chain]bool, n)
	out := make([]Chain, 0, n)
	for _, c := range candidates[:n] {
		gone[c] = true
		out = append(out, *c)
	}
	r.Chains = slices.DeleteFunc(r.Chains, func(c *Chain) bool { return gone[c] })
	return out
}

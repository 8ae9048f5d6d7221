// Package registry keeps the crash-safe, flock-protected record of orchestrator
// chains and sessions (STATE/registry.json). It never starts processes.
package registry

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrNotFound is wrapped by every error about a chain id the registry does not hold.
var ErrNotFound = errors.New("registry: no such chain")

// ChainStatus is where a chain is in its life. The values are written to the
// registry and shown by the CLI; they never change.
type ChainStatus string

// Chain statuses (DESIGN §8).
const (
	ChainRunning        ChainStatus = "running"
	ChainComplete       ChainStatus = "complete"
	ChainFailed         ChainStatus = "failed"
	ChainInterrupted    ChainStatus = "interrupted"
	ChainExhausted      ChainStatus = "exhausted"
	ChainBudgetExceeded ChainStatus = "budget_exceeded"
)

var chainStatuses = []ChainStatus{ChainRunning, ChainComplete, ChainFailed, ChainInterrupted, ChainExhausted, ChainBudgetExceeded}

func (s ChainStatus) String() string { return string(s) }

// Valid reports whether s is one of the chain statuses.
func (s ChainStatus) Valid() bool { return slices.Contains(chainStatuses, s) }

// Final reports whether a chain with status s has ended for good: complete,
// failed, exhausted or budget_exceeded. Running and interrupted chains are not
// final (an interrupted chain may be resumed).
func (s ChainStatus) Final() bool {
	switch s {
	case ChainComplete, ChainFailed, ChainExhausted, ChainBudgetExceeded:
		return true
	}
	return false
}

// ParseChainStatus returns the chain status named s.
func ParseChainStatus(s string) (ChainStatus, error) {
	if st := ChainStatus(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("registry: parse chain status %q: not one of %s", s, joinStatuses(chainStatuses))
}

// SessionStatus is the outcome of one session of a chain.
type SessionStatus string

// Session statuses (DESIGN §8); SessionRunning marks a session in progress.
const (
	SessionRunning     SessionStatus = "running"
	SessionComplete    SessionStatus = "complete"
	SessionError       SessionStatus = "error"
	SessionInterrupted SessionStatus = "interrupted"
)

var sessionStatuses = []SessionStatus{SessionRunning, SessionComplete, SessionError, SessionInterrupted}

func (s SessionStatus) String() string { return string(s) }

// Valid reports whether s is one of the session statuses.
func (s SessionStatus) Valid() bool { return slices.Contains(sessionStatuses, s) }

// ParseSessionStatus returns the session status named s.
func ParseSessionStatus(s string) (SessionStatus, error) {
	if st := SessionStatus(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("registry: parse session status %q: not one of %s", s, joinStatuses(sessionStatuses))
}

func joinStatuses[S ~string](list []S) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// ChainConfig is the limits a chain was started with.
type ChainConfig struct {
	Model            string  `json:"model"`
	MaxTurns         int     `json:"max_turns"`
	MaxContinuations int     `json:"max_continuations"`
	MaxBudgetUSD     float64 `json:"max_budget_usd"`
}

// Chain is one run of an orchestrator unit: successive sessions in one
// project, each continuing from the previous one's handoff.
type Chain struct {
	ID                string      `json:"id"`
	Unit              string      `json:"unit"`
	Task              string      `json:"task"`
	Status            ChainStatus `json:"status"`
	StartedAt         time.Time   `json:"started_at"`
	UpdatedAt         time.Time   `json:"updated_at"`
	ProjectDir        string      `json:"project_dir"`
	RestartedFrom     string      `json:"restarted_from"` // id of the chain this one resumed; "" for none
	Config            ChainConfig `json:"config"`
	Sessions          []Session   `json:"sessions"` // ordered by Index
	TotalCostUSD      float64     `json:"total_cost_usd"`
	TotalTurns        int         `json:"total_turns"`
	TotalDurationMS   int64       `json:"total_duration_ms"`
	ConsecutiveErrors int         `json:"consecutive_errors"` // error sessions since the last complete one
}

// Session is one run of the agent command within a chain.
type Session struct {
	Index           int           `json:"index"` // 0 for a chain's first session
	SessionID       string        `json:"session_id"`
	Status          SessionStatus `json:"status"`
	Turns           int           `json:"turns"`
	CostUSD         float64       `json:"cost_usd"`
	InputTokens     int64         `json:"input_tokens"`
	OutputTokens    int64         `json:"output_tokens"`
	DurationMS      int64         `json:"duration_ms"`
	HitMaxTurns     bool          `json:"hit_max_turns"`
	HandoffComplete bool          `json:"handoff_complete"`
	HandoffFile     string        `json:"handoff_file"`
	Error           string        `json:"error"`
	StartedAt       time.Time     `json:"started_at,omitzero"`
	EndedAt         time.Time     `json:"ended_at,omitzero"`
}

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
}

// LineageEntry is one chain of a lineage: its summary and its distance from
// the root (the oldest ancestor still in the registry), which has depth 0.
type LineageEntry struct {
	ChainSummary
	Depth int `json:"depth"`
}

// Registry is the content of registry.json. Its methods are pure: they change
// the value in memory only; Store.Update writes it back.
type Registry struct {
	// Chains in the order they were created.
	Chains []*Chain
	// NewID returns a fresh chain id; nil means NewChainID. Tests set it to
	// get deterministic ids.
	NewID func(now time.Time) string
}

// NewChainID returns a chain id that is unique without coordination:
// "c-<UTC time>-<12 random hex digits>".
func NewChainID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "c-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

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
	c := &Chain{
		ID:            id,
		Unit:          unit,
		Task:          task,
		Status:        ChainRunning,
		StartedAt:     now,
		UpdatedAt:     now,
		ProjectDir:    projectDir,
		RestartedFrom: restartedFrom,
		Config:        cfg,
		Sessions:      []Session{},
	}
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
	if s.Index < 0 {
		return fmt.Errorf("registry: record session %d of chain %q: index must be 0 or more", s.Index, chainID)
	}
	if !s.Status.Valid() {
		return fmt.Errorf("registry: record session %d of chain %q: status %q is not one of %s", s.Index, chainID, s.Status, joinStatuses(sessionStatuses))
	}
	i, found := slices.BinarySearchFunc(c.Sessions, s.Index, func(e Session, idx int) int { return e.Index - idx })
	if found {
		c.Sessions[i] = s
	} else {
		c.Sessions = slices.Insert(c.Sessions, i, s)
	}
	c.recompute()
	c.UpdatedAt = now
	return nil
}

// recompute derives the totals and consecutive_errors from the sessions:
// a complete session resets the error count, an error session adds one, an
// interrupted or running one leaves it as it was.
func (c *Chain) recompute() {
	c.TotalCostUSD, c.TotalTurns, c.TotalDurationMS = 0, 0, 0
	for _, s := range c.Sessions {
		c.TotalCostUSD += s.CostUSD
		c.TotalTurns += s.Turns
		c.TotalDurationMS += s.DurationMS
	}
	c.ConsecutiveErrors = 0
	for i := len(c.Sessions) - 1; i >= 0; i-- {
		switch c.Sessions[i].Status {
		case SessionComplete:
			return
		case SessionError:
			c.ConsecutiveErrors++
		}
	}
}

// SetStatus changes a chain's status. A chain with a final status (see
// ChainStatus.Final) keeps it: setting another one is an error.
func (r *Registry) SetStatus(chainID string, status ChainStatus, now time.Time) error {
	c := r.Find(chainID)
	if c == nil {
		return fmt.Errorf("registry: set status of chain %q: %w", chainID, ErrNotFound)
	}
	if !status.Valid() {
		return fmt.Errorf("registry: set status of chain %q: %q is not one of %s", chainID, status, joinStatuses(chainStatuses))
	}
	if c.Status == status {
		return nil
	}
	if c.Status.Final() {
		return fmt.Errorf("registry: set status of chain %q to %s: the chain has ended %s and cannot change (start a new chain instead)", chainID, status, c.Status)
	}
	c.Status = status
	c.UpdatedAt = now
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

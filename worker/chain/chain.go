// Package chain is the record of an orchestrator's chains and their sessions, as the daemon keeps
// it and the orchestrator worker reports it, with the limits a chain runs under and the requests a
// worker sends the daemon to record them (see Begin). It never reads or writes the registry file
// and never starts processes.
package chain

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Status is where a chain is in its life. The values are written to the registry, sent over the
// IPC channel and shown by the CLI; they never change.
type Status string

// Chain statuses.
const (
	Running        Status = "running"
	Complete       Status = "complete"
	Failed         Status = "failed"
	Interrupted    Status = "interrupted"
	Exhausted      Status = "exhausted"
	BudgetExceeded Status = "budget_exceeded"
)

// statuses lists the chain statuses in the order messages name them.
func statuses() []Status {
	return []Status{Running, Complete, Failed, Interrupted, Exhausted, BudgetExceeded}
}

func (s Status) String() string { return string(s) }

// Valid reports whether s is one of the chain statuses.
func (s Status) Valid() bool { return slices.Contains(statuses(), s) }

// Final reports whether a chain with status s has ended for good: complete, failed, exhausted or
// budget_exceeded. Running and interrupted chains are not final (an interrupted chain may be
// resumed).
func (s Status) Final() bool {
	switch s {
	case Complete, Failed, Exhausted, BudgetExceeded:
		return true
	}
	return false
}

// ParseStatus returns the chain status named s.
func ParseStatus(s string) (Status, error) {
	if st := Status(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("chain: parse status %q: not one of %s", s, join(statuses()))
}

// SessionStatus is the outcome of one session of a chain.
type SessionStatus string

// Session statuses; SessionRunning marks a session in progress.
const (
	SessionRunning     SessionStatus = "running"
	SessionComplete    SessionStatus = "complete"
	SessionError       SessionStatus = "error"
	SessionInterrupted SessionStatus = "interrupted"
)

func sessionStatuses() []SessionStatus {
	return []SessionStatus{SessionRunning, SessionComplete, SessionError, SessionInterrupted}
}

func (s SessionStatus) String() string { return string(s) }

// Valid reports whether s is one of the session statuses.
func (s SessionStatus) Valid() bool { return slices.Contains(sessionStatuses(), s) }

// ParseSessionStatus returns the session status named s.
func ParseSessionStatus(s string) (SessionStatus, error) {
	if st := SessionStatus(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("chain: parse session status %q: not one of %s", s, join(sessionStatuses()))
}

func join[S ~string](list []S) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Config is the limits a chain was started with.
type Config struct {
	Model            string  `json:"model"`
	MaxTurns         int     `json:"max_turns"`
	MaxContinuations int     `json:"max_continuations"`
	MaxBudgetUSD     float64 `json:"max_budget_usd"`
}

// Chain is one run of an orchestrator unit: successive sessions in one project, each continuing
// from the previous one's handoff.
type Chain struct {
	ID                string    `json:"id"`
	Unit              string    `json:"unit"`
	Task              string    `json:"task"`
	Status            Status    `json:"status"`
	StartedAt         time.Time `json:"started_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	ProjectDir        string    `json:"project_dir"`
	RestartedFrom     string    `json:"restarted_from"` // id of the chain this one resumed; "" for none
	Config            Config    `json:"config"`
	Sessions          []Session `json:"sessions"` // ordered by Index
	TotalCostUSD      float64   `json:"total_cost_usd"`
	TotalTurns        int       `json:"total_turns"`
	TotalDurationMS   int64     `json:"total_duration_ms"`
	ConsecutiveErrors int       `json:"consecutive_errors"` // error sessions since the last complete one
	// Branch is the git branch the chain works on (git = "worktree"), or "".
	Branch string `json:"branch,omitempty"`
	// Reason says why the chain ended or was interrupted, when something said.
	Reason string `json:"reason,omitempty"`
	// EndedAt is when the chain ended or was interrupted; zero while it runs.
	EndedAt time.Time `json:"ended_at,omitzero"`
	// Host is the daemon of a fleet that ran the chain ([cluster] node); "" on a single host.
	Host string `json:"host,omitempty"`
	// Hold is, for a chain of a fleet unit, the etcd key by which Host held the unit when the
	// chain began (PREFIX/placement/UNIT/LEASE), and HoldRev that key's create revision. While
	// the key lives the chain is its host's; once it is gone, the host has lost the unit, and the
	// unit's next holder resumes the chain.
	Hold    string `json:"hold,omitempty"`
	HoldRev int64  `json:"hold_rev,omitempty"`
}

// Session is one run of the agent command within a chain. It holds no slice or map, so that
// sessions compare with ==.
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
	// Reason says why an interrupted session was interrupted: ReasonBudget, ReasonStop, or "".
	Reason string `json:"reason,omitempty"`
	// Model and MaxTurns are what the agent was given on its command line (or in its
	// environment, for an agent that takes no placeholders); Command is its argv, shell-quoted.
	Model    string `json:"model,omitempty"`
	MaxTurns int    `json:"max_turns,omitempty"`
	Command  string `json:"command,omitempty"`
	// Commit is the chain branch's last commit when the session ended (git = "worktree"), or "".
	Commit    string    `json:"commit,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// Reasons a session was interrupted.
const (
	ReasonBudget = "budget" // its running cost would pass a budget
	ReasonStop   = "stop"   // the worker was asked to stop, or the daemon went away
	ReasonGone   = "worker_gone"
)

// NewID returns a chain id that is unique without coordination: "c-<UTC time>-<12 random hex
// digits>".
func NewID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "c-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// New returns a running chain with no sessions. restartedFrom is the id of the chain it resumes,
// or "".
func New(id, unit, task, projectDir string, cfg Config, restartedFrom string, now time.Time) *Chain {
	return &Chain{
		ID:            id,
		Unit:          unit,
		Task:          task,
		Status:        Running,
		StartedAt:     now,
		UpdatedAt:     now,
		ProjectDir:    projectDir,
		RestartedFrom: restartedFrom,
		Config:        cfg,
		Sessions:      []Session{},
	}
}

// Record stores s in the chain: appended, or replacing the session with the same Index. The
// totals and consecutive_errors are recomputed from all the sessions, so recording the same
// session twice never counts it twice.
func (c *Chain) Record(s Session, now time.Time) error {
	if s.Index < 0 {
		return fmt.Errorf("session index %d: must be 0 or more", s.Index)
	}
	if !s.Status.Valid() {
		return fmt.Errorf("session status %q is not one of %s", s.Status, join(sessionStatuses()))
	}
	i, found := slices.BinarySearchFunc(c.Sessions, s.Index, func(e Session, idx int) int { return e.Index - idx })
	if found {
		c.Sessions[i] = s
	} else {
		c.Sessions = slices.Insert(c.Sessions, i, s)
	}
	c.UpdatedAt = now
	c.recompute()
	return nil
}

// recompute derives the totals and consecutive_errors from the sessions: a complete session resets
// the error count, an error session adds one, an interrupted or running one leaves it as it was.
func (c *Chain) recompute() {
	c.TotalCostUSD, c.TotalTurns = 0, 0
	for _, s := range c.Sessions {
		c.TotalCostUSD += s.CostUSD
		c.TotalTurns += s.Turns
	}
	c.TotalDurationMS = c.wallClockMS()
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

// wallClockMS is the time from the chain's start to its end: EndedAt, or while it runs its last
// change, or the end of a session recorded later than either.
func (c *Chain) wallClockMS() int64 {
	end := c.EndedAt
	if end.IsZero() {
		end = c.UpdatedAt
	}
	for _, s := range c.Sessions {
		if s.EndedAt.After(end) {
			end = s.EndedAt
		}
	}
	return max(end.Sub(c.StartedAt).Milliseconds(), 0)
}

// EndAt marks the chain ended at end (its status already changed) and recomputes its duration.
func (c *Chain) EndAt(end time.Time) {
	c.EndedAt = end
	c.TotalDurationMS = c.wallClockMS()
}

// SetStatus changes the chain's status. A chain with a final status (see Status.Final) keeps it:
// setting another one is an error; setting the same one again changes nothing.
func (c *Chain) SetStatus(status Status, now time.Time) error {
	if !status.Valid() {
		return fmt.Errorf("status %q is not one of %s", status, join(statuses()))
	}
	if c.Status == status {
		return nil
	}
	if c.Status.Final() {
		return fmt.Errorf("the chain has ended %s and cannot become %s (start a new chain instead)", c.Status, status)
	}
	c.Status = status
	c.UpdatedAt = now
	if status == Running {
		c.EndedAt = time.Time{}
		c.recompute()
	} else {
		c.EndAt(now)
	}
	return nil
}

// Totals returns what the chain's end depends on, as recorded.
func (c *Chain) Totals() Totals {
	return Totals{
		Status:            c.Status,
		Sessions:          len(c.Sessions),
		TotalCostUSD:      c.TotalCostUSD,
		TotalTurns:        c.TotalTurns,
		ConsecutiveErrors: c.ConsecutiveErrors,
	}
}

// LastHandoff is the newest handoff file among the chain's recorded sessions that exists and is
// not empty, or "": what a chain resuming this one carries over. It looks at the files.
func (c *Chain) LastHandoff() string {
	for i := len(c.Sessions) - 1; i >= 0; i-- {
		if f := c.Sessions[i].HandoffFile; f != "" && NonEmptyFile(f) {
			return f
		}
	}
	return ""
}

// NonEmptyFile reports whether path is a regular file with something in it.
func NonEmptyFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

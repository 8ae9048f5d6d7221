package chain

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Request methods with which a worker asks the daemon to record its chains (the "method" of an IPC
// request). The daemon records them for the unit at the other end of the channel, and only for
// orchestrator units; each is one atomic change of the registry, and asking twice is harmless.
const (
	// MethodBegin starts a chain (params Begin, reply Begun): with Resume, the unit's newest
	// incomplete chain is marked interrupted and continued by the new one.
	MethodBegin = "chain.begin"
	// MethodRecord records a session, new or finished (params RecordSession, reply Totals).
	MethodRecord = "session.record"
	// MethodFinish gives a chain its final status, or interrupted (params Finish, reply Totals).
	MethodFinish = "chain.finish"
)

// CommandSettingsChanged is the command the daemon sends its orchestrator workers when its
// settings change (no args): a worker waiting for a session lease asks again at once.
const CommandSettingsChanged = "settings.changed"

// Bounds of what a request may carry. A request over them is refused, except for a session's
// error text, which is cut to MaxErrorBytes: a session's result is never refused for its message.
const (
	MaxIDBytes         = 128
	MaxTaskBytes       = 256 << 10
	MaxPathBytes       = 4096
	MaxModelBytes      = 128
	MaxSessionIDBytes  = 256
	MaxErrorBytes      = 4096
	MaxCommandBytes    = 64 << 10
	MaxSessionIndex    = 10000
	maxReasonBytes     = 1024
	maxCount           = math.MaxInt32
	maxBudgetPerChain  = 1e9
	maxTokensOrMillis  = 1 << 53
	truncatedErrorMark = "…"
)

// Begin is the params of chain.begin.
type Begin struct {
	// ID is the new chain's id, chosen by the worker (NewID) so that asking again after a lost
	// reply returns the same chain instead of a second one; "" lets the daemon choose.
	ID         string `json:"id,omitempty"`
	Task       string `json:"task"`
	ProjectDir string `json:"project_dir"`
	Config     Config `json:"config"`
	// Resume continues the unit's newest incomplete chain (running or interrupted, and not yet
	// resumed): it is marked interrupted and becomes the new chain's restarted_from.
	Resume bool `json:"resume,omitempty"`
	// Branch is the git branch the chain is to work on (git = "worktree"), or "". A chain that
	// resumes one with a branch continues on that branch instead (see Begun.Branch).
	Branch string `json:"branch,omitempty"`
}

// Begun is the reply to chain.begin.
type Begun struct {
	ID            string `json:"id"`
	RestartedFrom string `json:"restarted_from,omitempty"` // the chain resumed, or ""
	// Handoff is the handoff file carried over from the resumed chain (its newest non-empty
	// one), or "".
	Handoff string `json:"handoff,omitempty"`
	// Branch is the chain's git branch: the resumed chain's, when it had one, or Begin.Branch.
	Branch string `json:"branch,omitempty"`
}

// RecordSession is the params of session.record.
type RecordSession struct {
	ChainID string  `json:"chain_id"`
	Session Session `json:"session"`
}

// Finish is the params of chain.finish.
type Finish struct {
	ChainID string `json:"chain_id"`
	Status  Status `json:"status"`
	Reason  string `json:"reason,omitempty"` // why, for the log; not recorded
}

// Totals is a chain as recorded after a change: the reply to session.record and chain.finish,
// and what decides whether a chain goes on.
type Totals struct {
	Status            Status  `json:"status"`
	Sessions          int     `json:"sessions"`
	TotalCostUSD      float64 `json:"total_cost_usd"`
	TotalTurns        int     `json:"total_turns"`
	ConsecutiveErrors int     `json:"consecutive_errors"`
}

// CheckID says what is wrong with a chain id, or nil: 1 to MaxIDBytes of letters, digits and
// ".", "_", ":", "-", not starting with "." (ids name directories).
func CheckID(id string) error {
	switch {
	case id == "":
		return errors.New("no chain id")
	case len(id) > MaxIDBytes:
		return fmt.Errorf("chain id of %d bytes is over %d", len(id), MaxIDBytes)
	case id[0] == '.':
		return fmt.Errorf("chain id %q starts with '.'", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)) {
			return fmt.Errorf("chain id %q has %q (use letters, digits, '.', '_', ':' and '-')", id, r)
		}
	}
	return nil
}

// Check says what is wrong with the params, or nil.
func (b *Begin) Check() error {
	var errs []error
	if b.ID != "" {
		errs = append(errs, CheckID(b.ID))
	}
	errs = append(errs,
		checkText("task", b.Task, MaxTaskBytes),
		checkText("project_dir", b.ProjectDir, MaxPathBytes),
		checkText("config.model", b.Config.Model, MaxModelBytes),
		checkText("branch", b.Branch, MaxPathBytes),
		checkCount("config.max_turns", int64(b.Config.MaxTurns)),
		checkCount("config.max_continuations", int64(b.Config.MaxContinuations)),
		checkBudget("config.max_budget_usd", b.Config.MaxBudgetUSD),
	)
	return errors.Join(errs...)
}

// Check says what is wrong with the params, or nil. It first cuts the session's error text to
// MaxErrorBytes.
func (r *RecordSession) Check() error {
	s := &r.Session
	s.Error = Clip(s.Error, MaxErrorBytes)
	var errs []error
	errs = append(errs, CheckID(r.ChainID))
	if s.Index < 0 || s.Index > MaxSessionIndex {
		errs = append(errs, fmt.Errorf("session index %d is out of range (0 to %d)", s.Index, MaxSessionIndex))
	}
	if !s.Status.Valid() {
		errs = append(errs, fmt.Errorf("session status %q is not one of %s", s.Status, join(sessionStatuses())))
	}
	errs = append(errs,
		checkText("session_id", s.SessionID, MaxSessionIDBytes),
		checkText("handoff_file", s.HandoffFile, MaxPathBytes),
		checkText("reason", s.Reason, maxReasonBytes),
		checkText("model", s.Model, MaxModelBytes),
		checkCount("max_turns", int64(s.MaxTurns)),
		checkText("command", s.Command, MaxCommandBytes),
		checkText("commit", s.Commit, MaxIDBytes),
		checkCount("turns", int64(s.Turns)),
		checkMoney("cost_usd", s.CostUSD),
		checkBig("input_tokens", s.InputTokens),
		checkBig("output_tokens", s.OutputTokens),
		checkBig("duration_ms", s.DurationMS),
	)
	return errors.Join(errs...)
}

// Check says what is wrong with the params, or nil.
func (f *Finish) Check() error {
	var errs []error
	errs = append(errs, CheckID(f.ChainID))
	if !f.Status.Valid() {
		errs = append(errs, fmt.Errorf("status %q is not one of %s", f.Status, join(statuses())))
	}
	if f.Status == Running {
		errs = append(errs, errors.New("a chain cannot be finished as running"))
	}
	errs = append(errs, checkText("reason", f.Reason, maxReasonBytes))
	return errors.Join(errs...)
}

func checkText(name, s string, limit int) error {
	switch {
	case len(s) > limit:
		return fmt.Errorf("%s of %d bytes is over %d", name, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", name)
	}
	return nil
}

func checkCount(name string, n int64) error {
	if n < 0 || n > maxCount {
		return fmt.Errorf("%s = %d is out of range (0 to %d)", name, n, maxCount)
	}
	return nil
}

func checkBig(name string, n int64) error {
	if n < 0 || n > maxTokensOrMillis {
		return fmt.Errorf("%s = %d is out of range (0 to %d)", name, n, int64(maxTokensOrMillis))
	}
	return nil
}

func checkMoney(name string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > maxBudgetPerChain {
		return fmt.Errorf("%s = %v is out of range (0 to %g)", name, v, float64(maxBudgetPerChain))
	}
	return nil
}

// checkBudget is checkMoney, with UnlimitedBudget allowed.
func checkBudget(name string, v float64) error {
	if v == UnlimitedBudget {
		return nil
	}
	return checkMoney(name, v)
}

// Bounded returns s with its counts and cost cut to what session.record takes, so that an agent
// reporting absurd usage cannot get its session refused.
func (s Session) Bounded() Session {
	s.InputTokens = min(max(s.InputTokens, 0), maxTokensOrMillis)
	s.OutputTokens = min(max(s.OutputTokens, 0), maxTokensOrMillis)
	s.DurationMS = min(max(s.DurationMS, 0), maxTokensOrMillis)
	s.Turns = min(max(s.Turns, 0), maxCount)
	s.MaxTurns = min(max(s.MaxTurns, 0), maxCount)
	if !(s.CostUSD >= 0) { // NaN too
		s.CostUSD = 0
	}
	s.CostUSD = min(s.CostUSD, maxBudgetPerChain)
	return s
}

// Clip cuts s to at most limit bytes, on a rune boundary, marking the cut with "…".
func Clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit - len(truncatedErrorMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:max(cut, 0)] + truncatedErrorMark
}

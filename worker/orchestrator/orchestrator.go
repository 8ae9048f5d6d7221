package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// Environment variables the worker reads (set by the daemon) and sets for each session.
const (
	EnvConfig       = "OPSVC_ORCHESTRATOR"  // the unit's [orchestrator] table as JSON
	EnvState        = "OPSVC_STATE"         // the state directory
	EnvChainID      = "OPSVC_CHAIN_ID"      // session: its chain
	EnvSessionIndex = "OPSVC_SESSION_INDEX" // session: 0 for a chain's first
	EnvModel        = "OPSVC_MODEL"         // session: the model to use
	EnvMaxTurns     = "OPSVC_MAX_TURNS"     // session: its turn limit
	EnvHandoffIn    = "OPSVC_HANDOFF_IN"    // session: the previous handoff file, or empty
	EnvHandoffOut   = "OPSVC_HANDOFF_OUT"   // session: where to write its handoff
	EnvResult       = "OPSVC_RESULT"        // session: where to write its result JSON
)

// DoneMarker in a Claude Code result text says that the chain's work is done.
const DoneMarker = "[opsvc:done]"

// HandoffDir is the directory, inside the state directory, of the chains' handoff and result files.
const HandoffDir = "handoffs"

// Request methods the worker sends the daemon.
const (
	MethodAcquire = "session.acquire"
	MethodRelease = "session.release"
)

// Options is what Run works with. Conn, Unit and StateDir are required.
type Options struct {
	Conn   *worker.Conn      // the channel to the daemon
	Config unit.Orchestrator // the unit's [orchestrator] table; zero values take the defaults
	Unit   string            // the unit's name
	// StateDir holds STATE/handoffs.
	StateDir string
	// Recorder records the chain; nil means the daemon, over Conn (NewIPCRecorder), or, on a
	// worker started outside opsvc, memory: the chain runs unrecorded.
	Recorder Recorder
	// NewID makes the chain's id; nil means chain.NewID.
	NewID func(now time.Time) string
	// Env is the environment the sessions start from; nil means os.Environ().
	Env []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logf receives the worker's own diagnostics; nil writes them to Stderr.
	Logf func(format string, args ...any)
	// Stdout and Stderr receive the agent's output lines; nil means os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Executable is the binary re-executed as each session's guard: one whose Main is this
	// package's. "" means /proc/self/exe.
	Executable string
}

// WithDefaults returns cfg with every unset (zero) value replaced by its default (package chain's;
// the daemon fills in its [orchestrator] settings first).
func WithDefaults(cfg unit.Orchestrator) unit.Orchestrator {
	if cfg.Model == "" {
		cfg.Model = chain.DefaultModel
	}
	if cfg.MaxTurns <= 0 {
		cfg.MaxTurns = chain.DefaultMaxTurns
	}
	if cfg.MaxContinuations <= 0 {
		cfg.MaxContinuations = chain.DefaultMaxContinuations
	}
	if cfg.MaxBudgetUSD == nil {
		b := chain.DefaultMaxBudgetUSD
		cfg.MaxBudgetUSD = &b
	} else if *cfg.MaxBudgetUSD < 0 {
		b := chain.UnlimitedBudget
		cfg.MaxBudgetUSD = &b
	}
	if cfg.MaxConsecutiveErrors <= 0 {
		cfg.MaxConsecutiveErrors = chain.DefaultMaxConsecutiveErrors
	}
	return cfg
}

// budgetOf is cfg's chain budget (defaults applied): UnlimitedBudget for none.
func budgetOf(cfg unit.Orchestrator) float64 {
	if cfg.MaxBudgetUSD == nil {
		return chain.DefaultMaxBudgetUSD
	}
	return *cfg.MaxBudgetUSD
}

// Verdict is how a chain ends after a session, or "" when it goes on: complete when the session
// said done, budget_exceeded when totalCost reached the budget (never with an unlimited one),
// failed when consecutiveErrors
// reached the circuit breaker, exhausted when 1 + max_continuations sessions have run. cfg has its
// defaults applied.
func Verdict(cfg unit.Orchestrator, done bool, totalCost float64, consecutiveErrors, sessions int) chain.Status {
	switch {
	case done:
		return chain.Complete
	case budgetOf(cfg) >= 0 && totalCost >= budgetOf(cfg):
		return chain.BudgetExceeded
	case consecutiveErrors >= cfg.MaxConsecutiveErrors:
		return chain.Failed
	case sessions >= 1+cfg.MaxContinuations:
		return chain.Exhausted
	}
	return ""
}

// runner is one Run.
type runner struct {
	opts    Options
	cfg     unit.Orchestrator
	project string // absolute project_dir
	// worktree is the chain's git worktree (git = "worktree") in repository repo, on branch, or "".
	worktree, repo, branch string
	stop                   *stopWatch
	chainID                string
	// unleased is set once the worker learns that no daemon gives leases.
	unleased bool
	smu      sync.Mutex
	// lastStatus is the last status line sent, to send each only once.
	lastStatus string
	// wake is signalled when the daemon's settings change (command settings.changed): a wait for
	// a lease asks again at once.
	wake chan struct{}
}

// CommandSettingsChanged is the command the daemon sends its orchestrator workers when its
// settings change: a worker waiting for a session lease asks again at once, and its next session
// runs under the new limits.
const CommandSettingsChanged = chain.CommandSettingsChanged

// commands answers the daemon's commands until done is closed.
func (r *runner) commands(cmds <-chan *worker.Command, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-r.opts.Conn.Done():
			return
		case c := <-cmds:
			var err error
			switch c.Name {
			case CommandSettingsChanged:
				select {
				case r.wake <- struct{}{}:
				default:
				}
			default:
				err = fmt.Errorf("unknown command %q (the orchestrator worker takes %s)", c.Name, CommandSettingsChanged)
			}
			if rerr := c.Reply(map[string]bool{"ok": err == nil}, err); rerr != nil && !r.channelGone() {
				r.logf("reply to command %s: %v", c.Name, rerr)
			}
		}
	}
}

// Run runs one chain to its end, or until the daemon stops the worker, and returns nil in both
// cases, with the chain recorded. When the daemon goes away (EOF on the channel) it interrupts
// the running session and returns nil: what was recorded stays, and a resume continues from it.
// It returns an error only when it cannot do its work: the options are incomplete, or the daemon
// refused to record the chain (a record it could not take for a while is asked for again,
// without end).
func Run(ctx context.Context, opts Options) error {
	if opts.Conn == nil {
		return errors.New("orchestrator: run: Options.Conn is required")
	}
	if opts.Unit == "" {
		return fmt.Errorf("orchestrator: run: no unit name (set %s)", worker.EnvUnit)
	}
	if opts.StateDir == "" {
		return fmt.Errorf("orchestrator: run: no state directory (set %s)", EnvState)
	}
	if opts.Recorder == nil {
		if opts.Conn.Supervised() {
			opts.Recorder = NewIPCRecorder(opts.Conn)
		} else {
			opts.Recorder = &localRecorder{unit: opts.Unit}
		}
	}
	if opts.NewID == nil {
		opts.NewID = chain.NewID
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logf == nil {
		w := opts.Stderr
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(w, "orchestrator: "+format+"\n", args...) }
	}
	if opts.Executable == "" {
		opts.Executable = selfExe
	}
	r := &runner{opts: opts, cfg: WithDefaults(opts.Config), wake: make(chan struct{}, 1)}
	r.project = r.cfg.ProjectDir
	if r.project == "" {
		r.project = "."
	}
	if abs, err := filepath.Abs(r.project); err == nil {
		r.project = abs
	}
	r.stop = watchStop(ctx, opts.Conn, func(drain bool) {
		if drain {
			r.status("stopping: a running session may finish first (drain)")
		} else {
			r.status("stopping: interrupting the chain")
		}
	})
	defer r.stop.close()
	cmdsDone, cmdsStopped := make(chan struct{}), make(chan struct{})
	cmds := opts.Conn.Commands() // before Ready
	go func() {
		defer close(cmdsStopped)
		r.commands(cmds, cmdsDone)
	}()
	defer func() {
		close(cmdsDone)
		<-cmdsStopped
	}()
	err := r.run()
	if errors.Is(err, errDaemonGone) {
		if r.chainID == "" {
			r.logf("the daemon is gone before the chain could begin")
		} else {
			r.logf("the daemon is gone: chain %s stays as last recorded (a unit with resume = true continues it)", r.chainID)
		}
		return nil
	}
	return err
}

func (r *runner) run() error {
	handoff, err := r.startChain()
	if errors.Is(err, errEnded) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.opts.Conn.Ready(); err != nil {
		r.logf("ready: %v", err)
	}
	r.status(fmt.Sprintf("chain %s: starting", r.chainID))
	var totals chain.Totals
	resume := ""
	for index := 0; ; index++ {
		g, ok := r.acquire(index)
		lease := g.LeaseID
		if !ok {
			return r.finish(chain.Interrupted, r.stop.why())
		}
		if r.stop.requested() {
			r.release(lease, 0)
			return r.finish(chain.Interrupted, r.stop.why())
		}
		r.apply(g.Limits)
		left, which := r.budgetLeft(totals.TotalCostUSD, g.BudgetLeftUSD)
		if left == 0 {
			r.release(lease, 0)
			return r.finish(chain.BudgetExceeded, fmt.Sprintf("nothing left to spend under the %s", which))
		}
		s, done, t, err := r.session(index, handoff, resume, budgetLimit{left, which})
		totals = t
		r.release(lease, s.CostUSD)
		if err != nil {
			return err
		}
		resume = ""
		if s.HandoffComplete {
			handoff = s.HandoffFile
			if wantsResume(handoff) {
				resume = s.SessionID
			}
		}
		if s.Status == chain.SessionInterrupted && s.Reason == chain.ReasonBudget {
			return r.finish(chain.BudgetExceeded, s.Error)
		}
		if s.Status == chain.SessionInterrupted {
			return r.finish(chain.Interrupted, r.stop.why())
		}
		if v := Verdict(r.cfg, done, totals.TotalCostUSD, totals.ConsecutiveErrors, index+1); v != "" {
			return r.finish(v, "")
		}
		if r.stop.requested() {
			return r.finish(chain.Interrupted, r.stop.why())
		}
	}
}

// apply takes the limits of the next session, as the daemon's current settings give them.
func (r *runner) apply(l *chain.Limits) {
	if l == nil {
		return
	}
	if l.Model != "" {
		r.cfg.Model = l.Model
	}
	if l.MaxTurns > 0 {
		r.cfg.MaxTurns = l.MaxTurns
	}
	b := l.MaxBudgetUSD
	if b < 0 {
		b = chain.UnlimitedBudget
	}
	r.cfg.MaxBudgetUSD = &b
}

// budgetLimit is what a session may spend, and which budget sets it.
type budgetLimit struct {
	left  float64 // negative: no limit
	which string
}

// budgetLeft is what the next session may spend, the least of what is left of the chain's
// budget and of the daily budgets (daily, from the lease; nil or negative for no limit), and
// which budget that is. It is negative when no budget limits the session.
func (r *runner) budgetLeft(spent float64, daily *float64) (float64, string) {
	left, which := -1.0, ""
	if b := budgetOf(r.cfg); b >= 0 {
		left, which = max(b-spent, 0), fmt.Sprintf("chain's max_budget_usd ($%.2f)", b)
	}
	if daily != nil && *daily >= 0 && (left < 0 || *daily < left) {
		left, which = *daily, "daily budgets (per_worker_budget_usd, global_budget_usd)"
	}
	return left, which
}

// startChain creates the chain, or resumes the unit's newest incomplete one, and publishes it. It
// returns the handoff file carried over, or "".
func (r *runner) startChain() (string, error) {
	p := chain.Begin{
		ID:         r.opts.NewID(r.opts.Now()),
		Task:       r.cfg.Task,
		ProjectDir: r.project,
		Config: chain.Config{
			Model:            r.cfg.Model,
			MaxTurns:         r.cfg.MaxTurns,
			MaxContinuations: r.cfg.MaxContinuations,
			MaxBudgetUSD:     budgetOf(r.cfg),
		},
		Resume: r.cfg.Resume,
	}
	if r.cfg.Git == "worktree" {
		p.Branch = branchFor(r.cfg.Branch, p.ID)
	}
	var begun chain.Begun
	err := r.record("begin chain "+p.ID, "a new chain of unit "+r.opts.Unit, func(ctx context.Context) (err error) {
		begun, err = r.opts.Recorder.Begin(ctx, p)
		return err
	})
	if err != nil {
		return "", err
	}
	if err := chain.CheckID(begun.ID); err != nil {
		return "", fmt.Errorf("orchestrator: begin chain: the daemon's reply: %w", err)
	}
	r.chainID = begun.ID
	if r.cfg.Git == "worktree" {
		r.branch = begun.Branch
		if r.branch == "" {
			r.branch = branchFor(r.cfg.Branch, r.chainID)
		}
		if err := r.openWorktree(r.branch); err != nil {
			return "", r.finishErr(chain.Failed, fmt.Sprintf("git worktree of %s on branch %s: %v", r.project, r.branch, err))
		}
		r.logf("chain %s works on branch %s in %s", r.chainID, r.branch, r.worktree)
	}
	if begun.RestartedFrom != "" {
		r.publish("chain.resumed", chainEvent{ChainID: r.chainID, RestartedFrom: begun.RestartedFrom})
		r.logf("chain %s resumes chain %s", r.chainID, begun.RestartedFrom)
	} else {
		r.publish("chain.created", chainEvent{ChainID: r.chainID, Task: r.cfg.Task})
	}
	return begun.Handoff, nil
}

// grant is the daemon's answer to session.acquire (supervisor.Grant).
type grant struct {
	Granted bool   `json:"granted"`
	LeaseID string `json:"lease_id"`
	Reason  string `json:"reason"`
	RetryMS int64  `json:"retry_ms"`
	// Limits are the current limits for the session; nil from a daemon that sends none.
	Limits *chain.Limits `json:"limits,omitempty"`
	// BudgetLeftUSD is what may still be spent today under the per-worker and global daily
	// budgets; nil or negative for no limit.
	BudgetLeftUSD *float64 `json:"budget_left_usd,omitempty"`
}

// acquire waits for a session lease. It returns false when the worker is asked to stop first.
// Without a daemon it returns a grant with no lease id, and true.
func (r *runner) acquire(index int) (grant, bool) {
	for {
		if r.stop.requested() {
			return grant{}, false
		}
		if r.unleased {
			return grant{}, true
		}
		raw, err := r.opts.Conn.Request(r.stop.ctx, MethodAcquire, map[string]any{"chain_id": r.chainID, "index": index})
		wait := time.Second
		switch {
		case errors.Is(err, worker.ErrNotSupervised):
			r.unleased = true
			return grant{}, true
		case r.stop.requested():
			return grant{}, false
		case err != nil:
			r.status("waiting for a session lease: " + err.Error())
		default:
			var g grant
			if err := json.Unmarshal(raw, &g); err != nil {
				r.status(fmt.Sprintf("waiting for a session lease: the daemon's answer %s: %v", raw, err))
				break
			}
			if g.Granted {
				return g, true
			}
			r.status("waiting for a session lease: " + g.Reason)
			if g.RetryMS > 0 {
				wait = time.Duration(g.RetryMS) * time.Millisecond
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.wake:
			t.Stop() // the settings changed: ask again at once
		case <-r.stop.any:
			t.Stop()
			return grant{}, false
		}
	}
}

// release gives the lease back with the session's cost. Errors are logged: the daemon drops a
// worker's leases when it exits.
func (r *runner) release(lease string, cost float64) {
	if lease == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.opts.Conn.Request(ctx, MethodRelease, map[string]any{"lease_id": lease, "cost_usd": cost})
	if err != nil && !r.channelGone() {
		r.logf("release lease %s: %v", lease, err)
	}
}

// session runs session index and records it. resume is the agent session to continue, or "";
// budget is what it may spend. It returns the session as recorded, whether it said done and the
// chain's totals; an error only when it could not be recorded.
func (r *runner) session(index int, handoffIn, resume string, budget budgetLimit) (chain.Session, bool, chain.Totals, error) {
	dir := filepath.Join(r.opts.StateDir, HandoffDir, r.chainID)
	call := agentArgv(r.cfg.Agent, r.cfg.ExtraArgs, r.cfg.Model, r.cfg.MaxTurns, resume)
	spec := sessionSpec{
		index:      index,
		call:       call,
		dir:        r.workDir(),
		handoffOut: filepath.Join(dir, fmt.Sprintf("%d.md", index)),
		resultPath: filepath.Join(dir, fmt.Sprintf("%d.result.json", index)),
		model:      r.cfg.Model,
		budget:     budget,
	}
	spec.prompt, spec.handoffIn = prompt(r.cfg.Task, handoffIn)
	spec.env = sessionEnv(r.opts.Env, map[string]string{
		EnvChainID:      r.chainID,
		EnvSessionIndex: fmt.Sprint(index),
		EnvModel:        r.cfg.Model,
		EnvMaxTurns:     fmt.Sprint(r.cfg.MaxTurns),
		EnvHandoffIn:    spec.handoffIn,
		EnvHandoffOut:   spec.handoffOut,
		EnvResult:       spec.resultPath,
	})
	r.publish("session.started", sessionStarted{ChainID: r.chainID, Index: index})
	r.status(fmt.Sprintf("chain %s: session %d running", r.chainID, index))

	var out outcome
	if err := os.MkdirAll(dir, 0o755); err != nil {
		now := r.opts.Now()
		out = outcome{Session: chain.Session{Index: index, Status: chain.SessionError, HandoffFile: spec.handoffOut,
			Error: fmt.Sprintf("create handoff directory: %v (check the state directory's permissions)", err), StartedAt: now, EndedAt: now}}
	} else {
		out = r.runSession(spec)
	}
	s := out.Session.Bounded()
	s.Error = chain.Clip(s.Error, chain.MaxErrorBytes)
	s.Command = chain.Clip(s.Command, chain.MaxCommandBytes)
	s.Commit = r.commit()
	p := chain.RecordSession{ChainID: r.chainID, Session: s}
	var t chain.Totals
	what := fmt.Sprintf("record session %d of chain %s", index, r.chainID)
	err := r.record(what, "the session: "+jsonText(s), func(ctx context.Context) (err error) {
		t, err = r.opts.Recorder.RecordSession(ctx, p)
		return err
	})
	if err != nil {
		r.logf("%v; the session was: %s", err, jsonText(s))
		return s, false, t, fmt.Errorf("orchestrator: %w", err)
	}
	r.publish("session.finished", sessionFinished{
		ChainID: r.chainID, Index: index, Status: string(s.Status),
		Turns: s.Turns, CostUSD: s.CostUSD, Error: s.Error,
	})
	if s.Error != "" {
		r.logf("chain %s: session %d: %s", r.chainID, index, s.Error)
	}
	return s, out.Done, t, nil
}

// errEnded is returned by startChain when the chain ended before its first session.
var errEnded = errors.New("the chain ended before its first session")

// finishErr ends the chain before its first session: errEnded, or finish's error.
func (r *runner) finishErr(status chain.Status, reason string) error {
	if err := r.finish(status, reason); err != nil {
		return err
	}
	return errEnded
}

// finish gives the chain its final (or interrupted) status, publishes it and returns nil.
func (r *runner) finish(status chain.Status, reason string) error {
	defer r.closeWorktree(status.Final())
	p := chain.Finish{ChainID: r.chainID, Status: status, Reason: chain.Clip(reason, 512)}
	var t chain.Totals
	err := r.record(fmt.Sprintf("end chain %s as %s", r.chainID, status), "reason: "+reason, func(ctx context.Context) (err error) {
		t, err = r.opts.Recorder.Finish(ctx, p)
		return err
	})
	if err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	sessions, cost := t.Sessions, t.TotalCostUSD
	ev := chainEvent{ChainID: r.chainID, Status: string(status), Reason: reason}
	switch status {
	case chain.Failed:
		r.publish("chain.failed", ev)
	case chain.Interrupted:
		r.publish("chain.interrupted", ev)
	default:
		r.publish("chain.completed", ev)
	}
	r.status(fmt.Sprintf("chain %s: %s after %d sessions ($%.2f)", r.chainID, status, sessions, cost))
	return nil
}

// Event payloads.
type chainEvent struct {
	ChainID       string `json:"chain_id"`
	Task          string `json:"task,omitempty"`
	RestartedFrom string `json:"restarted_from,omitempty"`
	Status        string `json:"status,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

type sessionStarted struct {
	ChainID string `json:"chain_id"`
	Index   int    `json:"index"`
}

type sessionFinished struct {
	ChainID string  `json:"chain_id"`
	Index   int     `json:"index"`
	Status  string  `json:"status"`
	Turns   int     `json:"turns"`
	CostUSD float64 `json:"cost_usd"`
	Error   string  `json:"error"`
}

func (r *runner) publish(name string, data any) {
	if r.opts.Conn == nil {
		return
	}
	if err := r.opts.Conn.Publish(name, data); err != nil && !r.channelGone() {
		r.logf("publish %s: %v", name, err)
	}
}

// status sends a status line unless it is the one last sent.
func (r *runner) status(text string) {
	r.smu.Lock()
	same := text == r.lastStatus
	r.lastStatus = text
	r.smu.Unlock()
	if same {
		return
	}
	if err := r.opts.Conn.Status(text); err != nil && !r.channelGone() {
		r.logf("status: %v", err)
	}
}

func (r *runner) channelGone() bool {
	select {
	case <-r.opts.Conn.Done():
		return true
	default:
		return false
	}
}

func (r *runner) logf(format string, args ...any) { r.opts.Logf(format, args...) }

// jsonText is v as JSON, for a log line.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

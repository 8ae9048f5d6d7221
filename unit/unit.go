// Package unit parses opsvc unit files: TOML, drop-ins, templates, specifiers,
// validation with positions, and the directory watcher. It never starts processes.
package unit

import (
	"fmt"
	"time"
)

// Type is how a unit's readiness and stop are decided.
type Type string

// Unit types.
const (
	TypeSimple       Type = "simple"
	TypeNotify       Type = "notify"
	TypeIPC          Type = "ipc"
	TypeOneshot      Type = "oneshot"
	TypeOrchestrator Type = "orchestrator" // set by the loader for units with an [orchestrator] table
)

// RestartPolicy says when an exited unit is started again.
type RestartPolicy string

// Restart policies.
const (
	RestartNo        RestartPolicy = "no"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// Placement says where a unit runs.
type Placement string

// Placements.
const (
	PlacementLocal Placement = "local" // on this host (the default)
	PlacementFleet Placement = "fleet" // on exactly one host of the fleet ([cluster] in opsvc.toml)
)

// Unit is the effective definition of one unit: the unit file with its drop-ins
// (and, for an instance, its template) applied and specifiers expanded.
type Unit struct {
	Name        string   // full name: "web", "tick@a"
	Description string   //
	After       []string // ordering only
	Requires    []string // start after these are ready; stop when they stop
	Enabled     bool     // wanted running (default true)
	Placement   Placement

	Service      Service
	Orchestrator *Orchestrator // nil unless the unit has an [orchestrator] table

	// Dir is the absolute directory of the unit's main file. Relative paths
	// in exec[0], working_directory, environment_files, project_dir and
	// agent[0] were resolved against the directory of the file that set them
	// (Dir, or a NAME.d/ for a drop-in).
	Dir string
	// Sources are the files that made this definition, in the order applied.
	Sources []string
	// Hash identifies the effective definition: equal hashes mean nothing to restart.
	Hash string
}

// Service is the [service] table.
type Service struct {
	Type               Type
	Exec               []string // argv; Exec[0] absolute, or a bare name looked up in PATH at start
	WorkingDirectory   string
	Environment        map[string]string
	EnvironmentFiles   []string // absolute; a leading "-" marks an optional file
	User               string
	Group              string
	Restart            RestartPolicy
	RestartDelay       time.Duration
	RestartDelayMax    time.Duration
	StartLimitBurst    int
	StartLimitInterval time.Duration
	StartTimeout       time.Duration
	StopTimeout        time.Duration
	StopSignal         string // "SIGTERM", …
	Watchdog           time.Duration
	NotifyAccess       string // "main" | "all"
	SuccessExitStatus  []int
	// StderrToStdout sends stderr down stdout's pipe (stderr = "stdout"):
	// one pipe per process instead of two, its lines logged as stdout.
	StderrToStdout bool `json:",omitempty"`
}

// Orchestrator is the [orchestrator] table. Zero numeric values, and a nil
// MaxBudgetUSD, mean "take the daemon's [orchestrator] setting".
type Orchestrator struct {
	ProjectDir string `json:"project_dir"`
	Task       string `json:"task"`
	// Agent is the session command; nil (agent absent) or ["claude"] (agent = "claude") is the
	// built-in Claude Code preset.
	Agent                []string `json:"agent"`
	ExtraArgs            []string `json:"extra_args,omitempty"` // appended to the agent's argv
	Model                string   `json:"model,omitempty"`
	MaxTurns             int      `json:"max_turns,omitempty"`
	MaxContinuations     int      `json:"max_continuations,omitempty"`
	MaxBudgetUSD         *float64 `json:"max_budget_usd,omitempty"` // 0: no spending; -1: unlimited
	MaxConsecutiveErrors int      `json:"max_consecutive_errors,omitempty"`
	Resume               bool     `json:"resume"`
	// Git is "worktree" for a git worktree per chain, or "" (off).
	Git string `json:"git,omitempty"`
	// Branch is the pattern of a chain's branch with git = "worktree"; {chain_id} is replaced.
	Branch string `json:"branch,omitempty"`
}

// AgentPreset is the agent preset name: Claude Code run with its stream-json output.
const AgentPreset = "claude"

// DefaultBranchPattern is the branch of a chain with git = "worktree" when branch is unset.
const DefaultBranchPattern = "opsvc/{chain_id}"

// DefaultOrchestratorWatchdog is the heartbeat deadline of orchestrator units whose watchdog is
// unset.
const DefaultOrchestratorWatchdog = 30 * time.Second

// Defaults of the [service] table.
const (
	DefaultRestartDelay       = 100 * time.Millisecond
	DefaultRestartDelayMax    = 30 * time.Second
	DefaultStartLimitBurst    = 5
	DefaultStartLimitInterval = 10 * time.Second
	DefaultStartTimeout       = 90 * time.Second
	DefaultStopTimeout        = 10 * time.Second
	DefaultStopSignal         = "SIGTERM"
)

// DefaultService returns a [service] table with every default set.
func DefaultService() Service {
	return Service{
		Type:               TypeSimple,
		Restart:            RestartOnFailure,
		RestartDelay:       DefaultRestartDelay,
		RestartDelayMax:    DefaultRestartDelayMax,
		StartLimitBurst:    DefaultStartLimitBurst,
		StartLimitInterval: DefaultStartLimitInterval,
		StartTimeout:       DefaultStartTimeout,
		StopTimeout:        DefaultStopTimeout,
		StopSignal:         DefaultStopSignal,
		NotifyAccess:       "main",
		SuccessExitStatus:  []int{0},
	}
}

// Problem is one thing wrong with a unit file, with its position.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
	Msg  string `json:"message"`
	Hint string `json:"hint,omitempty"`
}

func (p Problem) Error() string {
	s := fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
	if p.Hint != "" {
		s += " (" + p.Hint + ")"
	}
	return s
}

package chain

// The limits of a chain: the default of each, taken when neither the unit's [orchestrator] table
// nor the daemon's [orchestrator] settings set it, and the bounds a value must be within wherever
// it is set. The unit loader, the settings and the orchestrator worker all take them from here.
const (
	DefaultModel = "sonnet"

	DefaultMaxTurns = 30 // per session
	MinMaxTurns     = 1
	MaxMaxTurns     = 200

	DefaultMaxContinuations = 5 // sessions after the first
	MinMaxContinuations     = 1
	MaxMaxContinuations     = 20

	DefaultMaxBudgetUSD = 5.0 // per chain
	MinMaxBudgetUSD     = 0.0 // no spending at all
	// UnlimitedBudget as a chain's max_budget_usd sets no limit.
	UnlimitedBudget = -1.0
	MaxMaxBudgetUSD = 100.0

	DefaultMaxConsecutiveErrors = 3 // the circuit breaker
	MinMaxConsecutiveErrors     = 1
	MaxMaxConsecutiveErrors     = 1000
)

// DefaultValidModels returns the models a chain may use when the settings name none.
func DefaultValidModels() []string { return []string{"haiku", "sonnet", "opus"} }

// DefaultConfig returns a chain's limits when nothing sets them.
func DefaultConfig() Config {
	return Config{
		Model:            DefaultModel,
		MaxTurns:         DefaultMaxTurns,
		MaxContinuations: DefaultMaxContinuations,
		MaxBudgetUSD:     DefaultMaxBudgetUSD,
	}
}

// Limits are the limits of one session as the daemon's current settings and the unit's file give
// them, sent with each session lease so that a settings change applies from the next session on.
type Limits struct {
	Model        string  `json:"model,omitempty"`
	MaxTurns     int     `json:"max_turns,omitempty"`
	MaxBudgetUSD float64 `json:"max_budget_usd"` // the chain's; UnlimitedBudget for none
}

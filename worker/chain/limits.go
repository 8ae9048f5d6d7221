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
	MinMaxBudgetUSD     = 0.0
	MaxMaxBudgetUSD     = 100.0

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

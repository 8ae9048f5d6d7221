package api

// TypeSessionProgress is the type of the events an orchestrator publishes while a session runs.
const TypeSessionProgress = "session.progress"

// SessionProgress: a running session as its agent's stream shows it so far, sent at most a few
// times a second, and once more (done) when the session's output ends.
type SessionProgress struct {
	ChainID   string `json:"chain_id"`
	Index     int    `json:"index"`                // 0 for a chain's first session
	SessionID string `json:"session_id,omitempty"` // the agent's session id
	Model     string `json:"model,omitempty"`      // the model the agent reports
	Turns     int    `json:"turns"`
	LastTool  string `json:"last_tool,omitempty"` // the tool the agent used last
	// InputTokens counts the prompt tokens, cache reads and writes included.
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CostUSD      float64 `json:"cost_usd"` // spent so far
	// CostEstimated says that CostUSD is priced from the token usage at list prices: the agent
	// gave no cost yet.
	CostEstimated bool `json:"cost_estimated"`
	Done          bool `json:"done,omitempty"` // the session's output has ended
}

func (SessionProgress) EventType() string { return TypeSessionProgress }

package chain

// EventProgress is the event a worker publishes while a session runs (payload Progress), at most
// a few times a second.
const EventProgress = "session.progress"

// Progress is a running session as its agent's stream shows it so far.
type Progress struct {
	ChainID   string `json:"chain_id"`
	Index     int    `json:"index"`
	SessionID string `json:"session_id,omitempty"`
	Model     string `json:"model,omitempty"` // as the agent reports it
	Turns     int    `json:"turns"`
	LastTool  string `json:"last_tool,omitempty"`
	// InputTokens counts the prompt tokens, cache reads and writes included.
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CostUSD      float64 `json:"cost_usd"`
	// CostEstimated says that CostUSD is priced from the token usage: the stream gave no cost yet.
	CostEstimated bool `json:"cost_estimated"`
	// Done is set on the last progress event of a session, sent when its stream ends.
	Done bool `json:"done,omitempty"`
}

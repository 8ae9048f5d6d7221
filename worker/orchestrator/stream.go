package orchestrator

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"

	"github.com/opsvc/opsvc/worker/chain"
)

// maxStreamMessages bounds how many assistant messages a session's stream is tracked by id;
// later ones are added to the totals as they come.
const maxStreamMessages = 4096

// price is what a model costs per million tokens, in USD.
type price struct{ in, out float64 }

// priceOf is the list price of a Claude model family, for a stream that gives no cost: opus,
// haiku, and sonnet for any other name. Cache writes cost 1.25 times the input price, cache
// reads a tenth of it.
func priceOf(model string) price {
	m := strings.ToLower(model)
	switch {
	case strings.Contains(m, "opus"):
		return price{15, 75}
	case strings.Contains(m, "haiku"):
		return price{1, 5}
	}
	return price{3, 15}
}

// usage is the token usage of one assistant message.
type usage struct {
	Input      int64 `json:"input_tokens"`
	CacheWrite int64 `json:"cache_creation_input_tokens"`
	CacheRead  int64 `json:"cache_read_input_tokens"`
	Output     int64 `json:"output_tokens"`
}

// maxTokens bounds one message's count of each kind of token, as the agent reports it.
const maxTokens = 1 << 40

// sane is u with each count within 0 and maxTokens.
func (u usage) sane() usage {
	c := func(n int64) int64 { return min(max(n, 0), maxTokens) }
	return usage{c(u.Input), c(u.CacheWrite), c(u.CacheRead), c(u.Output)}
}

// cost prices u at p.
func (u usage) cost(p price) float64 {
	return (float64(u.Input)*p.in + float64(u.CacheWrite)*p.in*1.25 + float64(u.CacheRead)*p.in*0.1 + float64(u.Output)*p.out) / 1e6
}

func (u usage) plus(v usage, sign int64) usage {
	u.Input += sign * v.Input
	u.CacheWrite += sign * v.CacheWrite
	u.CacheRead += sign * v.CacheRead
	u.Output += sign * v.Output
	return u
}

// priced is a message's usage and its cost.
type priced struct {
	u    usage
	cost float64
}

// stream follows a session's Claude Code stream-json output, one line at a time (system/init,
// assistant messages with their usage and tool uses, the result). Lines that are not JSON objects
// of those types are ignored. It is safe for concurrent use.
type stream struct {
	mu       sync.Mutex
	model    string // as asked for, to price the usage until the stream names its model
	p        chain.Progress
	seq      uint64 // changes seen
	msgs     map[string]priced
	total    priced // sum of msgs and of the messages beyond maxStreamMessages
	result   bool   // the result message was seen: its cost is final
	onChange func(cost float64)
}

func newStream(model string, onChange func(cost float64)) *stream {
	return &stream{model: model, msgs: map[string]priced{}, onChange: onChange, p: chain.Progress{CostEstimated: true}}
}

// streamLine is the part of a stream-json line the stream reads.
type streamLine struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype"`
	SessionID string `json:"session_id"`
	Model     string `json:"model"`
	Message   *struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Content []struct {
			Type string `json:"type"`
			Name string `json:"name"`
		} `json:"content"`
		Usage *usage `json:"usage"`
	} `json:"message"`
	NumTurns     *int     `json:"num_turns"`
	TotalCostUSD *float64 `json:"total_cost_usd"`
	Usage        *usage   `json:"usage"`
}

// line takes one line of output.
func (s *stream) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return
	}
	var l streamLine
	if json.Unmarshal(b, &l) != nil {
		return
	}
	s.mu.Lock()
	changed := s.take(&l)
	cost := s.p.CostUSD
	if changed {
		s.seq++
	}
	s.mu.Unlock()
	if changed && s.onChange != nil {
		s.onChange(cost)
	}
}

// take applies one line; mu is held.
func (s *stream) take(l *streamLine) bool {
	if l.SessionID != "" {
		s.p.SessionID = clip(l.SessionID, chain.MaxSessionIDBytes)
	}
	switch l.Type {
	case "system":
		if l.Subtype == "init" && l.Model != "" {
			s.p.Model = clip(l.Model, chain.MaxModelBytes)
		}
		return true
	case "assistant":
		m := l.Message
		if m == nil {
			return false
		}
		if m.Model != "" && s.p.Model == "" {
			s.p.Model = clip(m.Model, chain.MaxModelBytes)
		}
		for _, c := range m.Content {
			if c.Type == "tool_use" && c.Name != "" {
				s.p.LastTool = clip(c.Name, 200)
			}
		}
		if m.Usage != nil {
			u := priced{u: m.Usage.sane()}
			u.cost = u.u.cost(priceOf(s.pricedModel()))
			old, seen := s.msgs[m.ID]
			switch {
			case m.ID != "" && seen: // another content block of the same message: its usage again
				s.total = priced{s.total.u.plus(old.u, -1), s.total.cost - old.cost}
				s.msgs[m.ID] = u
			case m.ID != "" && len(s.msgs) < maxStreamMessages:
				s.msgs[m.ID] = u
				s.p.Turns++
			default:
				s.p.Turns++
			}
			s.total = priced{s.total.u.plus(u.u, 1), s.total.cost + u.cost}
		}
		if !s.result {
			s.p.InputTokens = s.total.u.Input + s.total.u.CacheWrite + s.total.u.CacheRead
			s.p.OutputTokens = s.total.u.Output
			s.p.CostUSD = s.total.cost
		}
		return true
	case "result":
		s.result = true
		if l.NumTurns != nil && *l.NumTurns >= 0 {
			s.p.Turns = *l.NumTurns
		}
		if l.Usage != nil {
			u := l.Usage.sane()
			s.p.InputTokens = u.Input + u.CacheWrite + u.CacheRead
			s.p.OutputTokens = u.Output
		}
		if l.TotalCostUSD != nil && *l.TotalCostUSD >= 0 && *l.TotalCostUSD < 1e9 {
			s.p.CostUSD = *l.TotalCostUSD
			s.p.CostEstimated = false
		}
		return true
	}
	return false
}

func (s *stream) pricedModel() string {
	if s.p.Model != "" {
		return s.p.Model
	}
	return s.model
}

// snapshot returns the progress so far and a number that changes whenever it does.
func (s *stream) snapshot() (chain.Progress, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p, s.seq
}

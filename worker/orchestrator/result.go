package orchestrator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Result is what a session reports about itself, from its result file or its stdout.
type Result struct {
	SessionID    string
	Turns        int
	CostUSD      float64
	InputTokens  int64
	OutputTokens int64
	DurationMS   int64 // 0 when the result does not say
	HitMaxTurns  bool
	Done         bool
	// HandoffComplete is what the result file says about the handoff, or nil when it says nothing.
	HandoffComplete *bool
	// IsError marks a failed session; Error says why.
	IsError bool
	Error   string
}

// ParseResultFile reads the JSON object of a result file (session_id, turns, cost_usd,
// input_tokens, output_tokens, done, handoff_complete, error, and duration_ms, hit_max_turns).
// Missing fields, and fields of another type, are zero. A non-empty error marks the session
// failed.
func ParseResultFile(data []byte) (Result, error) {
	f, err := object(data)
	if err != nil {
		return Result{}, err
	}
	r := Result{
		SessionID:    f.str("session_id"),
		Turns:        int(f.num("turns")),
		CostUSD:      f.num("cost_usd"),
		InputTokens:  int64(f.num("input_tokens")),
		OutputTokens: int64(f.num("output_tokens")),
		DurationMS:   int64(f.num("duration_ms")),
		HitMaxTurns:  f.boolean("hit_max_turns"),
		Done:         f.boolean("done"),
		Error:        f.str("error"),
	}
	if raw, ok := f["handoff_complete"]; ok {
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			r.HandoffComplete = &b
		}
	}
	r.IsError = r.Error != ""
	return r, nil
}

// FindClaudeResult looks for Claude Code's result object in the tail of a session's stdout: the
// last line that is a JSON object with "type":"result" (--output-format stream-json ends with
// it), or else the whole output as one JSON object of that type (--output-format json, pretty
// printed or not). partial says that the output's start is missing, so that its first line is
// not whole. It reports false when there is none.
func FindClaudeResult(out []byte, partial bool) (Result, bool) {
	lines := bytes.Split(out, []byte("\n"))
	first := 0
	if partial {
		first = 1
	}
	for i := len(lines) - 1; i >= first; i-- {
		line := bytes.TrimSpace(lines[i])
		if len(line) < 2 || line[0] != '{' || !bytes.Contains(line, []byte(`"result"`)) {
			continue
		}
		if r, ok := claudeResult(line); ok {
			return r, true
		}
	}
	if !partial {
		if r, ok := claudeResult(bytes.TrimSpace(out)); ok {
			return r, true
		}
	}
	return Result{}, false
}

// claudeResult maps one Claude Code result object.
func claudeResult(data []byte) (Result, bool) {
	f, err := object(data)
	if err != nil || f.str("type") != "result" {
		return Result{}, false
	}
	text := f.str("result")
	usage, _ := object(f["usage"])
	r := Result{
		SessionID:    f.str("session_id"),
		Turns:        int(f.num("num_turns")),
		CostUSD:      f.num("total_cost_usd"),
		InputTokens:  int64(usage.num("input_tokens")),
		OutputTokens: int64(usage.num("output_tokens")),
		DurationMS:   int64(f.num("duration_ms")),
		Done:         f.boolean("done") || strings.Contains(text, DoneMarker),
	}
	subtype := f.str("subtype")
	switch {
	case subtype == "error_max_turns":
		r.HitMaxTurns = true
	case f.boolean("is_error") || subtype == "error_during_execution":
		r.IsError = true
		why := text
		if why == "" {
			why = f.str("error")
		}
		if why == "" {
			why = "no message"
		}
		if subtype == "" {
			subtype = "is_error"
		}
		r.Error = fmt.Sprintf("agent result %s: %s", subtype, clip(why, 500))
	}
	return r, true
}

// fields is a JSON object whose values are read leniently: a missing field or one of another type
// reads as zero.
type fields map[string]json.RawMessage

func object(data []byte) (fields, error) {
	var f fields
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return f, nil
}

func (f fields) str(k string) string {
	var s string
	_ = json.Unmarshal(f[k], &s)
	return s
}

func (f fields) num(k string) float64 {
	var n float64
	_ = json.Unmarshal(f[k], &n)
	return n
}

func (f fields) boolean(k string) bool {
	var b bool
	_ = json.Unmarshal(f[k], &b)
	return b
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

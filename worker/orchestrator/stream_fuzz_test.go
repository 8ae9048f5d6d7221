package orchestrator

import (
	"os"
	"testing"
)

// FuzzStream feeds arbitrary output to the stream reader: it never panics, and the progress it
// shows stays sane (no negative counts or cost).
func FuzzStream(f *testing.F) {
	if data, err := os.ReadFile("testdata/claude-stream.jsonl"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"type":"assistant","message":{"id":"m","usage":{"input_tokens":-5,"output_tokens":1e30}}}` + "\n"))
	f.Add([]byte(`{"type":"result","num_turns":-1,"total_cost_usd":"x"}` + "\n{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newStream("opus", nil)
		feed := &lineFeed{take: st.line}
		feed.write(data)
		p, _ := st.snapshot()
		if len(p.SessionID) > 1024 || len(p.Model) > 1024 || len(p.LastTool) > 1024 ||
			p.Turns < 0 || p.InputTokens < 0 || p.OutputTokens < 0 || p.CostUSD < 0 {
			t.Fatalf("unbounded text in %+v", p)
		}
	})
}

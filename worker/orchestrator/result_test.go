package orchestrator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker/chain"
)

func TestWithDefaults(t *testing.T) {
	got := WithDefaults(unit.Orchestrator{Task: "x", MaxTurns: 7})
	want := unit.Orchestrator{Task: "x", Model: "sonnet", MaxTurns: 7, MaxContinuations: 5, MaxBudgetUSD: usd(5), MaxConsecutiveErrors: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestVerdict(t *testing.T) {
	cfg := WithDefaults(unit.Orchestrator{MaxContinuations: 2, MaxBudgetUSD: usd(1), MaxConsecutiveErrors: 2})
	for _, tc := range []struct {
		done     bool
		cost     float64
		errs, n  int
		want     chain.Status
		scenario string
	}{
		{false, 0, 0, 1, "", "goes on"},
		{true, 5, 5, 9, chain.Complete, "done comes first"},
		{false, 1, 5, 9, chain.BudgetExceeded, "then the budget, reached exactly"},
		{false, 0.99, 2, 9, chain.Failed, "then the circuit breaker"},
		{false, 0.99, 1, 3, chain.Exhausted, "then 1 + max_continuations sessions"},
		{false, 0.99, 1, 2, "", "one continuation left"},
	} {
		if got := Verdict(cfg, tc.done, tc.cost, tc.errs, tc.n); got != tc.want {
			t.Errorf("%s: Verdict = %q, want %q", tc.scenario, got, tc.want)
		}
	}
}

func TestParseResultFile(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		in   string
		want Result
		err  bool
	}{
		{in: `{"session_id":"a","turns":3,"cost_usd":0.5,"input_tokens":10,"output_tokens":20,"done":true,"handoff_complete":false,"duration_ms":99,"hit_max_turns":true}`,
			want: Result{SessionID: "a", Turns: 3, CostUSD: 0.5, InputTokens: 10, OutputTokens: 20, Done: true, HandoffComplete: &no, DurationMS: 99, HitMaxTurns: true}},
		{in: `{}`, want: Result{}},
		{in: `{"handoff_complete":true,"error":"quota"}`, want: Result{HandoffComplete: &yes, IsError: true, Error: "quota"}},
		{in: `{"turns":"three","cost_usd":null,"done":"yes"}`, want: Result{}},
		{in: `null`, err: true},
		{in: `[1]`, err: true},
		{in: `{"turns":`, err: true},
	} {
		got, err := ParseResultFile([]byte(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestFindClaudeResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		partial bool
		want    Result
		found   bool
	}{
		{name: "none", out: "hello\nworld\n"},
		{name: "not a result", out: `{"type":"assistant","result":"x"}` + "\n"},
		{name: "success", out: `{"type":"result","subtype":"success","num_turns":2,"total_cost_usd":0.1,"session_id":"s","duration_ms":7,"usage":{"input_tokens":1,"output_tokens":2},"result":"fine"}`,
			want: Result{SessionID: "s", Turns: 2, CostUSD: 0.1, InputTokens: 1, OutputTokens: 2, DurationMS: 7}, found: true},
		{name: "done marker", out: `{"type":"result","result":"all finished [opsvc:done]"}`, want: Result{Done: true}, found: true},
		{name: "done field", out: `{"type":"result","done":true}`, want: Result{Done: true}, found: true},
		{name: "max turns", out: `{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":30}`, want: Result{Turns: 30, HitMaxTurns: true}, found: true},
		{name: "is_error", out: `{"type":"result","subtype":"success","is_error":true,"result":"API error"}`,
			want: Result{IsError: true, Error: "agent result success: API error"}, found: true},
		{name: "during execution, no text", out: `{"type":"result","subtype":"error_during_execution"}`,
			want: Result{IsError: true, Error: "agent result error_during_execution: no message"}, found: true},
		{name: "last of several", out: `{"type":"result","num_turns":1}` + "\n" + `{"type":"result","num_turns":2}` + "\nnoise\n",
			want: Result{Turns: 2}, found: true},
		{name: "partial first line skipped", out: `"type":"result","num_turns":1}` + "\nnoise\n", partial: true},
		{name: "partial, whole line found", out: "xx\n" + `{"type":"result","num_turns":4}`, partial: true, want: Result{Turns: 4}, found: true},
		{name: "pretty", out: "{\n \"type\": \"result\",\n \"num_turns\": 5\n}\n", want: Result{Turns: 5}, found: true},
	} {
		got, found := FindClaudeResult([]byte(tc.out), tc.partial)
		if found != tc.found {
			t.Errorf("%s: found %v, want %v", tc.name, found, tc.found)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	var all bytes.Buffer
	tb := newTailBuffer(10)
	for _, w := range []string{"abc", "defgh", "ij", "k", "lmnopqrstuvwxyz0123", "45", "6789ABCDEF", "G"} {
		tb.Write([]byte(w))
		all.WriteString(w)
		got, partial := tb.bytes()
		want := all.Bytes()
		if len(want) > 10 {
			want = want[len(want)-10:]
		}
		if !bytes.Equal(got, want) || partial != (all.Len() > 10) {
			t.Fatalf("after %q: tail %q (partial %v), want %q (partial %v)", w, got, partial, want, all.Len() > 10)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	lw := lineWriter{to: &out}
	lw.write([]byte("one\ntw"))
	lw.write([]byte("o\n\n  \nthr"))
	if out.String() != "one\ntwo\n\n  \n" || lw.last != "two" {
		t.Fatalf("out %q last %q", out.String(), lw.last)
	}
	lw.flush()
	if out.String() != "one\ntwo\n\n  \nthr\n" || lw.last != "thr" {
		t.Fatalf("after flush: out %q last %q", out.String(), lw.last)
	}
	out.Reset()
	long := strings.Repeat("x", maxLine+10)
	lw.write([]byte(long + "\n"))
	if out.Len() != len(long)+2 || strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("a line over %d bytes: wrote %d bytes in %d lines", maxLine, out.Len(), strings.Count(out.String(), "\n"))
	}
}

func TestGraceFor(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		0: 5 * time.Second, time.Second: 500 * time.Millisecond, 10 * time.Second: 5 * time.Second, time.Minute: 5 * time.Second,
	} {
		if got := graceFor(d); got != want {
			t.Errorf("graceFor(%v) = %v, want %v", d, got, want)
		}
	}
}

func TestPrompt(t *testing.T) {
	dir := t.TempDir()
	h := filepath.Join(dir, "h.md")
	os.WriteFile(h, []byte("notes"), 0o644)
	empty := filepath.Join(dir, "empty.md")
	os.WriteFile(empty, nil, 0o644)
	for _, tc := range []struct {
		task, handoff, want, used string
	}{
		{"Do it", "", "Do it\n", ""},
		{"Do it\n", h, "Do it\n\nPrevious session handoff:\nnotes\n", h},
		{"Do it", empty, "Do it\n", ""},
		{"Do it", filepath.Join(dir, "gone.md"), "Do it\n", ""},
	} {
		got, used := prompt(tc.task, tc.handoff)
		if got != tc.want || used != tc.used {
			t.Errorf("prompt(%q, %q) = %q, %q; want %q, %q", tc.task, tc.handoff, got, used, tc.want, tc.used)
		}
	}
}

func TestSessionEnv(t *testing.T) {
	got := sessionEnv(
		[]string{"A=1", "OPSVC_IPC_FD=3", "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json", "OPSVC_ORCHESTRATOR={}",
			"OPSVC_HEARTBEAT_USEC=5", "NOTIFY_SOCKET=/s", "WATCHDOG_USEC=1", "OPSVC_CHAIN_ID=old", "OPSVC_UNIT=u", "B=2"},
		map[string]string{"OPSVC_CHAIN_ID": "c", "OPSVC_SESSION_INDEX": "0"})
	want := []string{"A=1", "OPSVC_UNIT=u", "B=2", "OPSVC_CHAIN_ID=c", "OPSVC_SESSION_INDEX=0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func usd(v float64) *float64 { return &v }

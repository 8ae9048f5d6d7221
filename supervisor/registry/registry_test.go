package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// seqIDs returns an id generator giving "c1", "c2", …
func seqIDs() func(time.Time) string {
	n := 0
	return func(time.Time) string { n++; return fmt.Sprintf("c%d", n) }
}

// chain builds a chain for table tests.
func chain(id, unit string, status ChainStatus, from string, updated int) *Chain {
	return &Chain{ID: id, Unit: unit, Status: status, RestartedFrom: from, StartedAt: at(updated), UpdatedAt: at(updated), Sessions: []Session{}}
}

func ids[T interface{ *Chain | Chain | LineageEntry }](list []T) []string {
	var out []string
	for _, v := range list {
		switch c := any(v).(type) {
		case *Chain:
			out = append(out, c.ID)
		case Chain:
			out = append(out, c.ID)
		case LineageEntry:
			out = append(out, fmt.Sprintf("%s@%d", c.ID, c.Depth))
		}
	}
	return out
}

func TestStatusParse(t *testing.T) {
	for _, s := range []string{"running", "complete", "failed", "interrupted", "exhausted", "budget_exceeded"} {
		got, err := ParseChainStatus(s)
		if err != nil || got.String() != s {
			t.Errorf("ParseChainStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"running", "complete", "error", "interrupted"} {
		got, err := ParseSessionStatus(s)
		if err != nil || got.String() != s {
			t.Errorf("ParseSessionStatus(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseChainStatus("done"); err == nil || !strings.Contains(err.Error(), "budget_exceeded") {
		t.Errorf("ParseChainStatus(done) error = %v, want one listing the statuses", err)
	}
	if _, err := ParseSessionStatus("failed"); err == nil {
		t.Error("ParseSessionStatus(failed) succeeded")
	}
	final := map[ChainStatus]bool{ChainComplete: true, ChainFailed: true, ChainExhausted: true, ChainBudgetExceeded: true}
	for _, s := range []ChainStatus{ChainRunning, ChainComplete, ChainFailed, ChainInterrupted, ChainExhausted, ChainBudgetExceeded} {
		if s.Final() != final[s] {
			t.Errorf("%s.Final() = %v", s, s.Final())
		}
	}
}

func TestCreateChain(t *testing.T) {
	r := &Registry{NewID: func(time.Time) string { return "same" }}
	cfg := ChainConfig{Model: "sonnet", MaxTurns: 30, MaxContinuations: 5, MaxBudgetUSD: 5}
	a := r.CreateChain("orch", "do it", "/srv/p", cfg, "", at(0))
	b := r.CreateChain("orch", "do it", "/srv/p", cfg, a.ID, at(1))
	c := r.CreateChain("orch", "do it", "/srv/p", cfg, "", at(2))
	if diff := cmp.Diff([]string{"same", "same-2", "same-3"}, ids(r.Chains)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	want := &Chain{ID: "same-2", Unit: "orch", Task: "do it", Status: ChainRunning, StartedAt: at(1), UpdatedAt: at(1),
		ProjectDir: "/srv/p", RestartedFrom: "same", Config: cfg, Sessions: []Session{}}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("created chain (-want +got):\n%s", diff)
	}
	if r.Find(c.ID) != c || r.Find("nope") != nil {
		t.Error("Find does not return the created chain")
	}

	// The default generator: prefixed, time-stamped, random.
	d := (&Registry{}).CreateChain("u", "", "", ChainConfig{}, "", t0)
	e := (&Registry{}).CreateChain("u", "", "", ChainConfig{}, "", t0)
	if !strings.HasPrefix(d.ID, "c-20260102T030405Z-") || len(d.ID) != len("c-20260102T030405Z-")+12 || d.ID == e.ID {
		t.Errorf("default ids %q, %q: want c-<time>-<12 hex>, distinct", d.ID, e.ID)
	}
}

func TestRecordSession(t *testing.T) {
	ok := func(i, turns int, cost float64) Session {
		return Session{Index: i, Status: SessionComplete, Turns: turns, CostUSD: cost, DurationMS: 1000}
	}
	bad := func(i int) Session {
		return Session{Index: i, Status: SessionError, Turns: 1, CostUSD: 0.5, DurationMS: 10}
	}
	intr := func(i int) Session { return Session{Index: i, Status: SessionInterrupted, Turns: 2, DurationMS: 5} }

	type totals struct {
		Indexes   []int
		Cost      float64
		Turns     int
		Duration  int64
		ConsecErr int
	}
	tests := []struct {
		name string
		rec  []Session
		want totals
	}{
		{"one", []Session{ok(0, 10, 1)}, totals{[]int{0}, 1, 10, 1000, 0}},
		{"append", []Session{ok(0, 10, 1), ok(1, 5, 0.25)}, totals{[]int{0, 1}, 1.25, 15, 2000, 0}},
		{"same index twice counts once", []Session{ok(0, 10, 1), ok(0, 10, 1)}, totals{[]int{0}, 1, 10, 1000, 0}},
		{"replace running by result", []Session{{Index: 0, Status: SessionRunning}, ok(0, 7, 2)}, totals{[]int{0}, 2, 7, 1000, 0}},
		{"out of order kept sorted", []Session{ok(2, 1, 0), ok(0, 1, 0), ok(1, 1, 0)}, totals{[]int{0, 1, 2}, 0, 3, 3000, 0}},
		{"errors count up", []Session{ok(0, 1, 0), bad(1), bad(2)}, totals{[]int{0, 1, 2}, 1, 3, 1020, 2}},
		{"complete resets", []Session{bad(0), bad(1), ok(2, 1, 0)}, totals{[]int{0, 1, 2}, 1, 3, 1020, 0}},
		{"interrupted neither", []Session{bad(0), intr(1), bad(2)}, totals{[]int{0, 1, 2}, 1, 4, 25, 2}},
		{"error re-recorded once", []Session{bad(0), bad(1), bad(1)}, totals{[]int{0, 1}, 1, 2, 20, 2}},
		{"error replaced by complete", []Session{bad(0), bad(1), ok(1, 1, 0)}, totals{[]int{0, 1}, 0.5, 2, 1010, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Registry{NewID: seqIDs()}
			c := r.CreateChain("u", "", "", ChainConfig{}, "", at(0))
			for i, s := range tt.rec {
				if err := r.RecordSession(c.ID, s, at(i+1)); err != nil {
					t.Fatalf("RecordSession(%d): %v", i, err)
				}
			}
			// The duration is wall-clock, from the chain's start to its last change.
			tt.want.Duration = at(len(tt.rec)).Sub(at(0)).Milliseconds()
			got := totals{Cost: c.TotalCostUSD, Turns: c.TotalTurns, Duration: c.TotalDurationMS, ConsecErr: c.ConsecutiveErrors}
			for _, s := range c.Sessions {
				got.Indexes = append(got.Indexes, s.Index)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("after recording (-want +got):\n%s", diff)
			}
			if !c.UpdatedAt.Equal(at(len(tt.rec))) {
				t.Errorf("updated_at = %v, want %v", c.UpdatedAt, at(len(tt.rec)))
			}
		})
	}

	r := &Registry{NewID: seqIDs()}
	c := r.CreateChain("u", "", "", ChainConfig{}, "", at(0))
	if err := r.RecordSession("nope", ok(0, 1, 0), at(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown chain: err = %v, want ErrNotFound", err)
	}
	if err := r.RecordSession(c.ID, Session{Index: -1, Status: SessionComplete}, at(1)); err == nil {
		t.Error("negative index accepted")
	}
	if err := r.RecordSession(c.ID, Session{Index: 0, Status: "done"}, at(1)); err == nil {
		t.Error("unknown session status accepted")
	}
	if len(c.Sessions) != 0 || !c.UpdatedAt.Equal(at(0)) {
		t.Errorf("a refused session changed the chain: %+v", c)
	}
}

func TestSetStatus(t *testing.T) {
	tests := []struct {
		from, to ChainStatus
		wantErr  bool
	}{
		{ChainRunning, ChainComplete, false},
		{ChainRunning, ChainInterrupted, false},
		{ChainInterrupted, ChainFailed, false},
		{ChainRunning, ChainBudgetExceeded, false},
		{ChainComplete, ChainComplete, false},
		{ChainComplete, ChainRunning, true},
		{ChainFailed, ChainInterrupted, true},
		{ChainExhausted, ChainComplete, true},
		{ChainRunning, "stopped", true},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"->"+string(tt.to), func(t *testing.T) {
			r := &Registry{Chains: []*Chain{chain("a", "u", tt.from, "", 0)}}
			err := r.SetStatus("a", tt.to, at(5))
			if (err != nil) != tt.wantErr {
				t.Fatalf("SetStatus = %v, wantErr %v", err, tt.wantErr)
			}
			c := r.Find("a")
			switch {
			case err != nil && (c.Status != tt.from || !c.UpdatedAt.Equal(at(0))):
				t.Errorf("refused change altered the chain: %s at %v", c.Status, c.UpdatedAt)
			case err == nil && c.Status != tt.to:
				t.Errorf("status = %s, want %s", c.Status, tt.to)
			case err == nil && tt.from != tt.to && !c.UpdatedAt.Equal(at(5)):
				t.Errorf("updated_at = %v, want %v", c.UpdatedAt, at(5))
			}
		})
	}
	if err := (&Registry{}).SetStatus("x", ChainFailed, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown chain: err = %v, want ErrNotFound", err)
	}
}

func TestFindIncomplete(t *testing.T) {
	r := &Registry{Chains: []*Chain{
		chain("a", "u", ChainInterrupted, "", 0), // resumed by b
		chain("b", "u", ChainRunning, "a", 1),
		chain("c", "u", ChainComplete, "", 2),
		chain("d", "v", ChainInterrupted, "", 3),
		chain("e", "u", ChainInterrupted, "", 4),
		chain("f", "u", ChainFailed, "e", 5), // resumes e, so e is no longer incomplete
		chain("g", "u", ChainExhausted, "", 6),
		chain("h", "u", ChainInterrupted, "", 7),
	}}
	tests := []struct {
		unit string
		want []string
	}{
		{"u", []string{"b", "h"}},
		{"v", []string{"d"}},
		{"w", nil},
		{"", []string{"b", "d", "h"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ids(r.FindIncomplete(tt.unit))); diff != "" {
			t.Errorf("FindIncomplete(%q) (-want +got):\n%s", tt.unit, diff)
		}
	}
}

func TestLineage(t *testing.T) {
	r := &Registry{Chains: []*Chain{
		chain("root", "u", ChainInterrupted, "gone", 0), // its parent was archived
		chain("a", "u", ChainInterrupted, "root", 1),
		chain("b2", "u", ChainComplete, "a", 3),
		chain("b1", "u", ChainInterrupted, "a", 2),
		chain("c", "u", ChainRunning, "b1", 4),
		chain("other", "u", ChainRunning, "", 5),
		chain("side", "u", ChainComplete, "root", 6), // sibling of a
		chain("x", "u", ChainInterrupted, "y", 7),    // a cycle in a hand-edited file
		chain("y", "u", ChainInterrupted, "x", 8),
	}}
	tests := []struct {
		id   string
		want []string
	}{
		{"root", []string{"root@0", "a@1", "b1@2", "c@3", "b2@2", "side@1"}},
		{"a", []string{"root@0", "a@1", "b1@2", "c@3", "b2@2"}},
		{"c", []string{"root@0", "a@1", "b1@2", "c@3"}},
		{"b2", []string{"root@0", "a@1", "b2@2"}},
		{"other", []string{"other@0"}},
		{"x", []string{"y@0", "x@1"}},
	}
	for _, tt := range tests {
		got, err := r.Lineage(tt.id)
		if err != nil {
			t.Fatalf("Lineage(%s): %v", tt.id, err)
		}
		if diff := cmp.Diff(tt.want, ids(got)); diff != "" {
			t.Errorf("Lineage(%s) (-want +got):\n%s", tt.id, diff)
		}
	}
	if _, err := r.Lineage("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lineage(nope) err = %v, want ErrNotFound", err)
	}
}

func TestArchive(t *testing.T) {
	mk := func() *Registry {
		return &Registry{Chains: []*Chain{
			chain("run-old", "u", ChainRunning, "", 0),
			chain("done-3", "u", ChainComplete, "", 3),
			chain("int-resumed", "u", ChainInterrupted, "", 1),
			chain("failed-2", "u", ChainFailed, "int-resumed", 2),
			chain("int-open", "u", ChainInterrupted, "", 0),
			chain("exh-5", "u", ChainExhausted, "", 5),
			chain("budget-4", "u", ChainBudgetExceeded, "", 4),
		}}
	}
	tests := []struct {
		limit        int
		wantArchived []string
		wantKept     []string
	}{
		{-1, nil, []string{"run-old", "done-3", "int-resumed", "failed-2", "int-open", "exh-5", "budget-4"}},
		{7, nil, []string{"run-old", "done-3", "int-resumed", "failed-2", "int-open", "exh-5", "budget-4"}},
		{5, []string{"int-resumed", "failed-2"}, []string{"run-old", "done-3", "int-open", "exh-5", "budget-4"}},
		{3, []string{"int-resumed", "failed-2", "done-3", "budget-4"}, []string{"run-old", "int-open", "exh-5"}},
		{0, []string{"int-resumed", "failed-2", "done-3", "budget-4", "exh-5"}, []string{"run-old", "int-open"}},
	}
	for _, tt := range tests {
		r := mk()
		got := r.Archive(tt.limit)
		if diff := cmp.Diff(tt.wantArchived, ids(got)); diff != "" {
			t.Errorf("Archive(%d) archived (-want +got):\n%s", tt.limit, diff)
		}
		if diff := cmp.Diff(tt.wantKept, ids(r.Chains)); diff != "" {
			t.Errorf("Archive(%d) kept (-want +got):\n%s", tt.limit, diff)
		}
	}
}

// TestJSONShape pins the registry's field names, which clients read.
func TestJSONShape(t *testing.T) {
	keys := func(v any) []string {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }

	r := &Registry{NewID: seqIDs()}
	c := r.CreateChain("u", "t", "/p", ChainConfig{Model: "m"}, "", t0)
	if err := r.RecordSession(c.ID, Session{Index: 0, Status: SessionComplete, StartedAt: t0, EndedAt: t0}, t0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted("id", "unit", "task", "status", "started_at", "updated_at", "project_dir", "restarted_from",
		"config", "sessions", "total_cost_usd", "total_turns", "total_duration_ms", "consecutive_errors"), keys(c)); diff != "" {
		t.Errorf("chain keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted("model", "max_turns", "max_continuations", "max_budget_usd"), keys(c.Config)); diff != "" {
		t.Errorf("config keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted("index", "session_id", "status", "turns", "cost_usd", "input_tokens", "output_tokens", "duration_ms",
		"hit_max_turns", "handoff_complete", "handoff_file", "error", "started_at", "ended_at"), keys(c.Sessions[0])); diff != "" {
		t.Errorf("session keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted("index", "session_id", "status", "turns", "cost_usd", "input_tokens", "output_tokens", "duration_ms",
		"hit_max_turns", "handoff_complete", "handoff_file", "error"), keys(Session{})); diff != "" {
		t.Errorf("session in progress keys (-want +got):\n%s", diff)
	}
	summary := []string{"id", "unit", "task", "status", "started_at", "updated_at", "restarted_from", "sessions",
		"total_cost_usd", "total_turns", "total_duration_ms"}
	if diff := cmp.Diff(sorted(summary...), keys(r.Summary(c))); diff != "" {
		t.Errorf("summary keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted(append(summary, "depth")...), keys(LineageEntry{ChainSummary: r.Summary(c)})); diff != "" {
		t.Errorf("lineage entry keys (-want +got):\n%s", diff)
	}
	if got := r.Summaries(); len(got) != 1 || got[0].Sessions != 1 {
		t.Errorf("Summaries = %+v, want one chain with sessions = 1", got)
	}
	empty := r.CreateChain("u", "", "", ChainConfig{}, "", t0)
	if data, _ := json.Marshal(empty); !strings.Contains(string(data), `"sessions":[]`) {
		t.Errorf("a chain without sessions encodes as %s, want \"sessions\":[]", data)
	}
}

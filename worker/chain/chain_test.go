package chain

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestStatuses(t *testing.T) {
	final := map[Status]bool{Complete: true, Failed: true, Exhausted: true, BudgetExceeded: true}
	for _, s := range statuses() {
		got, err := ParseStatus(string(s))
		if err != nil || got != s || s.Final() != final[s] {
			t.Errorf("ParseStatus(%q) = %q, %v; Final = %v", s, got, err, s.Final())
		}
	}
	if _, err := ParseStatus("done"); err == nil || !strings.Contains(err.Error(), "budget_exceeded") {
		t.Errorf("ParseStatus(done) = %v, want an error listing the statuses", err)
	}
	for _, s := range sessionStatuses() {
		if got, err := ParseSessionStatus(string(s)); err != nil || got != s {
			t.Errorf("ParseSessionStatus(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseSessionStatus("failed"); err == nil {
		t.Error("ParseSessionStatus(failed) succeeded")
	}
}

// TestRecord: sessions are kept in index order, recording one again replaces it, and the totals
// and the error count come from all of them.
func TestRecord(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := New("c-1", "u", "t", "/p", DefaultConfig(), "", now)
	steps := []Session{
		{Index: 1, Status: SessionError, Turns: 2, CostUSD: 0.5, DurationMS: 10},
		{Index: 0, Status: SessionComplete, Turns: 1, CostUSD: 0.25, DurationMS: 5},
		{Index: 2, Status: SessionError, Turns: 1, CostUSD: 0.25},
		{Index: 2, Status: SessionInterrupted, Turns: 3, CostUSD: 1},
	}
	for i, s := range steps {
		if err := c.Record(s, now.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	want := Totals{Status: Running, Sessions: 3, TotalCostUSD: 1.75, TotalTurns: 6, ConsecutiveErrors: 1}
	if got := c.Totals(); got != want {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	for i, s := range c.Sessions {
		if s.Index != i {
			t.Fatalf("session %d has index %d", i, s.Index)
		}
	}
	// Wall-clock from the start to the last change, not the sum of the sessions' 15 ms.
	if c.TotalDurationMS != 4000 || !c.UpdatedAt.Equal(now.Add(4*time.Second)) {
		t.Fatalf("duration %d, updated %v", c.TotalDurationMS, c.UpdatedAt)
	}
	if err := c.SetStatus(Interrupted, now.Add(9*time.Second)); err != nil || c.TotalDurationMS != 9000 || !c.EndedAt.Equal(now.Add(9*time.Second)) {
		t.Fatalf("interrupted: %v, duration %d, ended %v", err, c.TotalDurationMS, c.EndedAt)
	}
	if err := c.SetStatus(Running, now.Add(10*time.Second)); err != nil || !c.EndedAt.IsZero() {
		t.Fatalf("running again: %v, ended %v", err, c.EndedAt)
	}
	if err := c.Record(Session{Index: -1, Status: SessionComplete}, now); err == nil {
		t.Error("a negative index was recorded")
	}
	if err := c.Record(Session{Index: 3, Status: "done"}, now); err == nil {
		t.Error("an unknown status was recorded")
	}
}

func TestSetStatus(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := New("c-1", "u", "t", "/p", Config{}, "", now)
	for _, step := range []struct {
		to      Status
		wantErr string
	}{
		{Interrupted, ""}, {Running, ""}, {Complete, ""}, {Complete, ""},
		{Interrupted, "has ended complete and cannot become interrupted"}, {"gone", "is not one of"},
	} {
		err := c.SetStatus(step.to, now)
		if (step.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), step.wantErr)) {
			t.Fatalf("SetStatus(%s) = %v, want %q", step.to, err, step.wantErr)
		}
	}
	if c.Status != Complete {
		t.Fatalf("status %s", c.Status)
	}
}

func TestLastHandoff(t *testing.T) {
	dir := t.TempDir()
	full, empty := filepath.Join(dir, "0.md"), filepath.Join(dir, "1.md")
	os.WriteFile(full, []byte("handoff\n"), 0o644)
	os.WriteFile(empty, nil, 0o644)
	c := &Chain{Sessions: []Session{{HandoffFile: full}, {HandoffFile: empty}, {HandoffFile: filepath.Join(dir, "gone.md")}, {}}}
	if got := c.LastHandoff(); got != full {
		t.Fatalf("LastHandoff = %q, want %q", got, full)
	}
	if got := (&Chain{}).LastHandoff(); got != "" {
		t.Fatalf("LastHandoff of no sessions = %q", got)
	}
}

func TestNewID(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	a, b := NewID(now), NewID(now)
	if a == b || !regexp.MustCompile(`^c-20261202T030405Z-[0-9a-f]{12}$`).MatchString(a) || CheckID(a) != nil {
		t.Fatalf("NewID = %q, %q", a, b)
	}
}

func TestCheckID(t *testing.T) {
	for id, bad := range map[string]bool{
		"c-1": false, "c-20261202T030405Z-abc": false, "a.b_c:d": false,
		"": true, ".hidden": true, "..": true, "a/b": true, "a b": true, strings.Repeat("x", MaxIDBytes+1): true,
	} {
		if err := CheckID(id); (err != nil) != bad {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
}

// TestChecks: requests within the bounds pass, each bound is enforced, and a session's error
// text is cut rather than refused.
func TestChecks(t *testing.T) {
	ok := Begin{ID: "c-1", Task: "t", ProjectDir: "/p", Config: DefaultConfig(), Resume: true}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]Begin{
		"task":   {Task: strings.Repeat("t", MaxTaskBytes+1)},
		"dir":    {ProjectDir: strings.Repeat("d", MaxPathBytes+1)},
		"model":  {Config: Config{Model: strings.Repeat("m", MaxModelBytes+1)}},
		"turns":  {Config: Config{MaxTurns: -1}},
		"budget": {Config: Config{MaxBudgetUSD: -0.5}},
		"id":     {ID: "../etc"},
	} {
		if err := b.Check(); err == nil {
			t.Errorf("Begin with a bad %s passed", name)
		}
	}
	r := RecordSession{ChainID: "c-1", Session: Session{Index: 2, Status: SessionError, Error: strings.Repeat("é", MaxErrorBytes)}}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if e := r.Session.Error; len(e) > MaxErrorBytes || !utf8.ValidString(e) || !strings.HasSuffix(e, "…") {
		t.Fatalf("error text of %d bytes, valid %v", len(e), utf8.ValidString(e))
	}
	for name, s := range map[string]Session{
		"index":  {Index: MaxSessionIndex + 1, Status: SessionComplete},
		"status": {Status: "done"},
		"cost":   {Status: SessionComplete, CostUSD: -1},
		"tokens": {Status: SessionComplete, InputTokens: -1},
		"id":     {Status: SessionComplete, SessionID: strings.Repeat("s", MaxSessionIDBytes+1)},
	} {
		if err := (&RecordSession{ChainID: "c-1", Session: s}).Check(); err == nil {
			t.Errorf("a session with a bad %s passed", name)
		}
	}
	for _, f := range []Finish{{ChainID: "c-1", Status: Running}, {ChainID: "c-1", Status: "x"}, {Status: Complete}} {
		if err := f.Check(); err == nil {
			t.Errorf("Finish %+v passed", f)
		}
	}
	if err := (&Finish{ChainID: "c-1", Status: Interrupted, Reason: "stop"}).Check(); err != nil {
		t.Fatal(err)
	}
}

// TestWireShapes: the records keep the JSON shape of registry.json.
func TestWireShapes(t *testing.T) {
	b, err := json.Marshal(New("c-1", "u", "t", "/p", DefaultConfig(), "", time.Unix(0, 0).UTC()))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"c-1","unit":"u","task":"t","status":"running","started_at":"1970-01-01T00:00:00Z","updated_at":"1970-01-01T00:00:00Z","project_dir":"/p","restarted_from":"","config":{"model":"sonnet","max_turns":30,"max_continuations":5,"max_budget_usd":5},"sessions":[],"total_cost_usd":0,"total_turns":0,"total_duration_ms":0,"consecutive_errors":0}`
	if string(b) != want {
		t.Fatalf("chain JSON\n%s\nwant\n%s", b, want)
	}
	b, _ = json.Marshal(Session{Index: 1, Status: SessionComplete})
	if want := `{"index":1,"session_id":"","status":"complete","turns":0,"cost_usd":0,"input_tokens":0,"output_tokens":0,"duration_ms":0,"hit_max_turns":false,"handoff_complete":false,"handoff_file":"","error":""}`; string(b) != want {
		t.Fatalf("session JSON\n%s\nwant\n%s", b, want)
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"}, {"abcdefghij", 10, "abcdefghij"}, {"abcdefghijk", 10, "abcdefg…"}, {"ééééé", 7, "éé…"},
	} {
		if got := Clip(tc.s, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestBounded cuts what an agent reports to what session.record takes.
func TestBounded(t *testing.T) {
	s := Session{Index: 1, Status: SessionComplete, InputTokens: -4, OutputTokens: 1 << 62, CostUSD: math.NaN(), Turns: -1}.Bounded()
	r := RecordSession{ChainID: "c-1", Session: s}
	if err := r.Check(); err != nil || s.InputTokens != 0 || s.CostUSD != 0 || s.Turns != 0 {
		t.Fatalf("bounded %+v: %v", s, err)
	}
	if s := (Session{CostUSD: 5e12}).Bounded(); s.CostUSD != maxBudgetPerChain {
		t.Fatalf("cost %v", s.CostUSD)
	}
}

package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	rec "github.com/opsvc/opsvc/worker/chain"
)

// TestBeginResume: begin with resume interrupts the unit's newest incomplete chain, makes it the
// new chain's restarted_from and carries its newest non-empty handoff over, in one change; asked
// again (its reply lost), begin answers the same and changes nothing.
func TestBeginResume(t *testing.T) { forEachBackend(t, testBeginResume) }

func testBeginResume(t *testing.T, open opener) {
	dir := t.TempDir()
	s := open(t, Options{}, "h1")
	now := time.Unix(1_800_000_000, 0)
	h0 := filepath.Join(dir, "h0.md")
	os.WriteFile(h0, []byte("handoff\n"), 0o644)
	b, err := s.BeginChain("u", rec.Begin{ID: "c-old", Task: "t"}, now)
	if err != nil || b != (rec.Begun{ID: "c-old"}) {
		t.Fatalf("begin = %+v, %v", b, err)
	}
	if _, err := s.RecordSession("u", rec.RecordSession{ChainID: "c-old", Session: Session{Index: 0, Status: SessionComplete, HandoffFile: h0, Turns: 2}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginChain("other", rec.Begin{ID: "c-other", Task: "t"}, now); err != nil {
		t.Fatal(err)
	}
	want := rec.Begun{ID: "c-new", RestartedFrom: "c-old", Handoff: h0}
	for range 2 {
		b, err := s.BeginChain("u", rec.Begin{ID: "c-new", Task: "t", Resume: true}, now)
		if err != nil || b != want {
			t.Fatalf("begin with resume = %+v, %v; want %+v", b, err, want)
		}
	}
	r := view(t, s)
	if len(r.Chains) != 3 || r.Find("c-old").Status != ChainInterrupted || r.Find("c-other").Status != ChainRunning ||
		r.Find("c-new").RestartedFrom != "c-old" || r.Find("c-new").Status != ChainRunning {
		t.Fatalf("chains after resume: %+v", r.Summaries())
	}
	// Nothing left to resume: a third chain starts fresh.
	b, err = s.BeginChain("u", rec.Begin{Task: "t", Resume: true}, now)
	if err != nil || b.RestartedFrom != "c-new" {
		t.Fatalf("begin = %+v, %v; want c-new resumed (it is running, so incomplete)", b, err)
	}
}

// TestRecordAndFinishForUnit: a unit touches its own chains only, and a chain that has ended
// keeps its status.
func TestRecordAndFinishForUnit(t *testing.T) { forEachBackend(t, testRecordAndFinishForUnit) }

func testRecordAndFinishForUnit(t *testing.T, open opener) {
	s := open(t, Options{}, "h1")
	now := time.Unix(1_800_000_000, 0)
	if _, err := s.BeginChain("u", rec.Begin{ID: "c-1", Task: "t"}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginChain("v", rec.Begin{ID: "c-1", Task: "t"}, now); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("begin of a taken id = %v, want ErrNotAllowed", err)
	}
	if _, err := s.RecordSession("v", rec.RecordSession{ChainID: "c-1", Session: Session{Status: SessionComplete}}, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record into another unit's chain = %v, want ErrNotFound", err)
	}
	tot, err := s.RecordSession("u", rec.RecordSession{ChainID: "c-1", Session: Session{Status: SessionError, CostUSD: 1}}, now)
	if err != nil || tot != (rec.Totals{Status: ChainRunning, Sessions: 1, TotalCostUSD: 1, ConsecutiveErrors: 1}) {
		t.Fatalf("record = %+v, %v", tot, err)
	}
	if _, err := s.FinishChain("v", rec.Finish{ChainID: "c-1", Status: ChainFailed}, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finish of another unit's chain = %v, want ErrNotFound", err)
	}
	for range 2 {
		if tot, err := s.FinishChain("u", rec.Finish{ChainID: "c-1", Status: ChainFailed}, now); err != nil || tot.Status != ChainFailed {
			t.Fatalf("finish = %+v, %v", tot, err)
		}
	}
	if _, err := s.FinishChain("u", rec.Finish{ChainID: "c-1", Status: ChainInterrupted}, now); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("finish of an ended chain as interrupted = %v, want ErrNotAllowed", err)
	}
}

// TestConcurrentResumes: workers of one unit resuming at once each get a chain of their own, and
// one chain is never resumed twice.
func TestConcurrentResumes(t *testing.T) { forEachBackend(t, testConcurrentResumes) }

func testConcurrentResumes(t *testing.T, open opener) {
	s := open(t, Options{}, "h1")
	now := time.Unix(1_800_000_000, 0)
	if _, err := s.BeginChain("u", rec.Begin{ID: "c-0", Task: "t"}, now); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	from := make([]string, n)
	for i := range n {
		wg.Go(func() {
			b, err := s.BeginChain("u", rec.Begin{ID: "c-" + strconv.Itoa(i+1), Task: "t", Resume: true}, now)
			if err != nil {
				t.Error(err)
			}
			from[i] = b.RestartedFrom
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, f := range from {
		if seen[f] {
			t.Fatalf("chain %q resumed twice: %q", f, from)
		}
		seen[f] = true
	}
	if r := view(t, s); len(r.Chains) != n+1 || len(r.FindIncomplete("u")) != 1 {
		t.Fatalf("%d chains, %d incomplete; want %d and 1 (the last one)", len(r.Chains), len(r.FindIncomplete("u")), n+1)
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func evs(seqs ...uint64) []event {
	out := make([]event, len(seqs))
	for i, s := range seqs {
		out[i] = event{Seq: s, Type: "unit.log"}
	}
	return out
}

func TestSeqGaps(t *testing.T) {
	for _, tc := range []struct {
		seqs          []uint64
		gaps, missing uint64
		disorder      int
	}{
		{[]uint64{1, 2, 3}, 0, 0, 0},
		{[]uint64{1, 2, 5, 6, 9}, 2, 4, 0},
		{[]uint64{1, 2, 2, 3}, 0, 0, 1},
		{nil, 0, 0, 0},
	} {
		g, m, d := seqGaps(evs(tc.seqs...))
		if g != tc.gaps || m != tc.missing || d != tc.disorder {
			t.Errorf("seqGaps(%v) = %d gaps, %d missing, %d disorder; want %d, %d, %d", tc.seqs, g, m, d, tc.gaps, tc.missing, tc.disorder)
		}
	}
}

func TestSilentGaps(t *testing.T) {
	stored := evs(1, 2, 5, 6)
	live := evs(1, 2, 3, 4, 5, 6, 7)
	live = append(live, event{Seq: 0, Type: "unit.started"}) // given no seq: no gap
	if silent, marked := silentGaps(stored, live); silent != 2 || marked != 0 {
		t.Errorf("unmarked gap: silent %d, marked %d; want 2, 0", silent, marked)
	}
	stored[2].Type = "daemon.recovered"
	stored[2].Data = json.RawMessage(`{"lost":2}`)
	if silent, marked := silentGaps(stored, live); silent != 0 || marked != 2 {
		t.Errorf("marked gap: silent %d, marked %d; want 0, 2", silent, marked)
	}
	if silent, _ := silentGaps(nil, live); silent != len(live) {
		t.Errorf("nothing stored: silent %d; want %d", silent, len(live))
	}
}

func TestRoots(t *testing.T) {
	ps := []proc{
		{pid: 10, ppid: 1, unit: "a"},
		{pid: 11, ppid: 10, unit: "a"},
		{pid: 12, ppid: 1, unit: "a"}, // escaped: reparented
		{pid: 20, ppid: 1, unit: "b"},
		{pid: 21, ppid: 10, unit: "b"}, // another unit's child is a root of its own unit
	}
	got := roots(ps)
	if got["a"] != 2 || got["b"] != 2 {
		t.Errorf("roots = %v; want a:2 b:2", got)
	}
}

func TestRenderVerdicts(t *testing.T) {
	ok := &result{name: "ok", did: "x | y"}
	ok.check(true, "held %d", 1)
	bad := &result{name: "bad"}
	bad.check(true, "fine")
	bad.check(false, "broken")
	skipped := &result{name: "skip"}
	skipped.skip("no tmpfs")
	out := render([]*result{ok, bad, skipped}, time.Second)
	for _, want := range []string{"| PASS | ok | x \\| y | held 1 |", "| FAIL | bad |", "fine; **NOT HELD:** broken", "| SKIP | skip |", "skipped: no tmpfs", "1 passed, 1 failed, 1 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestProcsFindsMarkedProcess(t *testing.T) {
	f := &fixture{token: "faultstest" + strconv.Itoa(os.Getpid())}
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), "FAULTS_TOKEN="+f.token, "FAULTS_UNIT=u")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	ps := f.procs()
	if len(ps) != 1 || ps[0].pid != cmd.Process.Pid || ps[0].unit != "u" || ps[0].ppid != os.Getpid() || ps[0].start == 0 {
		t.Fatalf("procs() = %+v; want the one marked sleep %d, unit u, parent %d", ps, cmd.Process.Pid, os.Getpid())
	}
	cmd.Process.Kill()
	cmd.Wait()
	if ps := f.procs(); len(ps) != 0 {
		t.Fatalf("procs() after the kill = %+v; want none", ps)
	}
}

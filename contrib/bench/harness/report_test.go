package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMedianAndP95(t *testing.T) {
	if _, ok := median(nil); ok {
		t.Error("median of nothing is ok")
	}
	if v, _ := median([]float64{3, 1, 2}); v != 2 {
		t.Errorf("median odd = %v, want 2", v)
	}
	if v, _ := median([]float64{4, 1, 3, 2}); v != 2.5 {
		t.Errorf("median even = %v, want 2.5", v)
	}
	xs := make([]float64, 20)
	for i := range xs {
		xs[i] = float64(20 - i) // 20..1
	}
	if v, _ := p95(xs); v != 19 {
		t.Errorf("p95 of 1..20 = %v, want 19 (nearest rank)", v)
	}
	if xs[0] != 20 {
		t.Error("p95 sorted its argument in place")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/opsvc/opsvc/supervisor
BenchmarkPlan/1000-steady-2   	    7206	    163385 ns/op	   32768 B/op	       1 allocs/op
BenchmarkFanout-2   	  230000	      4520 ns/op	 221251 events/s	 0 lagged-subs	     534 B/op	       6 allocs/op
BenchmarkBroken-2 --- FAIL
PASS
`
	got := parseGoBench(strings.NewReader(out))
	want := map[string]map[string]float64{
		"BenchmarkPlan/1000-steady": {"ns/op": 163385, "B/op": 32768, "allocs/op": 1},
		"BenchmarkFanout":           {"ns/op": 4520, "events/s": 221251, "lagged-subs": 0, "B/op": 534, "allocs/op": 6},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseGoBench (-want +got):\n%s", d)
	}
}

// sample is a run with opsvc, the floor and two peers.
func sample() *results {
	r := &results{
		Meta: meta{NList: []int{100, 500}, DetailN: 100, Reps: 3, StopReps: 3, IdleS: 20, StopTimeout: 2, NProc: 2},
		GoBench: map[string]map[string]float64{
			"BenchmarkFanout": {"ns/op": 5000, "events/s": 150000},
		},
	}
	ops := &peerResult{Name: "opsvc", Version: "opsvc 0.1.0",
		Cold: []coldSample{{N: 100, AllS: 0.10}, {N: 100, AllS: 0.12}, {N: 100, AllS: 0.11},
			{N: 500, AllS: 0.70}, {N: 500, AllS: 0.72}, {N: 500, AllS: 0.71}},
		Mem:     []memSample{{N: 500, PSSKB: 22 * 1024, RSSKB: 22 * 1024, Procs: 1}, {N: 500, Restart: true, PSSKB: 90 * 1024}},
		Crash:   []float64{0.002, 0.003, 0.0025},
		Recrash: []float64{0.002},
		Idle:    &idleSample{N: 100, CPUS: 0.0002},
		Stop: []stopSample{{Mode: "graceful", GoneS: ptr(0.26), CmdS: 0.05},
			{Mode: "ignore", GoneS: ptr(2.05), CmdS: 0.05}},
	}
	ops.Problems = []string{"something odd"}
	floor := &peerResult{Name: "floor", Cold: []coldSample{{N: 500, AllS: 0.68}, {N: 100, AllS: 0.1}}}
	runit := &peerResult{Name: "runit", Version: "runit 2.1.2",
		Cold:    []coldSample{{N: 100, AllS: 0.21}, {N: 500, AllS: 1.17}},
		Crash:   []float64{0.0038},
		Recrash: []float64{1.004},
		Mem:     []memSample{{N: 500, PSSKB: 46 * 1024, Procs: 501}},
	}
	sup := &peerResult{Name: "supervisord", Cold: []coldSample{{N: 100, AllS: 1.7}, {N: 500, AllS: 3.3}}, Crash: []float64{1.01}}
	s6 := &peerResult{Name: "s6", Skipped: "s6-svscan not found"}
	r.Peers = []*peerResult{ops, floor, sup, runit, s6}
	r.Opsvc.ReloadS = []float64{0.105, 0.107, 0.2}
	zero := 0
	r.Opsvc.ReloadOthers = &zero
	r.Opsvc.Registry = []regSample{{FS: "ext4", Procs: 4, Updates: 1000, PerSec: 240}}
	r.Opsvc.StopVariants = []stopSample{{Mode: "ignore", Via: "SIGTERM to the daemon", GoneS: ptr(2.01), CmdS: 0.001},
		{Mode: "graceful", Via: "`opsvc stop NAME…` (waits)", CmdS: 60, Note: "the command did not return within 1m0s"}}
	return r
}

func TestTargets(t *testing.T) {
	met := map[string]string{}
	for _, tg := range sample().targets() {
		switch {
		case tg.met == nil:
			met[tg.what] = "?"
		case *tg.met:
			met[tg.what] = "yes"
		default:
			met[tg.what] = "no"
		}
	}
	want := map[string]string{
		"cold start of 500 ≤ 0.5× the fastest peer":                                            "no",  // 0.71 > 0.585
		"cold start of 500 ≤ 1.2× the floor":                                                   "yes", // 0.71 / 0.68
		"PSS at 500 ≤ 20 MiB":                                                                  "no",
		"crash → new pid p50 ≤ 0.8× the best peer":                                             "yes", // 2.5 ms vs 3.8 ms
		"no re-crash throttle at restart_delay = \"0\" (re-crash restarts as fast as a crash)": "yes",
		"idle CPU ≤ 1 ms per 20 s with 100 children":                                           "yes",
		"graceful stop-all ≤ 0.25 s":                                                           "no",
		"TERM-ignored stop-all ≤ 2.1 s":                                                        "yes",
		"cold start of 100 ≤ 0.8× the fastest peer":                                            "yes", // 0.11 vs 0.21
		"cold start of 100 ≤ 0.2× supervisord":                                                 "yes", // 0.11 vs 1.7
		"restart p50 < 5 ms":                                                                   "yes",
		"reload p95 < 150 ms, zero other units touched":                                        "no", // p95 200 ms
		"events/s to 10 subscribers ≥ 100k/s":                                                  "yes",
		"registry updates/s across 4 processes ≥ 500/s (state dir on disk)":                    "no",
	}
	if d := cmp.Diff(want, met); d != "" {
		t.Errorf("targets (-want +got):\n%s", d)
	}
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	sample().writeMarkdown(&b)
	md := b.String()
	for _, want := range []string{
		"| measurement | opsvc | floor | supervisord | runit |",
		"| (a) cold start, N=500: all N pids alive | 0.710 s | 0.680 s | 3.300 s | 1.170 s |",
		"| (a) cold start, N=500: all N pids alive | 1.04× | 0.22× | 0.61× |",
		"| (c') supervisor PSS sum, N=500, after every child was killed and restarted once | 90.0 MiB |",
		"| (e) stop-all, graceful: stop command returned | 0.050 s (1 run) | — | — | — |",
		"Skipped: s6 (s6-svscan not found).",
		"- opsvc: something odd",
		"| cold start of 500 ≤ 1.2× the floor | opsvc 0.710 s, floor 0.680 s: 1.04× | yes |",
		"| reload: unit.stopped events of units not edited (must be 0) | 0 |",
		"| stop-all, TERM ignored, by SIGTERM to the daemon (N=100): all gone / command returned | 2.010 s / 0.001 s |",
		"| stop-all, graceful, by `opsvc stop NAME…` (waits) (N=100): all gone / command returned | not all gone (the command did not return within 1m0s) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| (c) supervisor processes, N=500 | 1.00×") {
		t.Error("the ratio table compares process counts")
	}
}

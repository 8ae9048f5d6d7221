package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func scaleResults() *results {
	other := 0
	return &results{
		Meta: meta{Date: "2026-12-02T16:00:00Z", NList: []int{100, 1000, 10000}, DetailN: 100, IdleS: 10, NProc: 2},
		Peers: []*peerResult{
			{Name: "opsvc",
				Cold: []coldSample{{N: 100, AllS: 0.1}, {N: 1000, AllS: 1.0}, {N: 10000, AllS: 12}},
				Mem:  []memSample{{N: 100, PSSKB: 17000}, {N: 1000, PSSKB: 30000}, {N: 10000, PSSKB: 17000 + 9900*20}},
				Scale: []scaleSample{
					{N: 100, IdleCPUS: 0, IdleS: 10, CrashS: []float64{0.002, 0.003}, ReloadS: []float64{0.010, 0.020}, ReloadOther: &other},
					{N: 10000, IdleCPUS: 0.02, IdleS: 10, CrashS: []float64{0.004, 0.005}, ReloadS: []float64{0.040, 0.060},
						StatusJSONS: []float64{0.2, 0.3}, ListS: []float64{0.05, 0.06}, LoopMS: []float64{1, 2, 30}, CrashLoop: 100, LoopRestarts: 900, SharedOut: true},
				}},
			{Name: "floor",
				Cold:  []coldSample{{N: 100, AllS: 0.1}, {N: 1000, AllS: 0.95}, {N: 10000, AllS: 10}},
				Mem:   []memSample{{N: 100, PSSKB: 5000}, {N: 1000, PSSKB: 6000}, {N: 10000, PSSKB: 15000}},
				Scale: []scaleSample{{N: 100, IdleS: 10, CrashS: []float64{0.002}}, {N: 10000, IdleS: 10, CrashS: []float64{0.003}}}},
			{Name: "runit", NotRun: []int{10000}, Cold: []coldSample{{N: 100, AllS: 0.2}}},
		},
		GoBench: map[string]map[string]float64{"BenchmarkFanout": {"events/s": 250000}},
	}
}

// TestScaleGoals: each large-install goal is judged from the figures at the
// largest N, and a peer left out at an N says so.
func TestScaleGoals(t *testing.T) {
	var b bytes.Buffer
	scaleResults().writeScale(&b)
	out := b.String()
	for _, want := range []string{
		"| cold start of 1000 ≤ 1.1× the floor | opsvc 1.000 s, floor 0.950 s: 1.05× | yes |",
		"| cold start of 10000 ≤ 1.1× the floor | opsvc 12.0 s, floor 10.0 s: 1.20× | no |",
		"| reload p95 ≤ 30 ms at 100 units | 20.0 ms | yes |",
		"| reload p95 ≤ 50 ms at 10000 units | 60.0 ms | no |",
		"| `opsvc status --json` of 10000 units ≤ 150 ms | p50 250.0 ms | no |",
		"| `opsvc list` of 10000 units ≤ 100 ms | p50 55.0 ms | yes |",
		"| PSS per unit ≤ 25 KiB at 10000 | 20.0 KiB | yes |",
		"| idle CPU ≤ 1 ms/s with 10000 idle units | 2.00 ms/s | no |",
		"| crash → restart p50 ≤ 3 ms at 10000 units | 4.5 ms | no |",
		"| loop latency p99 ≤ 20 ms, 10000 units, 1% crash-looping | 30.00 ms | no |",
		"| events/s to 10 subscribers ≥ 200k/s | 250000/s (BenchmarkFanout) | yes |",
		"not run",
		`| 10000 (stderr = "stdout") |`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scale section lacks %q:\n%s", want, out)
		}
	}
}

// TestPlotScale: the plot is a PNG drawn from the results (when gnuplot is
// installed).
func TestPlotScale(t *testing.T) {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		t.Skip("gnuplot not installed (Debian: gnuplot-nox)")
	}
	dir := t.TempDir()
	if err := scaleResults().plotScale(dir); err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(filepath.Join(dir, "scale.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Errorf("scale.png: %d bytes, not a PNG of a plot", len(png))
	}
	dat, _ := os.ReadFile(filepath.Join(dir, "scale.dat"))
	if !strings.Contains(string(dat), "# opsvc\n100 0.1 ") || !strings.Contains(string(dat), "# floor\n") {
		t.Errorf("scale.dat:\n%s", dat)
	}
}

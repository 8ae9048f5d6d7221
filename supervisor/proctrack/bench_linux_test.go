package proctrack

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkRecordSave is the cost of one change to the record (a run added
// and one ended) and its write, with n runs tracked.
func BenchmarkRecordSave(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			tr, err := Open(Options{StateDir: b.TempDir(), NoCgroup: true})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			self := os.Getpid()
			live := make([]*Run, 0, n)
			for range n {
				r := tr.Begin("unit")
				r.Started(self)
				live = append(live, r)
			}
			tr.save()
			b.ResetTimer()
			for i := range b.N {
				r := tr.Begin("unit")
				r.Started(self)
				old := live[i%n]
				live[i%n] = r
				old.finish()
				tr.save()
			}
			b.StopTimer()
			// Close must not signal the benchmark's own process group.
			for _, r := range live {
				r.finish()
			}
		})
	}
}

// startSleepers starts n processes that carry a marker in their environment
// and sleep until killed; track makes each the main process of a run.
func startSleepers(tb testing.TB, tr *Tracker, n int, track bool) []*Run {
	tb.Helper()
	var runs []*Run
	var cmds []*exec.Cmd
	tb.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
		for _, c := range cmds {
			c.Wait()
		}
	})
	for i := range n {
		c := exec.Command("/bin/sleep", "600")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var r *Run
		if track {
			r = tr.Begin("w" + strconv.Itoa(i))
			c.Env = []string{"A=1", r.Env()}
		} else {
			c.Env = []string{"A=1", MarkerVar + "=" + tr.key + ":stray:" + strconv.Itoa(i)}
		}
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		cmds = append(cmds, c)
		if r != nil {
			r.Started(c.Process.Pid)
			runs = append(runs, r)
		}
	}
	return runs
}

// BenchmarkScanMarker is one pass over /proc looking for one run's escaped
// processes, with 2000 other processes carrying markers: the main processes
// of tracked runs ("tracked"), or processes the tracker does not know
// ("unknown"). procs is how many processes a pass lists, the machine's
// others included.
func BenchmarkScanMarker(b *testing.B) {
	for _, mode := range []string{"tracked", "unknown"} {
		b.Run(mode, func(b *testing.B) {
			tr, err := Open(Options{StateDir: b.TempDir(), NoCgroup: true})
			if err != nil {
				b.Fatal(err)
			}
			runs := startSleepers(b, tr, 2000, mode == "tracked")
			defer func() {
				for _, r := range runs {
					r.finish()
				}
				tr.Close()
			}()
			var pr procReader
			want := map[string]bool{"none": true}
			b.ResetTimer()
			for range b.N {
				if got := tr.scanMarker(&pr, want); len(got) != 0 {
					b.Fatalf("found %v", got)
				}
			}
			b.StopTimer()
			// The machine's other processes are in every pass too.
			b.ReportMetric(float64(len(pr.list())), "procs")
		})
	}
}

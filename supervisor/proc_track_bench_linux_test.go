package supervisor

import (
	"syscall"
	"testing"

	"github.com/opsvc/opsvc/supervisor/proctrack"
)

// BenchmarkStartStop forks /bin/true and ends its run, untracked, with the
// process-group fallback and with a cgroup per run.
func BenchmarkStartStop(b *testing.B) {
	for _, mode := range []string{"untracked", "fallback", "cgroup"} {
		b.Run(mode, func(b *testing.B) {
			r, err := NewExecRunner(false)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			if mode != "untracked" {
				if _, err := r.trackWith(proctrack.Options{StateDir: b.TempDir(), NoCgroup: mode == "fallback"}); err != nil {
					b.Fatal(err)
				}
				if dir, why := r.track.Cgroup(); mode == "cgroup" && dir == "" {
					b.Skipf("no writable cgroup v2 here: %s", why)
				}
			}
			b.ResetTimer()
			for range b.N {
				p, err := r.Start(Spec{Unit: "b", Argv: []string{"/bin/true"}})
				if err != nil {
					b.Fatal(err)
				}
				<-p.Done()
				p.Signal(syscall.SIGKILL)
			}
		})
	}
}

package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opsvc/opsvc/config"
)

// fakeRunner starts fake processes: each exits at once with code exit, or
// (exit < 0) runs until signalled. It records when each start happened.
type fakeRunner struct {
	mu     sync.Mutex
	exit   int
	starts []time.Time
	kills  []time.Time
}

type fakeProc struct {
	r      *fakeRunner
	pid    int
	done   chan struct{}
	once   sync.Once
	st     ExitStatus
	onExit func()
}

func (r *fakeRunner) Start(spec Spec) (Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, time.Now())
	p := &fakeProc{r: r, pid: 1000 + len(r.starts), done: make(chan struct{}), onExit: spec.OnExit}
	if r.exit >= 0 {
		p.end(ExitStatus{Code: r.exit})
	}
	return p, nil
}

func (p *fakeProc) end(st ExitStatus) {
	p.once.Do(func() {
		p.st = st
		close(p.done)
		if p.onExit != nil {
			p.onExit()
		}
	})
}

func (p *fakeProc) PID() int              { return p.pid }
func (p *fakeProc) Done() <-chan struct{} { return p.done }
func (p *fakeProc) Exit() ExitStatus      { return p.st }
func (p *fakeProc) Signal(sig syscall.Signal) error {
	switch sig {
	case syscall.SIGKILL:
		select {
		case <-p.done: // already gone: the group kill after an exit
		default:
			p.r.mu.Lock()
			p.r.kills = append(p.r.kills, time.Now())
			p.r.mu.Unlock()
		}
		p.end(ExitStatus{Code: 137, Signal: "SIGKILL"})
	case syscall.SIGTERM:
		p.end(ExitStatus{Code: 143, Signal: "SIGTERM"})
	}
	return nil
}

func (r *fakeRunner) times() (starts, kills []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.starts...), append([]time.Time(nil), r.kills...)
}

// runFake runs a supervisor on one unit file with a fake runner inside a
// synctest bubble until cond holds, then shuts it down.
func runFake(t *testing.T, unitFile string, r *fakeRunner, cond func() bool) {
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	os.WriteFile(filepath.Join(units, "u.toml"), []byte(unitFile), 0o644)
	sup, err := New(Options{Paths: config.Paths{Units: units, State: dir, Socket: filepath.Join(dir, "s")}, Runner: r, Settings: config.DefaultSettings(), NoNotifySockets: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	for i := 0; !cond(); i++ {
		if i > 10000 {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond) // fake time: advances only when everything is blocked
		synctest.Wait()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBackoffArithmetic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{exit: 1}
		runFake(t, "[service]\nexec = [\"/bin/true\"]\nrestart_delay = \"100ms\"\nrestart_delay_max = \"1s\"\nstart_limit_burst = 100\nstart_limit_interval = \"1m\"\n", r,
			func() bool { s, _ := r.times(); return len(s) >= 7 })
		starts, _ := r.times()
		want := []time.Duration{100, 200, 400, 800, 1000, 1000}
		for i, w := range want {
			if got := starts[i+1].Sub(starts[i]); got != w*time.Millisecond {
				t.Errorf("delay before start %d = %v, want %v", i+2, got, w*time.Millisecond)
			}
		}
	})
}

func TestWatchdogArithmetic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{exit: -1} // runs until killed, never pings
		runFake(t, "[service]\nexec = [\"/bin/true\"]\nwatchdog = \"300ms\"\nrestart_delay = \"50ms\"\n", r,
			func() bool { s, _ := r.times(); return len(s) >= 3 })
		starts, kills := r.times()
		if len(kills) < 2 {
			t.Fatalf("kills = %v, want at least 2", kills)
		}
		for i := 0; i < 2; i++ {
			if got := kills[i].Sub(starts[i]); got != 300*time.Millisecond {
				t.Errorf("watchdog kill %d after %v, want 300ms", i+1, got)
			}
			// Consecutive failures double the delay: 50ms, then 100ms.
			if got, want := starts[i+1].Sub(kills[i]), (50*time.Millisecond)<<i; got != want {
				t.Errorf("restart %d after %v, want %v", i+1, got, want)
			}
		}
	})
}

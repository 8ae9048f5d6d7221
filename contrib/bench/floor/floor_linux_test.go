package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newFloor copies the benchmark's child program into a temp dir (it waits on
// a FIFO beside itself) and returns a floor running it.
func newFloor(t *testing.T, mode string) *floor {
	t.Helper()
	src, err := os.ReadFile("../child.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	child := filepath.Join(dir, "child.sh")
	if err := os.WriteFile(child, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "child.fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("floortest-%d-%d:", os.Getpid(), time.Now().UnixNano())
	return &floor{child: child, mode: mode, prefix: prefix, running: make(map[int]*os.Process)}
}

func argv0(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	a, _, _ := bytes.Cut(data, []byte{0})
	return string(a)
}

// tagged returns the floor's children whose last exec carries their tag, by tag.
func (f *floor) tagged() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int)
	for pid := range f.running {
		if a := argv0(pid); len(a) > len(f.prefix) && a[:len(f.prefix)] == f.prefix {
			out[a] = pid
		}
	}
	return out
}

// waitFor checks cond every 10 ms until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestFloorStartsRestartsAndStops(t *testing.T) {
	f := newFloor(t, "sleep")
	f.start(5, 2)
	waitFor(t, "5 tagged children", func() bool { return len(f.tagged()) == 5 })
	before := f.tagged()
	tag := f.tag(3)
	old, ok := before[tag]
	if !ok {
		t.Fatalf("no child tagged %s among %v", tag, before)
	}
	syscall.Kill(old, syscall.SIGKILL)
	waitFor(t, "child 3 restarted", func() bool {
		now := f.tagged()
		return now[tag] != 0 && now[tag] != old && len(now) == 5
	})
	pids := f.tagged()
	if !f.stop(2*time.Second, 10*time.Second) {
		t.Fatal("stop did not end every child")
	}
	for tag, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pid %d) still exists after stop: %v", tag, pid, err)
		}
	}
}

func TestFloorKillsChildrenThatIgnoreTERM(t *testing.T) {
	f := newFloor(t, "ignore")
	f.start(3, 2)
	waitFor(t, "3 tagged children", func() bool { return len(f.tagged()) == 3 })
	pids := f.tagged()
	t0 := time.Now()
	if !f.stop(300*time.Millisecond, 10*time.Second) {
		t.Fatal("stop did not end every child")
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("children that ignore SIGTERM were gone after %v, before the stop timeout", d)
	}
	for tag, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pid %d) still exists after stop: %v", tag, pid, err)
		}
	}
}

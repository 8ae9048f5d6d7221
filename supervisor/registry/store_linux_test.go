package registry

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitForLockWaiter waits until /proc/locks shows this process blocked on a
// flock of kind ("READ" or "WRITE") on the registry's lock file.
func waitForLockWaiter(t *testing.T, dir, kind string) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, LockName))
	if err != nil {
		t.Fatal(err)
	}
	ino := ":" + strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	pid := strconv.Itoa(os.Getpid())
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Skipf("no /proc/locks: %v", err)
		}
		for line := range strings.Lines(string(data)) {
			// "7: -> FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF"
			f := strings.Fields(line)
			if len(f) >= 7 && f[1] == "->" && f[2] == "FLOCK" && f[4] == kind && f[5] == pid && strings.HasSuffix(f[6], ino) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s waiter on %s in /proc/locks within %v", kind, LockName, waitLimit)
		}
		<-tick.C
	}
}

// TestViewWaitsForUpdate: a View blocks while another process holds the
// exclusive lock inside Update, and then sees that Update's result.
func TestViewWaitsForUpdate(t *testing.T) {
	dir := t.TempDir()
	fixedIDs(t, dir, counterA)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(t, "hold", dir, 0, 0)
	w.expect(t, "locked")

	turns := make(chan int, 1)
	go func() {
		var n int
		err := s.View(func(r *Registry) error { n = r.Find(counterA).TotalTurns; return nil })
		if err != nil {
			n = -1
		}
		turns <- n
	}()
	waitForLockWaiter(t, dir, "READ")
	select {
	case n := <-turns:
		t.Fatalf("View returned (turns %d) while an Update held the lock", n)
	default:
	}
	if _, err := w.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-turns:
		if n != 1 {
			t.Errorf("View saw %d turns, want 1: the Update it waited for", n)
		}
	case <-time.After(waitLimit):
		t.Fatal("View still blocked after the Update finished")
	}
	if err := w.wait(t); err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// TestViewsShareTheLock: a View runs while another process is inside a View;
// an Update waits for that View.
func TestViewsShareTheLock(t *testing.T) {
	dir := t.TempDir()
	fixedIDs(t, dir, counterA)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(t, "hold-view", dir, 0, 0)
	w.expect(t, "locked")

	viewed := make(chan error, 1)
	go func() { viewed <- s.View(func(*Registry) error { return nil }) }()
	select {
	case err := <-viewed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("View blocked while another process only viewed")
	}

	updated := make(chan error, 1)
	go func() {
		updated <- s.Update(func(r *Registry) error { return bump(r, counterA, 0, time.Now()) })
	}()
	waitForLockWaiter(t, dir, "WRITE")
	select {
	case err := <-updated:
		t.Fatalf("Update returned (%v) while a View held the shared lock", err)
	default:
	}
	if _, err := w.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-updated:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Update still blocked after the View finished")
	}
	if err := w.wait(t); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if got := view(t, s).Find(counterA).TotalTurns; got != 1 {
		t.Errorf("counter-a = %d, want 1 (the View's change must not be written)", got)
	}
}

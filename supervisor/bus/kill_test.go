package bus

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestSIGKILLMidStream re-executes the test binary as a publisher that publishes in a loop
// (rotating often), kills it with SIGKILL once it reported enough events, and checks that the
// log it leaves behind opens, replays gap-free, and continues the sequence.
func TestSIGKILLMidStream(t *testing.T) {
	const reported = 3000
	const maxBytes = 256 << 10
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=publish",
		helperDirEnv+"="+dir,
		helperMaxEnv+"="+strconv.Itoa(maxBytes))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	got := make(chan uint64, 1)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err == nil && n >= reported {
				got <- n
				return
			}
		}
	}()
	var seen uint64
	select {
	case n, ok := <-got:
		if !ok {
			t.Fatal("publisher ended before reporting enough events")
		}
		seen = n
	case <-time.After(30 * time.Second):
		t.Fatal("publisher reported too few events in 30s")
	}
	// It is still publishing (its stdout pipe is not read any more, so it soon blocks in a
	// print, or is killed in the middle of a Publish).
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.String() != "signal: killed" {
		t.Fatalf("publisher ended with %v, want signal: killed", err)
	}

	b := openT(t, dir, Options{MaxBytes: maxBytes, SourceRate: Unlimited})
	last := b.LastSeq()
	if last < seen {
		t.Fatalf("LastSeq %d after reopen, but the publisher reported %d stored", last, seen)
	}
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	all := collect(t, s)
	if len(all) == 0 {
		t.Fatal("nothing replayed")
	}
	wantConsecutive(t, all, all[0].Seq, last)
	if all[0].Seq == 1 {
		t.Fatalf("no rotation happened (%d events kept); the test wants one", len(all))
	}
	s, err = b.Subscribe(seen-100, Filter{Unit: "helper"}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantConsecutive(t, collect(t, s), seen-99, last)
	if e := b.Publish(Event{Type: "after.crash"}); e.Seq != last+1 {
		t.Fatalf("Publish after the crash got seq %d, want %d", e.Seq, last+1)
	}
}

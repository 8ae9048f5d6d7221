package logs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFilesFaultOnFullDisk: when the log files cannot be written, Fault is told once with
// the error, the lines are counted as dropped and reported, the ring keeps them, and Fault
// is told nil once the files take lines again.
func TestFilesFaultOnFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v): run as root to test a full disk", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)

	var mu sync.Mutex
	var faults []error
	changed := make(chan struct{}, 16)
	l := newFiles(t, Options{Dir: dir, DropReportInterval: 10 * time.Millisecond, Fault: func(err error) {
		mu.Lock()
		faults = append(faults, err)
		mu.Unlock()
		changed <- struct{}{}
	}})
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	line := strings.Repeat("x", 1000)
	deadline := time.After(waitFor)
	for i := 0; ; i++ {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: line})
		select {
		case <-changed:
		case <-time.After(time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no fault reported on a full disk")
		}
		break
	}
	for range 50 {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: line})
	}
	if len(l.Tail("web", 0)) < 50 {
		t.Fatal("the ring lost lines the files could not take")
	}
	os.Remove(filepath.Join(dir, "filler"))
	for i := 0; ; i++ {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: "space again"})
		select {
		case <-changed:
		case <-time.After(time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no recovery reported once space returned")
		}
		break
	}
	mu.Lock()
	defer mu.Unlock()
	if len(faults) != 2 || faults[0] == nil || !errors.Is(faults[0], unix.ENOSPC) || faults[1] != nil {
		t.Fatalf("faults %v, want the failure then nil", faults)
	}
	if l.Dropped() == 0 {
		t.Fatal("no line counted as dropped")
	}
}

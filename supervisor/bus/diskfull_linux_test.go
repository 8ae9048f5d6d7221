package bus

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallFS mounts a tmpfs of size bytes for the test, or skips it where mounting is not allowed.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v): run as root to test a full disk", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return path
		}
	}
}

// TestDiskFull: with the state directory full, events are still sent live but marked unstored
// and never given a seq; daemon.degraded is sent once and kept in memory; when space returns
// the log is written again, daemon.recovered is stored, and the stored seqs have no gap.
func TestDiskFull(t *testing.T) {
	dir := smallFS(t, "256k")
	b := openT(t, dir, Options{RetryInterval: 10 * time.Millisecond, Interval: time.Hour})
	for range 5 {
		b.Publish(Event{Type: "unit.started", Unit: "web"})
	}
	sub, err := b.Subscribe(b.LastSeq(), Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	filler := fill(t, dir)
	// The log's last page may still have room for a few events.
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("events are still stored on a full disk")
		}
		e := b.Publish(Event{Type: "unit.status", Unit: "web", Data: map[string]any{"i": -1}})
		if e.Unstored {
			break
		}
		if got := next(t, sub); got.Seq != e.Seq {
			t.Fatalf("live seq %d, want %d", got.Seq, e.Seq)
		}
	}
	last := b.LastSeq()
	for i := range 19 {
		e := b.Publish(Event{Type: "unit.status", Unit: "web", Data: map[string]any{"i": i}})
		if e.Seq != 0 || !e.Unstored {
			t.Fatalf("event published on a full disk got seq %d, unstored %v", e.Seq, e.Unstored)
		}
	}
	if got := b.LastSeq(); got != last {
		t.Fatalf("LastSeq = %d on a full disk, want %d (no seq for what was not stored)", got, last)
	}
	faults := b.Faults()
	if len(faults) != 1 || faults[0].Component != "events" || faults[0].Event.Type != TypeDegraded {
		t.Fatalf("faults %+v, want the event log", faults)
	}
	// The live feed: the first unstored event, then daemon.degraded (once), then the rest.
	var degraded int
	for range 21 {
		e := next(t, sub)
		if e.Seq != 0 || !e.Unstored {
			t.Fatalf("live event %+v, want unstored with seq 0", e)
		}
		if e.Type == TypeDegraded {
			degraded++
		}
	}
	if degraded != 1 {
		t.Fatalf("%d daemon.degraded events, want 1", degraded)
	}
	// A follower that comes later still learns of the fault.
	late, err := b.Subscribe(b.LastSeq(), Filter{Types: []string{"daemon.*"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, late); e.Type != TypeDegraded {
		t.Fatalf("a new follower got %+v first, want daemon.degraded", e)
	}
	late.Close()

	// Space returns: the retry stores daemon.recovered by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	e := next(t, sub)
	if e.Type != TypeRecovered || e.Seq != last+1 || e.Unstored {
		t.Fatalf("after space returned got %+v, want daemon.recovered stored as seq %d", e, last+1)
	}
	if f := b.Faults(); len(f) != 0 {
		t.Fatalf("faults after recovery: %+v", f)
	}
	if e := b.Publish(Event{Type: "unit.stopped", Unit: "web"}); e.Seq != last+2 {
		t.Fatalf("next event seq %d, want %d", e.Seq, last+2)
	}
	wantConsecutive(t, stored(t, b), 1, last+2)

	// Full again, then space returns while events come: the first event that is stored
	// is followed by daemon.recovered, still without a gap.
	filler = fill(t, dir)
	for i := 0; !b.Publish(Event{Type: "unit.status", Unit: "web"}).Unstored; i++ {
		if i == 1000 {
			t.Fatal("events are still stored on a full disk")
		}
	}
	os.Remove(filler)
	b.Publish(Event{Type: "unit.status", Unit: "web"})
	all := stored(t, b)
	wantConsecutive(t, all, 1, b.LastSeq())
	var recovered int
	for _, e := range all {
		if e.Type == TypeRecovered {
			recovered++
		}
	}
	if recovered != 2 {
		t.Fatalf("%d daemon.recovered stored, want 2", recovered)
	}
}

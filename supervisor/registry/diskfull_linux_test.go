package registry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWriteFaultOnFullDisk: a write that fails for want of space is reported through
// WriteFault and leaves the last good registry.json; the first write that succeeds once
// space returns is reported with nil.
func TestWriteFaultOnFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v): run as root to test a full disk", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)

	var reports []error
	s, err := Open(dir, Options{WriteFault: func(err error) { reports = append(reports, err) }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	add := func(task string) error {
		return s.Update(func(r *Registry) error {
			r.CreateChain("orch", task, "/src", ChainConfig{}, "", now)
			return nil
		})
	}
	if err := add("first"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	err = add("second")
	if err == nil || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("update on a full disk: %v, want no space left", err)
	}
	if now, _ := os.ReadFile(s.Path()); string(now) != string(good) {
		t.Fatal("a failed write changed registry.json")
	}
	os.Remove(filler)
	if err := add("third"); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 3 || reports[0] != nil || reports[1] == nil || reports[2] != nil {
		t.Fatalf("reports %v, want nil, the failure, nil", reports)
	}
}

//go:build unix

package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/unit/regfile"
)

// TestStateFilesRefuseWhatIsNotRegular: the enable/disable choices and the kept instances are
// read from the state directory on the loop; a FIFO in their place is refused at once (it would
// wait for a writer forever), a file over the cap is refused, and a missing file is none.
func TestStateFilesRefuseWhatIsNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxChoicesSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	read := map[string]func(string) error{
		"choices":   func(p string) error { _, err := readChoices(p); return err },
		"instances": func(p string) error { _, err := readKeptInstances(p); return err },
	}
	for name, f := range read {
		done := make(chan error, 1)
		go func() { done <- f(fifo) }()
		select {
		case err := <-done:
			var nr *regfile.NotRegularError
			if !errors.As(err, &nr) {
				t.Errorf("%s from a FIFO: %v, want it refused as not a regular file", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: reading a FIFO waits for a writer", name)
		}
		var tl *regfile.TooLargeError
		if err := f(big); !errors.As(err, &tl) {
			t.Errorf("%s from a file over the cap: %v, want it refused as too large", name, err)
		}
		if err := f(filepath.Join(dir, "missing")); err != nil {
			t.Errorf("%s from a missing file: %v, want none", name, err)
		}
	}
}

//go:build unix

package unit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadEnvironmentFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	write(t, good, "# comment\n; comment\n\nA=1\nexport B = two words \nC=\"quoted\"\nD='single'\nE=\nF=a=b\n")
	got, err := ReadEnvironmentFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"A", "1"}, {"B", "two words"}, {"C", "quoted"}, {"D", "single"}, {"E", ""}, {"F", "a=b"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("variables (-want +got):\n%s", diff)
	}

	missing := filepath.Join(dir, "missing.env")
	if got, err := ReadEnvironmentFile("-" + missing); err != nil || got != nil {
		t.Errorf("optional missing file = %v, %v; want nothing", got, err)
	}
	if _, err := ReadEnvironmentFile(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "unit: environment file "+missing+": no such file") {
		t.Errorf("missing file = %v", err)
	}

	bad := filepath.Join(dir, "bad.env")
	write(t, bad, "A=1\nnot a variable\n")
	if _, err := ReadEnvironmentFile(bad); err == nil || err.Error() != "unit: environment file "+bad+":2: want KEY=VALUE" {
		t.Errorf("bad line = %v", err)
	}
}

// TestEnvironmentFileBounds: what would block a read forever or never end
// is refused at once, and so is a file or a line too long.
func TestEnvironmentFileBounds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "env.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.env")
	write(t, big, strings.Repeat("A=123456789\n", MaxEnvironmentFileSize/12+1))
	long := filepath.Join(dir, "long.env")
	write(t, long, "A=1\nB="+strings.Repeat("x", MaxEnvironmentLineLen)+"\n")
	for entry, want := range map[string]string{
		fifo:            "unit: environment file " + fifo + ": is a named pipe (FIFO), not a regular file (environment_files name regular files)",
		"-" + fifo:      "unit: environment file " + fifo + ": is a named pipe (FIFO), not a regular file (environment_files name regular files)",
		"/dev/zero":     "unit: environment file /dev/zero: is a character device, not a regular file (environment_files name regular files)",
		dir:             "unit: environment file " + dir + ": is a directory, not a regular file (environment_files name regular files)",
		big:             "unit: environment file " + big + ": file too large (262152 bytes, the limit is 262144) (an environment file holds KEY=VALUE lines; keep it short)",
		long:            "unit: environment file " + long + ":2: line longer than 65536 bytes",
		"/dev/null/sub": "unit: environment file /dev/null/sub: not a directory (check that it exists and is readable, or mark it optional with a leading \"-\")",
	} {
		if _, err := ReadEnvironmentFile(entry); err == nil || err.Error() != want {
			t.Errorf("ReadEnvironmentFile(%s) = %v\nwant %s", entry, err, want)
		}
	}
	if _, err := os.Stat(fifo); err != nil {
		t.Fatal(err)
	}
}

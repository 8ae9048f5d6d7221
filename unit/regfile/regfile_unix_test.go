//go:build unix

package regfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(small, 4); err != nil || string(data) != "A=1\n" {
		t.Fatalf("ReadFile(small, 4) = %q, %v", data, err)
	}
	_, err := ReadFile(small, 3)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Size != 4 || tl.Limit != 3 {
		t.Fatalf("ReadFile(small, 3) = %v, want a *TooLargeError of 4 bytes", err)
	}
	if want := "read " + small + ": file too large (4 bytes, the limit is 3)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(link, 10); err != nil {
		t.Errorf("ReadFile(symlink to a regular file) = %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
	}
}

// TestRefusesWhatIsNotARegularFile: a FIFO with no writer would block an
// open or a read forever, /dev/zero never ends; both are refused at once.
func TestRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifo-link")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for path, want := range map[string]string{
		fifo:        "is a named pipe (FIFO), not a regular file",
		fifoLink:    "is a named pipe (FIFO), not a regular file",
		"/dev/zero": "is a character device, not a regular file",
		dir:         "is a directory, not a regular file",
		sock:        "is a socket, not a regular file",
	} {
		_, err := ReadFile(path, 1<<20)
		var nr *NotRegularError
		if !errors.As(err, &nr) || err.Error() != "open "+path+": "+want {
			t.Errorf("ReadFile(%s) = %v, want %q", path, err, want)
		}
	}

	// An open FIFO (as if swapped in after the check before opening) is
	// refused by Read, which never reads it.
	f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Read(f, 1<<20); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("Read(open FIFO) = %v, want a refusal", err)
	}
}

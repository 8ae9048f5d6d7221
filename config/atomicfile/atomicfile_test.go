package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := Write(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != "two" {
		t.Fatalf("content = %q, %v; want two", data, err)
	}
	if fi, err := os.Stat(path); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o640) {
		t.Errorf("mode = %v, %v; want 0640", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only f.json: %v", len(entries), entries)
	}
}

func TestWriteFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write fails after the
	// temporary file is complete.
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("new"), 0o644); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("new"), 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write in a missing directory = %v, want fs.ErrNotExist", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %v, want f and d only (no temporary file left)", entries)
	}
	if data, _ := os.ReadFile(path); string(data) != "old" {
		t.Errorf("f = %q, want old", data)
	}
}

func TestWriteWith(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen string
	err := WriteWith(path, []byte("new"), 0o600, func(f *os.File) error {
		seen = f.Name()
		return nil
	})
	if err != nil || filepath.Dir(seen) != dir || seen == path {
		t.Fatalf("WriteWith = %v; prepare saw %q, want a temporary file beside %s", err, seen, path)
	}
	refused := errors.New("refused")
	if err := WriteWith(path, []byte("newer"), 0o600, func(*os.File) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("WriteWith with a failing prepare = %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "new" {
		t.Errorf("f = %q, want new", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v, want f only", entries)
	}
}

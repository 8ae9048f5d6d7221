package logs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWindowsFilesSink: without journald, a unit's lines go to a size-capped
// file in the directory; a unit name with ":" gets a file of its own (not a
// stream of another file), and the file rotates at its cap.
func TestWindowsFilesSink(t *testing.T) {
	dir := t.TempDir()
	l, err := New(Options{Dir: dir, FileMaxBytes: 4096, JournalSocket: NoJournal})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 100)
	for range 100 {
		l.Write(Line{Time: time.Now(), Unit: "web:1", Stream: "stdout", Text: text})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if FileName("web:1") != "web_1.log" {
		t.Fatalf("FileName(web:1) = %q", FileName("web:1"))
	}
	if _, err := os.Stat(filepath.Join(dir, "web")); err == nil {
		t.Fatal(`a file "web" was made: the lines went to one of its streams`)
	}
	for _, name := range []string{"web_1.log", "web_1.log.1"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, over its 4096 cap", name, fi.Size())
		}
	}
	lines := readFileTail(dir, "web:1", 1<<20, 1000)
	if len(lines) == 0 || lines[len(lines)-1].Text != text {
		t.Fatalf("read back %d lines", len(lines))
	}
}

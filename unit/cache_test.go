package unit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLoadCachedReparsesOnlyChanges: a load through a cache parses a file
// again only when it changed, and sees every change, also one that keeps
// the size and mtime of the file.
func TestLoadCachedReparsesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	write(t, a, unitText("a1"))
	write(t, b, unitText("b1"))
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{a, b} {
		mustDo(t, os.Chtimes(p, old, old))
	}
	c := NewCache()
	load := func() *Set {
		t.Helper()
		s, err := LoadCached(c, dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := load()
	if got := c.Stats(); got.Parsed != 2 || s.Units["a"].Description != "a1" {
		t.Fatalf("first load: %+v, a = %q", got, s.Units["a"].Description)
	}
	s = load()
	if got := c.Stats(); got.Parsed != 2 || got.Stat != 2 || s.Units["b"].Description != "b1" {
		t.Fatalf("unchanged load: %+v", got)
	}

	// Same size, new mtime: read, found the same by content.
	now := time.Now().Add(-time.Minute)
	mustDo(t, os.Chtimes(a, now, now))
	load()
	if got := c.Stats(); got.Parsed != 2 || got.Hashed != 1 {
		t.Fatalf("touched: %+v", got)
	}

	// New content of the same size: the new mtime is enough.
	write(t, b, unitText("b2"))
	s = load()
	if got := s.Units["b"].Description; got != "b2" {
		t.Fatalf("b after an edit of the same size = %q, want b2", got)
	}
	if got := c.Stats(); got.Parsed != 3 {
		t.Fatalf("after the edit: %+v, want 3 parsed", got)
	}

	// A removed file leaves the cache.
	mustDo(t, os.Remove(b))
	if s = load(); s.Units["b"] != nil {
		t.Fatal("b still loaded after its removal")
	}
	c.mu.Lock()
	_, kept := c.files[filepath.Join(dir, "b.toml")]
	c.mu.Unlock()
	if kept {
		t.Error("the cache kept the entry of a removed file")
	}
}

// TestLoadCachedRacyFile: a file read within racyWindow of its mtime is read
// again on the next load, so a same-size rewrite in the same clock tick is
// seen.
func TestLoadCachedRacyFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	write(t, a, unitText("x1"))
	mt := time.Now().Add(time.Hour) // never racyWindow older than a read
	mustDo(t, os.Chtimes(a, mt, mt))
	c := NewCache()
	if _, err := LoadCached(c, dir); err != nil {
		t.Fatal(err)
	}
	write(t, a, unitText("x2")) // same size
	mustDo(t, os.Chtimes(a, mt, mt))
	s, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Units["a"].Description; got != "x2" {
		t.Fatalf("a = %q after a same-size rewrite with the same mtime, want x2", got)
	}
}

// TestLoadCachedReusesValidUnits: an unchanged valid unit is not built
// again; one with a problem is, so an executable that appears later makes
// it valid without an edit of its file.
func TestLoadCachedReusesValidUnits(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.toml"), unitText("a"))
	prog := filepath.Join(dir, "run.sh")
	write(t, filepath.Join(dir, "b.toml"), "[service]\nexec = [\"./run.sh\"]\n")
	c := NewCache()
	s, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Units["b"] != nil || len(s.Problems["b"]) == 0 {
		t.Fatalf("b without its program: units %v, problems %v", s.Units["b"], s.Problems["b"])
	}
	first := s.Units["a"]
	mustDo(t, os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755))
	s, err = LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Units["b"] == nil {
		t.Fatalf("b still invalid after its program appeared: %v", s.Problems["b"])
	}
	if s.Units["a"] != first {
		t.Error("unchanged valid unit a was built again")
	}
	if got := c.Stats(); got.Reused != 1 || got.Built != 3 {
		t.Errorf("stats %+v, want a reused once, 3 builds (a, b, b)", got)
	}
}

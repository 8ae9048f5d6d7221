package unit

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchDir writes n unit files like the benchmark harness's into a new
// directory.
func benchDir(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	for i := range n {
		text := fmt.Sprintf("[unit]\ndescription = \"p%04d\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"always\"\nrestart_delay = \"0\"\nstop_timeout = \"2s\"\n", i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%04d.toml", i)), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkLoad reads a directory of 1000 units from scratch.
func BenchmarkLoad(b *testing.B) {
	dir := benchDir(b, 1000)
	for b.Loop() {
		s, err := Load(dir)
		if err != nil || len(s.Units) != 1000 {
			b.Fatalf("Load: %d units, %v", len(s.Units), err)
		}
	}
}

// BenchmarkLoadCachedOneChange reads a directory of 1000 units through a
// cache after one file of it changed.
func BenchmarkLoadCachedOneChange(b *testing.B) {
	dir := benchDir(b, 1000)
	c := NewCache()
	if _, err := LoadCached(c, dir); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		text := fmt.Sprintf("[unit]\ndescription = \"edit %d\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n", i)
		if err := os.WriteFile(filepath.Join(dir, "p0001.toml"), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		s, err := LoadCached(c, dir)
		if err != nil || s.Units["p0001"].Description != fmt.Sprintf("edit %d", i) {
			b.Fatalf("LoadCached: %v", err)
		}
	}
}

// benchOneChange edits one file of n units and loads the directory again,
// with load, each iteration.
func benchOneChange(b *testing.B, n int, load func(c *Cache, prev *Set, dir string) (*Set, error)) {
	dir := benchDir(b, n)
	c := NewCache()
	prev, err := LoadCached(c, dir)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		text := fmt.Sprintf("[unit]\ndescription = \"edit %d\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n", i)
		if err := os.WriteFile(filepath.Join(dir, "p0001.toml"), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		prev, err = load(c, prev, dir)
		if err != nil || prev.Units["p0001"].Description != fmt.Sprintf("edit %d", i) {
			b.Fatalf("load: %v", err)
		}
	}
}

// BenchmarkReloadOneOf compares a whole cached load with LoadChanged after
// an edit of one file among 1000 and 10,000.
func BenchmarkReloadOneOf(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("%d-whole", n), func(b *testing.B) {
			benchOneChange(b, n, func(c *Cache, _ *Set, dir string) (*Set, error) { return LoadCached(c, dir) })
		})
		b.Run(fmt.Sprintf("%d-changed", n), func(b *testing.B) {
			benchOneChange(b, n, func(c *Cache, prev *Set, _ string) (*Set, error) {
				return LoadChanged(c, prev, []string{"p0001.toml"})
			})
		})
	}
}

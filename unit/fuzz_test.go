package unit

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opsvc/opsvc/unit/tomldoc"
)

// FuzzLoad feeds arbitrary bytes to the loader as a unit file, a drop-in
// and a template. It must never panic, and every result must be well formed.
// The seeds are the golden inputs and testdata/fuzz/FuzzLoad (files past
// the bounds on keys, tables, nesting and key length), so go test runs them.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	dropins, _ := filepath.Glob(filepath.Join("testdata", "*.d", "*.toml"))
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata")
	}
	for _, file := range append(seeds, dropins...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tomldoc.NewIndex(string(data)) // also on documents that do not parse
		fsys := fstest.MapFS{
			"u.toml":       {Data: data},
			"u.d/10.toml":  {Data: data},
			"t@.toml":      {Data: data},
			"t@x.toml":     {},
			"tick.sh":      {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
			"not-exec.sh":  {Data: []byte("#!/bin/sh\n")},
			"cycle-b.toml": {Data: []byte("[unit]\nrequires = [\"u\"]\n[service]\nexec = [\"./tick.sh\"]\n")},
		}
		// As LoadFS, with a short decode time bound: a document slow to
		// decode is reported invalid either way, and the fuzzer moves on.
		ld, err := newLoader(fsys, "/units")
		if err != nil {
			t.Fatalf("LoadFS: %v", err)
		}
		ld.timeout = 50 * time.Millisecond
		s, err := ld.load()
		if err != nil {
			t.Fatalf("LoadFS: %v", err)
		}
		for _, name := range []string{"u", "t@x"} {
			_, valid := s.Units[name]
			_, invalid := s.Problems[name]
			if valid == invalid {
				t.Errorf("unit %s: in Units %v, in Problems %v; want exactly one", name, valid, invalid)
			}
		}
		for name, u := range s.Units {
			if len(u.Hash) != 64 || u.Name != name || len(u.Sources) == 0 {
				t.Errorf("unit %s malformed: name %q, hash %q, sources %q", name, u.Name, u.Hash, u.Sources)
			}
			if _, err := s.Annotate(name); err != nil {
				t.Errorf("Annotate(%s) of a valid unit: %v", name, err)
			}
		}
		for name, probs := range s.Problems {
			if len(probs) == 0 {
				t.Errorf("unit %s has an empty problem list", name)
			}
			for _, p := range probs {
				if p.File == "" || p.Line < 1 || p.Col < 1 || p.Msg == "" {
					t.Errorf("malformed problem of %s: %#v", name, p)
				}
			}
		}
		if u, err := s.Instance("t@y"); (u == nil) == (err == nil) {
			t.Errorf("Instance(t@y) = %v, %v; want exactly one", u, err)
		}
	})
}

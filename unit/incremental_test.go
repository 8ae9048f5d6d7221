package unit

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadChanged follows edits of a units directory with LoadChanged and
// checks each result against a whole load, and that an edit that reaches
// no other unit builds only the edited one.
func TestLoadChanged(t *testing.T) {
	dir := t.TempDir()
	extra := t.TempDir()
	write(t, filepath.Join(dir, "a.toml"), unitText("a1"))
	write(t, filepath.Join(dir, "b.toml"), "[unit]\ndescription = \"b1\"\nrequires = [\"a\"]\n[service]\nexec = [\"/bin/sh\"]\n")
	write(t, filepath.Join(dir, "t@.toml"), unitText("tmpl %i"))
	write(t, filepath.Join(dir, "t@1.toml"), "")
	write(t, filepath.Join(extra, "a.d", "x.toml"), "[service]\nenvironment = { X = \"1\" }\n")
	c := NewCache()
	prev, err := LoadCached(c, dir, extra)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what    string
		do      func()
		entries []string
		only    bool // only the edited unit is built again
	}{
		{"edit a unit", func() { write(t, filepath.Join(dir, "a.toml"), unitText("a2")) }, []string{"a.toml"}, true},
		{"add a drop-in", func() { write(t, filepath.Join(dir, "a.d", "y.toml"), "[unit]\ndescription = \"a3\"\n") }, []string{"a.d", "a.d/y.toml"}, true},
		{"break a unit", func() { write(t, filepath.Join(dir, "a.toml"), "[service\n") }, []string{"a.toml"}, true},
		{"mend it", func() { write(t, filepath.Join(dir, "a.toml"), unitText("a4")) }, []string{"a.toml"}, false},
		{"edit a unit that requires another", func() {
			write(t, filepath.Join(dir, "b.toml"), "[unit]\ndescription = \"b2\"\nrequires = [\"a\"]\n[service]\nexec = [\"/bin/sh\"]\n")
		}, []string{"b.toml"}, true},
		{"drop a requirement", func() { write(t, filepath.Join(dir, "b.toml"), unitText("b3")) }, []string{"b.toml"}, false},
		{"edit an instance file", func() { write(t, filepath.Join(dir, "t@1.toml"), "[unit]\ndescription = \"one\"\n") }, []string{"t@1.toml"}, true},
		{"edit a template", func() { write(t, filepath.Join(dir, "t@.toml"), unitText("tmpl2 %i")) }, []string{"t@.toml"}, false},
		{"add a unit", func() { write(t, filepath.Join(dir, "c.toml"), unitText("c1")) }, []string{"c.toml"}, false},
		{"remove a unit", func() { mustDo(t, os.Remove(filepath.Join(dir, "a.toml"))) }, []string{"a.toml"}, false},
		{"remove a drop-in directory", func() { mustDo(t, os.RemoveAll(filepath.Join(dir, "a.d"))) }, []string{"a.d"}, false},
		{"an entry of no unit", func() { write(t, filepath.Join(dir, "bad name.toml"), unitText("x")) }, []string{"bad name.toml"}, false},
	}
	for _, st := range steps {
		st.do()
		s, err := LoadChanged(c, prev, st.entries, extra)
		if err != nil {
			t.Fatalf("%s: LoadChanged: %v", st.what, err)
		}
		full, err := LoadWithDropins(dir, extra)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fingerprint(s), fingerprint(full); got != want {
			t.Fatalf("%s: LoadChanged made\n%s\nwant (a whole load)\n%s", st.what, got, want)
		}
		names, only := s.Changed()
		if only != st.only {
			t.Errorf("%s: Changed() only = %v, want %v (names %v)", st.what, only, st.only, names)
		}
		if only && len(names) != 1 {
			t.Errorf("%s: Changed() = %v, want the edited unit alone", st.what, names)
		}
		prev = s
	}
	if d := prev.Units["c"]; d == nil || d.Description != "c1" {
		t.Fatalf("c after the steps: %+v", d)
	}
}

// TestLoadChangedReadsOnlyThose checks that a LoadChanged reads no file but
// the changed ones: the others are neither parsed nor stat'd.
func TestLoadChangedReadsOnlyThose(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c", "d"} {
		write(t, filepath.Join(dir, n+".toml"), unitText(n))
	}
	c := NewCache()
	prev, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	write(t, filepath.Join(dir, "b.toml"), unitText("b2"))
	s, err := LoadChanged(c, prev, []string{"b.toml"})
	if err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	if got := after.Parsed + after.Hashed + after.Stat - before.Parsed - before.Hashed - before.Stat; got != 1 {
		t.Errorf("files looked at: %d, want 1 (stats before %+v, after %+v)", got, before, after)
	}
	if s.Units["b"].Description != "b2" || s.Units["a"] != prev.Units["a"] {
		t.Errorf("b = %q, a kept = %v", s.Units["b"].Description, s.Units["a"] == prev.Units["a"])
	}
}

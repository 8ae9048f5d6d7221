package tomldoc

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var lim = Limits{Keys: 100, Tables: 10, Depth: 8, KeyLen: 64}

func TestIndexPositions(t *testing.T) {
	src := "\ufeff# comment with key = \"x\"\n" + // line 1
		"[unit]\n" + // 2
		"description = \"\"\"\n" + // 3
		"fake = 1\n" + // 4: inside a multi-line string
		"\"\"\"\n" + // 5
		"  after = [ \"a\",   # comment\n" + // 6
		"    'b' ]\n" + // 7
		"[service]\n" + // 8
		"environment.PORT = \"1\"\n" + // 9
		"\"quoted key\" = 'x'\n" + // 10
		"env = { A = \"1\", B = { C = 2 } }\n" + // 11
		"[ service . inner ]\n" + // 12
		"x = 1979-05-27 07:32:00Z\n" + // 13
		"y = '''\n[not]\nz = 1'''\n" + // 14-16
		"'lit.key' = [[1, 2], [3]]\n" + // 17
		"\"esc\\u0041\" = 1\n" // 18
	var doc map[string]any
	if _, err := toml.Decode(src, &doc); err != nil {
		t.Fatalf("test document does not parse: %v", err)
	}
	x := NewIndex(src)
	for _, tt := range []struct {
		path     []string
		key, val Pos
	}{
		{[]string{"unit"}, Pos{2, 2}, Pos{2, 2}},
		{[]string{"unit", "description"}, Pos{3, 1}, Pos{3, 15}},
		{[]string{"unit", "after"}, Pos{6, 3}, Pos{6, 11}},
		{[]string{"unit", "after", Elem(0)}, Pos{}, Pos{6, 13}},
		{[]string{"unit", "after", Elem(1)}, Pos{}, Pos{7, 5}},
		{[]string{"service", "environment"}, Pos{9, 1}, Pos{9, 1}},
		{[]string{"service", "environment", "PORT"}, Pos{9, 13}, Pos{9, 20}},
		{[]string{"service", "quoted key"}, Pos{10, 1}, Pos{10, 16}},
		{[]string{"service", "env", "A"}, Pos{11, 9}, Pos{11, 13}},
		{[]string{"service", "env", "B", "C"}, Pos{11, 24}, Pos{11, 28}},
		{[]string{"service", "inner"}, Pos{12, 13}, Pos{12, 13}},
		{[]string{"service", "inner", "x"}, Pos{13, 1}, Pos{13, 5}},
		{[]string{"service", "inner", "y"}, Pos{14, 1}, Pos{14, 5}},
		{[]string{"service", "inner", "lit.key", Elem(0), Elem(1)}, Pos{}, Pos{17, 18}},
		{[]string{"service", "inner", "lit.key", Elem(1), Elem(0)}, Pos{}, Pos{17, 23}},
		{[]string{"service", "inner", "escA"}, Pos{18, 1}, Pos{18, 15}},
	} {
		if got := x.Key(tt.path...); got != tt.key {
			t.Errorf("key %q at %v, want %v", tt.path, got, tt.key)
		}
		if got := x.Value(tt.path...); got != tt.val {
			t.Errorf("value of %q at %v, want %v", tt.path, got, tt.val)
		}
	}
	for _, p := range [][]string{{"unit", "fake"}, {"not"}, {"service", "inner", "z"}, {}, {"nothing"}} {
		if got := x.Key(p...); got.Valid() {
			t.Errorf("key %q found at %v", p, got)
		}
	}
}

func TestUnescapeBasic(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:       "plain",
		`a\"b\\c\tz`:  "a\"b\\c\tz",
		`\u00e9\x41`:  "éA",
		`\U0001F600`:  "😀",
		`\u12`:        `\u12`,
		`\q`:          `\q`,
		`trailing\`:   `trailing\`,
		`\uD800 half`: `\uD800 half`,
	} {
		if got := unescapeBasic(in); got != want {
			t.Errorf("unescapeBasic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	keys := func(n int) string {
		var b strings.Builder
		b.WriteString("[t]\n")
		for i := range n {
			fmt.Fprintf(&b, "k%d = %d\n", i, i)
		}
		return b.String()
	}
	for _, tt := range []struct {
		name, src string
		want      []string // LimitError texts with positions
	}{
		{"within", keys(99) + "a.b.c.d.e.f = [1]\n", nil},
		{"keys", keys(102), []string{"102:1: too many keys (102, the limit is 100)"}},
		{"keys in inline tables", "x = {" + strings.Repeat("a = 1, ", 100) + "b = 2}\n",
			[]string{"1:699: too many keys (102, the limit is 100)"}},
		{"tables", strings.Repeat("[a]\n", 12), []string{"11:1: too many tables (12, the limit is 10)"}},
		{"inline tables", "x = [" + strings.Repeat("{}, ", 12) + "]\n", []string{"1:46: too many tables (12, the limit is 10)"}},
		{"dotted key", "[a]\n" + strings.Repeat("a.", 20) + "z = 1\n", []string{"2:15: nested too deeply (22 levels, the limit is 8)"}},
		{"header", "[" + strings.Repeat("a.", 8) + "b]\n", []string{"1:18: nested too deeply (9 levels, the limit is 8)"}},
		{"array of tables", "[[a.b.c.d.e.f.g]]\nh = 1\n", []string{"2:1: nested too deeply (9 levels, the limit is 8)"}},
		{"inline", "x = " + strings.Repeat("{a=", 50) + "1" + strings.Repeat("}", 50) + "\n",
			[]string{"1:27: nested too deeply (51 levels, the limit is 8)", "1:35: too many tables (50, the limit is 10)",
				"1:99: key too long (101 bytes, the limit is 64)"}},
		{"arrays", "x = " + strings.Repeat("[", 50) + "1" + strings.Repeat("]", 50) + "\n", []string{"1:13: nested too deeply (51 levels, the limit is 8)"}},
		{"inside strings", "x = '''\n" + strings.Repeat("[a]\nb.c.d.e.f.g.h.i.j = {}\n", 20) + "'''\ny = \"[[[[[[[[[[\"\n", nil},
		{"long key", "[" + strings.Repeat("t", 40) + "]\n" + strings.Repeat("k", 24) + " = 1\n",
			[]string{"2:1: key too long (65 bytes, the limit is 64)"}},
		{"long quoted key", "'" + strings.Repeat("t", 40) + "'.\"" + strings.Repeat("k", 20) + "\" = 1\n",
			[]string{"1:44: key too long (65 bytes, the limit is 64)"}},
		{"unclosed", "x = [[[[[[[[[[[", []string{"1:13: nested too deeply (11 levels, the limit is 8)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range Check(tt.src, lim) {
				got = append(got, fmt.Sprintf("%d:%d: %v", e.Pos.Line, e.Pos.Col, e))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Check =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestHostileShapes feeds the shapes that take the decoder quadratic time
// and memory, at sizes where it takes seconds and gigabytes: Decode refuses
// them before decoding.
func TestHostileShapes(t *testing.T) {
	real := Limits{Keys: 4096, Tables: 256, Depth: 8, KeyLen: 1024}
	for name, src := range map[string]string{
		"long dotted key": "[service]\n" + strings.Repeat("a.", 32000) + "z = 1\n",
		"long header":     "[" + strings.Repeat("a.", 32000) + "z]\n",
		"nested inline":   "x = " + strings.Repeat("{a=", 16000) + "1" + strings.Repeat("}", 16000) + "\n",
		"nested arrays":   "x = " + strings.Repeat("[", 64000) + strings.Repeat("]", 64000) + "\n",
		"many tables":     strings.Repeat("[[a]]\n", 20000),
		"long key":        "[" + strings.Repeat("a", 200000) + "]\n" + strings.Repeat("k = 1\n", 4000),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(src, real, time.Minute)
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("Decode = %v, want a *LimitError", err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	d, err := Decode("[a]\nb = [1, 2]\nc.d = 'x'\n", lim, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(d.Data); got != "map[a:map[b:[1 2] c:map[d:x]]]" {
		t.Errorf("Data = %s", got)
	}
	if !d.Meta.IsDefined("a", "c", "d") {
		t.Errorf("Meta lacks a.c.d: %v", d.Meta.Keys())
	}

	src := "a = 1\nb = \"unclosed\n"
	_, err = Decode(src, lim, time.Minute)
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Decode(bad syntax) = %v, want a toml.ParseError", err)
	}
	if p := ErrorPos(src, pe); p != (Pos{2, 14}) {
		t.Errorf("ErrorPos = %v, want 2:14 (%v)", p, pe.Position)
	}
}

// TestDecodeTimeout abandons a decoder that does not finish in time: the
// decoder here is held until the test lets it go.
func TestDecodeTimeout(t *testing.T) {
	release := make(chan struct{})
	finished := make(chan struct{})
	defer func() {
		close(release)
		<-finished // the abandoned decode ends, and its result is dropped
	}()
	_, err := decode("a = 1\n", lim, 10*time.Millisecond, false, func(string) (Doc, error) {
		defer close(finished)
		<-release
		return Doc{}, nil
	})
	var te *TimeoutError
	if !errors.As(err, &te) || te.Error() != "decoding took longer than 10ms" {
		t.Fatalf("decode = %v, want a *TimeoutError after 10ms", err)
	}
}

// FuzzScan checks that the scanner never panics, stalls or loses its place
// on any input, and that Check agrees with the decoder: a document within
// the limits decodes or fails with a syntax error, never a panic.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		"[a]\nb = 1\n", "x = {a={b=[1,{c=2}]}}", "a.'b'.\"c\" = [[1],[2]]", "[[a]]\n[[a]]\n",
		"x = [1,,2]", "x = [}", "x = {]", "'''", `"\`, "a = '''x''''", "[a.", "x = {a = [1, 2", "\ufeffa=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		x := NewIndex(src)
		for _, p := range [][]string{{"a"}, {"x", "a", Elem(0)}} {
			if k := x.Key(p...); k.Valid() && (k.Line < 1 || k.Col < 1) {
				t.Errorf("key %q at %v", p, k)
			}
		}
		for _, e := range Check(src, lim) {
			if e.N <= e.Limit || e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Errorf("malformed %#v", e)
			}
		}
		_, _ = Decode(src, lim, time.Minute)
	})
}

package tomldoc

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// simpleSeeds are documents of the plain shape and near misses.
var simpleSeeds = []string{
	"[unit]\ndescription = \"web\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"always\"\nstop_timeout = \"2s\"\n",
	"a = 1\nb = -2\nc = +3\nd = 1.5\ne = -0.25\nf = true\ng = false\nh = 'lit\\eral'\n",
	"# comment\r\n[ t ]   # after\r\nk = [ 1,\r\n  2, # two\r\n  'x', ]\r\n",
	"[a]\n[b]\nx = []\ny = [  ]\n",
	"a = 1#c\nb = \"x\"#c\n",
	"a = 01", "a = 1_000", "a = 0x1f", "a = 1e5", "a = 1.", "a = .5", "a = inf", "a = -nan",
	"a = 1979-05-27", "a = 07:32:00", "a = 9223372036854775808", "a = -9223372036854775808",
	"a = \"esc\\n\"", "a = \"\"\"x\"\"\"", "a = '''x'''", "a = 'x\ny'", "a = \"x", "a = \"\"\n",
	"a.b = 1", "a . b = 1", "[a.b]", "[[a]]", "[a]\n[a]", "a = 1\na = 2", "a = 1\n[a]",
	"a = [[1], [2]]", "a = {b = 1}", "a = [1 2]", "a = [,]", "a = [1,,]", "a = [1\n,2]",
	"a = 1 b = 2", "a = truex", "a = t", "= 1", "a =", "a", "[]", "[a]]", "\ufeffa = 1",
	"a = \"tab\there\"", "a = \"del\x7f\"", "# del\x7f\na = 1", "a = 1\r", "a = 1\rb = 2",
	"a = [\"x\", 1, 2.5, true]", "a = \"é\"", "a = 1 # é\n", "\n\n\n", "",
}

// TestSimpleDecodes checks the plain documents are read by the quick
// decoder, with the values the general decoder gives.
func TestSimpleDecodes(t *testing.T) {
	for _, src := range simpleSeeds[:5] {
		if !quickAgrees(t, src) {
			t.Errorf("decodeSimple(%q) left it to the general decoder", src)
		}
	}
	for _, src := range []string{"a = 01", "a = \"esc\\n\"", "a.b = 1", "[[a]]", "a = {b = 1}", "a = 1\na = 2"} {
		if _, ok := decodeSimple(src); ok {
			t.Errorf("decodeSimple(%q) took a document it must leave to the general decoder", src)
		}
	}
}

// FuzzSimpleAgrees holds the quick decoder to the general one: whatever it
// accepts, the general decoder accepts too, with the same values.
func FuzzSimpleAgrees(f *testing.F) {
	for _, s := range simpleSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) { quickAgrees(t, src) })
}

// quickAgrees decodes src with both decoders and fails t if the quick one
// takes a document the general one refuses, or gives other values; it
// reports whether the quick one took src.
func quickAgrees(t *testing.T, src string) bool {
	t.Helper()
	got, ok := decodeSimple(src)
	if !ok {
		return false
	}
	var want map[string]any
	if _, err := toml.Decode(src, &want); err != nil {
		t.Fatalf("decodeSimple(%q) accepted a document the general decoder refuses: %v", src, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeSimple(%q)\n got %#v\nwant %#v", src, got, want)
	}
	return true
}

// TestSimpleAgreesOnShippedFiles reads every TOML file that ships with
// opsvc (examples, settings, test data) with both decoders: where the quick
// one takes a file, it gives what the general one gives.
func TestSimpleAgreesOnShippedFiles(t *testing.T) {
	var files []string
	filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".toml") {
			files = append(files, path)
		}
		return nil
	})
	if len(files) < 10 {
		t.Fatalf("found %d TOML files under the module, want the shipped ones", len(files))
	}
	quick := 0
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if quickAgrees(t, string(b)) {
			quick++
		}
	}
	if quick == 0 {
		t.Error("the quick decoder took none of the shipped files")
	}
	t.Logf("%d of %d shipped TOML files read by the quick decoder", quick, len(files))
}

package unit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/opsvc/opsvc/unit/tomldoc"
)

// hostileUnits are unit files of 40 to 300 KB that, decoded as they are,
// take the TOML decoder tens of seconds to minutes and gigabytes of memory
// (a long dotted key: 2.5 minutes and 20 GiB; nested inline tables: 19 s
// and 8 GiB), or are simply too large.
func hostileUnits() map[string]string {
	var keys strings.Builder
	keys.WriteString("[service]\nexec = [\"/bin/sh\"]\n")
	for i := range 5000 {
		fmt.Fprintf(&keys, "environment.V%d = \"x\"\n", i)
	}
	return map[string]string{
		"dotted.toml":  "[service]\nexec = [\"/bin/sh\"]\n" + strings.Repeat("a.", 32000) + "z = 1\n",
		"inline.toml":  "[service]\nexec = [\"/bin/sh\"]\nx = " + strings.Repeat("{a=", 10000) + "1" + strings.Repeat("}", 10000) + "\n",
		"header.toml":  "[" + strings.Repeat("a.", 32000) + "z]\n[service]\nexec = [\"/bin/sh\"]\n",
		"arrays.toml":  "[service]\nexec = [\"/bin/sh\"]\nx = " + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + "\n",
		"keys.toml":    keys.String(),
		"tables.toml":  "[service]\nexec = [\"/bin/sh\"]\n" + strings.Repeat("[[t]]\n", 5000),
		"longkey.toml": "[service]\nexec = [\"/bin/sh\"]\n[service.environment]\n" + strings.Repeat("K", 2000) + " = \"x\"\n",
		"big.toml":     "[service]\nexec = [\"/bin/sh\"]\n" + strings.Repeat("# padding\n", 30000),
	}
}

// TestHostileUnitFiles: each hostile file is refused before decoding, with
// its position and what the limit is, and the other units load.
func TestHostileUnitFiles(t *testing.T) {
	dir := t.TempDir()
	for name, data := range hostileUnits() {
		write(t, filepath.Join(dir, name), data)
	}
	write(t, filepath.Join(dir, "web.toml"), "[service]\nexec = [\"/bin/sh\"]\n")
	write(t, filepath.Join(dir, "web.d", "hostile.toml"), "[service]\nx = "+strings.Repeat("{a=", 10000)+"1"+strings.Repeat("}", 10000)+"\n")
	write(t, filepath.Join(dir, "ok.toml"), "[service]\nexec = [\"/bin/sh\"]\n")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, name := range sortedKeys(s.Problems) {
		for _, p := range s.Problems[name] {
			got = append(got, strings.TrimPrefix(p.Error(), dir+string(filepath.Separator)))
		}
	}
	want := []string{
		"arrays.toml:3:12: nested too deeply (30001 levels, the limit is 8) (unit keys are at most three levels deep, as in service.environment.NAME)",
		"big.toml:1:1: file too large (300029 bytes, the limit is 262144) (a unit file is a short TOML file: put long environments in environment_files)",
		"dotted.toml:3:15: nested too deeply (32002 levels, the limit is 8) (unit keys are at most three levels deep, as in service.environment.NAME)",
		"dotted.toml:3:1017: key too long (64009 bytes, the limit is 1024) (unit keys are short names, as in service.environment.NAME)",
		"header.toml:1:18: nested too deeply (32001 levels, the limit is 8) (unit keys are at most three levels deep, as in service.environment.NAME)",
		"header.toml:1:1026: key too long (64001 bytes, the limit is 1024) (unit keys are short names, as in service.environment.NAME)",
		"inline.toml:3:24: nested too deeply (10002 levels, the limit is 8) (unit keys are at most three levels deep, as in service.environment.NAME)",
		"inline.toml:3:770: too many tables (10001, the limit is 256) (a unit has the tables [unit], [service] and [orchestrator], and an environment table)",
		"inline.toml:3:1527: key too long (20009 bytes, the limit is 1024) (unit keys are short names, as in service.environment.NAME)",
		"inline.toml:3:12288: too many keys (10002, the limit is 4096) (a unit sets a few dozen keys: put long environments in environment_files)",
		"keys.toml:4098:1: too many keys (5001, the limit is 4096) (a unit sets a few dozen keys: put long environments in environment_files)",
		"longkey.toml:4:1: key too long (2020 bytes, the limit is 1024) (unit keys are short names, as in service.environment.NAME)",
		"tables.toml:258:1: too many tables (5001, the limit is 256) (a unit has the tables [unit], [service] and [orchestrator], and an environment table)",
		"web.d/hostile.toml:2:24: nested too deeply (10002 levels, the limit is 8) (unit keys are at most three levels deep, as in service.environment.NAME)",
		"web.d/hostile.toml:2:770: too many tables (10001, the limit is 256) (a unit has the tables [unit], [service] and [orchestrator], and an environment table)",
		"web.d/hostile.toml:2:1527: key too long (20009 bytes, the limit is 1024) (unit keys are short names, as in service.environment.NAME)",
		"web.d/hostile.toml:2:12291: too many keys (10001, the limit is 4096) (a unit sets a few dozen keys: put long environments in environment_files)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if len(s.Units) != 1 || s.Units["ok"] == nil {
		t.Errorf("units = %v, want ok only", s.Units)
	}
}

// TestLargeUnitLoads: a unit far larger than any real one, within the
// bounds, loads.
func TestLargeUnitLoads(t *testing.T) {
	var b strings.Builder
	b.WriteString("# A unit with a large environment.\n[unit]\ndescription = \"large\"\nafter = [" + strings.Repeat(`"a", `, 200) + "]\n")
	b.WriteString("[service]\nexec = [\"/bin/sh\", \"-c\", \"" + strings.Repeat("echo x; ", 1000) + "\"]\n")
	b.WriteString("environment_files = [\"-/etc/default/large\"]\n[service.environment]\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "VARIABLE_WITH_A_LONG_NAME_%04d = \"value %d with some text in it\"\n", i, i)
	}
	if b.Len() < 150<<10 {
		t.Fatalf("test unit is only %d bytes", b.Len())
	}
	s := mustLoad(t, map[string]string{"large.toml": b.String(), "a.toml": "[service]\nexec = [\"/bin/sh\"]\n"})
	u := mustUnit(t, s, "large")
	if len(u.Service.Environment) != 3000 || u.Service.Environment["VARIABLE_WITH_A_LONG_NAME_2999"] != "value 2999 with some text in it" {
		t.Errorf("environment has %d variables", len(u.Service.Environment))
	}
}

// TestDecodeTimeoutProblem: a file the decoder gives up on is reported
// invalid, at its start. (The time bound itself is tested in tomldoc.)
func TestDecodeTimeoutProblem(t *testing.T) {
	l := &layer{src: &source{path: "/units/slow.toml"}, failed: map[string]bool{}}
	l.decodeError("a = 1\n", &tomldoc.TimeoutError{After: tomldoc.DecodeTimeout})
	want := "/units/slow.toml:1:1: cannot be parsed: decoding took longer than 5s (a unit file is a short TOML file: make this one smaller or simpler)"
	if got := problemText(l.problems); got != want+"\n" {
		t.Errorf("problem = %q, want %q", got, want)
	}
}

// TestUnitFileThatIsNotRegular: a unit file swapped for a FIFO after the
// directory was listed is refused without waiting for a writer.
func TestUnitFileThatIsNotRegular(t *testing.T) {
	dir := t.TempDir()
	ld, err := newLoader(os.DirFS(dir), dir)
	if err != nil {
		t.Fatal(err)
	}
	ld.open = openIn(dir)
	fifo := filepath.Join(dir, "web.toml")
	if err := mkfifo(fifo); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	l := ld.readFile("web.toml", &source{path: fifo}, nil)
	want := fifo + ":1:1: cannot read: is a named pipe (FIFO), not a regular file (a unit file is a regular file)\n"
	if got := problemText(l.problems); got != want {
		t.Errorf("problem = %q, want %q", got, want)
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"./web --port 80":              {"./web", "--port", "80"},
		"  a\t b  ":                    {"a", "b"},
		`sh -c 'echo "hi there"'`:      {"sh", "-c", `echo "hi there"`},
		`a "b \"c\" \\d" e\ f`:         {"a", `b "c" \d`, "e f"},
		`a ""`:                         {"a", ""},
		`unclosed 'quote here`:         {"unclosed", "'quote", "here"},
		"":                             nil,
		`x"y"z`:                        {"xyz"},
		`"$HOME" \$HOME "\$HOME" '\n'`: {"$HOME", "$HOME", "$HOME", `\n`},
	} {
		if diff := cmp.Diff(want, splitWords(in)); diff != "" {
			t.Errorf("splitWords(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, tt := range []struct {
		in      string
		id      uint32
		numeric bool
		bad     bool
	}{
		{"0", 0, true, false},
		{"65534", 65534, true, false},
		{"4294967294", 4294967294, true, false},
		{"4294967295", 0, true, true},
		{"4294967296", 0, true, true},
		{"-1", 0, true, true},
		{"+1", 0, true, true},
		{"99999999999999999999999", 0, true, true},
		{"www-data", 0, false, false},
		{"1a", 0, false, false},
		{"-", 0, false, false},
		{"", 0, false, false},
	} {
		id, numeric, err := ParseID(tt.in)
		if id != tt.id || numeric != tt.numeric || (err != nil) != tt.bad {
			t.Errorf("ParseID(%q) = %d, %v, %v; want %d, %v, error %v", tt.in, id, numeric, err, tt.id, tt.numeric, tt.bad)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	write(t, filepath.Join(bin, "tool"), "#!/bin/sh\n")
	write(t, filepath.Join(bin, "plain"), "")
	if err := os.Chmod(filepath.Join(bin, "tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(bin, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := strings.Join([]string{"", "relative", "/nonexistent", bin}, string(filepath.ListSeparator))
	if got, err := LookPath("tool", path); err != nil || got != filepath.Join(bin, "tool") {
		t.Errorf("LookPath(tool) = %q, %v", got, err)
	}
	notFound := []string{"dir", "missing", ""}
	if runtime.GOOS != "windows" { // where execute bits exist
		notFound = append(notFound, "plain")
	}
	for _, name := range notFound {
		if got, err := LookPath(name, path); err == nil {
			t.Errorf("LookPath(%q) = %q, want an error", name, got)
		}
	}
	if got, err := LookPath("./x/y", ""); err != nil || got != "./x/y" {
		t.Errorf("LookPath(./x/y) = %q, %v; want it as it is", got, err)
	}
	// A relative directory is never searched, even when it holds the program.
	t.Chdir(dir)
	if got, err := LookPath("tool", "bin"); err == nil {
		t.Errorf("LookPath(tool) in a relative PATH = %q, want an error", got)
	}
}

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/opsvc/opsvc/unit"
)

func TestUnreachableSaysWhy(t *testing.T) {
	c := &cli{}
	c.paths.Socket = "/run/x.sock"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EACCES)}, "permission denied (ask"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENOENT)}, "no daemon is listening there"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "no daemon is listening there"},
	} {
		msg := c.unreachable(tc.err).Error()
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "is the daemon running") {
			t.Errorf("unreachable(%v) = %q, want it to contain %q", tc.err, msg, tc.want)
		}
	}
}

func TestEscapeControl(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\tok":      "plain text\tok",
		"\x1b[31mred\x1b[0m":  `\x1b[31mred\x1b[0m`,
		"bell\a and \r back":  `bell\x07 and \x0d back`,
		"é ünïcode":           "é ünïcode",
		"bad \xff byte":       `bad \xff byte`,
		"c1 \u009b2J":         `c1 \x9b2J`,
		"bidi \u202e evil":    `bidi \u202e evil`,
		"osc \x1b]0;title\a!": `osc \x1b]0;title\x07!`,
	} {
		if got := escapeControl(in); got != want {
			t.Errorf("escapeControl(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":              now.Add(-10 * time.Minute),
		"2h":               now.Add(-2 * time.Hour),
		"1d":               now.Add(-24 * time.Hour),
		"2026-12-01 10:00": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-01":       time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		"today":            time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWhen("yesterday-ish", now); err == nil {
		t.Error("parseWhen accepted nonsense")
	}
}

// TestCatIsValidTOML: the definition printed by cat decodes as TOML, each
// table once, environment keys quoted where they must be.
func TestCatIsValidTOML(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "web.toml"), []byte("[unit]\ndescription = \"w\"\n[service]\nexec = [\"/bin/true\"]\nenvironment = { A = \"1\" }\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "web.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "web.d", "x.toml"), []byte("[unit]\ndescription = \"x\"\n[service]\nrestart = \"always\"\n"), 0o644)
	set, err := unit.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := set.Annotate("web")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printDefinition(&b, "web", ann)
	var v map[string]any
	if _, err := toml.Decode(b.String(), &v); err != nil {
		t.Fatalf("cat output is not TOML: %v\n%s", err, b.String())
	}
	if n := len(regexp.MustCompile(`(?m)^\[service\]$`).FindAllString(b.String(), -1)); n != 1 {
		t.Errorf("[service] appears %d times:\n%s", n, b.String())
	}
	if !strings.Contains(b.String(), `restart = "always"`) {
		t.Errorf("drop-in value missing:\n%s", b.String())
	}
}

// TestCompletionScriptsParse: each generated script is accepted by its shell
// (where installed) and names every verb.
func TestCompletionScriptsParse(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"completion", sh}, &out, &errb); err != nil {
			t.Fatalf("completion %s: %v %s", sh, err, errb.String())
		}
		for _, v := range visibleVerbs() {
			if !strings.Contains(out.String(), v) {
				t.Errorf("%s completion lacks verb %s", sh, v)
			}
		}
		for _, f := range allFlags() {
			if !strings.Contains(out.String(), f.name) {
				t.Errorf("%s completion lacks flag --%s", sh, f.name)
			}
		}
		if _, err := lookPath(sh); err != nil {
			continue
		}
		file := filepath.Join(t.TempDir(), "c."+sh)
		os.WriteFile(file, out.Bytes(), 0o644)
		check := map[string][]string{"bash": {"bash", "-n", file}, "zsh": {"zsh", "-n", file}, "fish": {"fish", "--no-execute", file}}[sh]
		if msg, err := runCmd(check...); err != nil {
			t.Errorf("%s rejects its completion script: %v\n%s", sh, err, msg)
		}
	}
}

// TestREADMEListsEveryVerb: the README's reference names every verb with an
// example.
func TestREADMEListsEveryVerb(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, v := range verbTable() {
		if v.hidden {
			continue
		}
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(v.name) + "[ `]").MatchString(readme) {
			t.Errorf("README's command reference has no row for %s", v.name)
		}
		if v.example == "" {
			t.Errorf("verb %s has no example", v.name)
		}
	}
}

func TestHelpForEveryVerb(t *testing.T) {
	for _, v := range verbTable() {
		if v.hidden {
			continue
		}
		for _, argv := range [][]string{{"help", v.name}, {v.name, "--help"}} {
			var out, errb bytes.Buffer
			if err := run(context.Background(), argv, &out, &errb); err != nil {
				t.Fatalf("%v: %v", argv, err)
			}
			if !strings.Contains(out.String(), "Example:\n  "+v.example) || !strings.HasPrefix(out.String(), "usage: opsvc "+v.name) {
				t.Errorf("%v printed:\n%s", argv, out.String())
			}
		}
	}
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func runCmd(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// TestShippedCompletionIsCurrent: contrib/completion holds what
// `opsvc completion SHELL` prints today.
func TestShippedCompletionIsCurrent(t *testing.T) {
	for sh, file := range map[string]string{"bash": "opsvc.bash", "zsh": "_opsvc", "fish": "opsvc.fish"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"completion", sh}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		shipped, err := os.ReadFile(filepath.Join("../../contrib/completion", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(shipped, out.Bytes()) {
			t.Errorf("contrib/completion/%s is stale: go run ./cmd/opsvc completion %s > contrib/completion/%s", file, sh, file)
		}
	}
}

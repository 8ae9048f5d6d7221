package unit

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/opsvc/opsvc/unit/tomldoc"
)

// sh is an executable that exists on every test host; bare "sh" is found in
// PATH. Package unit never runs it.
const sh = "/bin/sh"

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		fsys[name] = &fstest.MapFile{Data: []byte(data), Mode: mode}
	}
	return fsys
}

func mustLoad(t *testing.T, files map[string]string) *Set {
	t.Helper()
	s, err := LoadFS(mapFS(files), "/units")
	if err != nil {
		t.Fatalf("LoadFS: %v", err)
	}
	return s
}

func mustUnit(t *testing.T, s *Set, name string) *Unit {
	t.Helper()
	u, ok := s.Units[name]
	if !ok {
		t.Fatalf("unit %s not loaded; problems: %v", name, s.Problems)
	}
	return u
}

func problemText(probs []Problem) string {
	var b strings.Builder
	for _, p := range probs {
		b.WriteString(p.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestLoadDefaults(t *testing.T) {
	s := mustLoad(t, map[string]string{"web.toml": `[service]
exec = ["/bin/sh", "-c", "sleep 1"]`})
	u := mustUnit(t, s, "web")
	want := &Unit{
		Name:      "web",
		Enabled:   true,
		Placement: PlacementLocal,
		Service:   DefaultService(),
		Dir:       "/units",
		Sources:   []string{"/units/web.toml"},
	}
	want.Service.Exec = []string{sh, "-c", "sleep 1"}
	if diff := cmp.Diff(want, u, cmpopts.IgnoreFields(Unit{}, "Hash")); diff != "" {
		t.Errorf("unit (-want +got):\n%s", diff)
	}
	if len(u.Hash) != 64 {
		t.Errorf("Hash = %q, want 64 hex digits", u.Hash)
	}
	if len(s.Problems) != 0 {
		t.Errorf("Problems = %v, want none", s.Problems)
	}
}

func TestLoadFullSchema(t *testing.T) {
	s := mustLoad(t, map[string]string{
		"db.toml": "[service]\nexec = [\"/bin/sh\"]\n",
		"web.toml": `
[unit]
description = "Web frontend"
after = ["db"]
requires = ["db"]
enabled = false
placement = "fleet"

[service]
type = "notify"
exec = ["./run.sh", "--port", "8080"]
working_directory = "srv"
environment = { PORT = "8080", NAME = "%n" }
environment_files = ["-/etc/default/web", "web.env"]
user = "www-data"
group = "www"
restart = "always"
restart_delay = "1s"
restart_delay_max = "1m30s"
start_limit_burst = 7
start_limit_interval = "20s"
start_timeout = "0"
stop_timeout = "5s"
stop_signal = "INT"
watchdog = "30s"
notify_access = "all"
success_exit_status = [0, 75]
`,
		"run.sh": "#!/bin/sh\n",
		"orc.toml": `
[orchestrator]
project_dir = "repos/%n"
task = "Work through ROADMAP.md"
agent = ["claude", "-p", "--output-format", "json"]
model = "opus"
max_turns = 30
max_continuations = 5
max_budget_usd = 2
max_consecutive_errors = 3
resume = true
`,
	})
	want := &Unit{
		Name: "web", Description: "Web frontend", After: []string{"db"}, Requires: []string{"db"}, Enabled: false, Placement: PlacementFleet,
		Service: Service{
			Type:               TypeNotify,
			Exec:               []string{"/units/run.sh", "--port", "8080"},
			WorkingDirectory:   "/units/srv",
			Environment:        map[string]string{"PORT": "8080", "NAME": "web"},
			EnvironmentFiles:   []string{"-/etc/default/web", "/units/web.env"},
			User:               "www-data",
			Group:              "www",
			Restart:            RestartAlways,
			RestartDelay:       time.Second,
			RestartDelayMax:    90 * time.Second,
			StartLimitBurst:    7,
			StartLimitInterval: 20 * time.Second,
			StartTimeout:       0,
			StopTimeout:        5 * time.Second,
			StopSignal:         "SIGINT",
			Watchdog:           30 * time.Second,
			NotifyAccess:       "all",
			SuccessExitStatus:  []int{0, 75},
		},
		Dir:     "/units",
		Sources: []string{"/units/web.toml"},
	}
	if diff := cmp.Diff(want, mustUnit(t, s, "web"), cmpopts.IgnoreFields(Unit{}, "Hash")); diff != "" {
		t.Errorf("web (-want +got):\n%s", diff)
	}
	orc := mustUnit(t, s, "orc")
	if orc.Service.Type != TypeOrchestrator || orc.Service.Exec != nil {
		t.Errorf("orc service = %+v, want type orchestrator without exec", orc.Service)
	}
	budget := 2.0
	wantOrc := &Orchestrator{ProjectDir: "/units/repos/orc", Task: "Work through ROADMAP.md",
		Agent: []string{"claude", "-p", "--output-format", "json"}, Model: "opus", MaxTurns: 30,
		MaxContinuations: 5, MaxBudgetUSD: &budget, MaxConsecutiveErrors: 3, Resume: true}
	if diff := cmp.Diff(wantOrc, orc.Orchestrator); diff != "" {
		t.Errorf("orchestrator (-want +got):\n%s", diff)
	}
}

func TestMerge(t *testing.T) {
	base := `
[unit]
description = "base"
after = ["a"]

[service]
exec = ["/bin/sh", "-c"]
environment = { A = "1", B = "2" }
success_exit_status = [3]
stop_timeout = "1s"
`
	tests := []struct {
		name    string
		dropins map[string]string
		check   func(t *testing.T, u *Unit)
	}{{
		name:    "later scalar wins, tables merge key by key",
		dropins: map[string]string{"10.toml": "[service]\nstop_timeout = \"2s\"\n", "20.toml": "[unit]\ndescription = \"drop-in\"\n"},
		check: func(t *testing.T, u *Unit) {
			if u.Service.StopTimeout != 2*time.Second || u.Description != "drop-in" || len(u.Service.Exec) != 2 {
				t.Errorf("got stop_timeout %v, description %q, exec %q", u.Service.StopTimeout, u.Description, u.Service.Exec)
			}
		},
	}, {
		name:    "arrays append in lexical order of file name",
		dropins: map[string]string{"20.toml": "[service]\nexec = [\"two\"]\n", "10.toml": "[service]\nexec = [\"one\"]\n[unit]\nafter = [\"b\"]\n"},
		check: func(t *testing.T, u *Unit) {
			if diff := cmp.Diff([]string{sh, "-c", "one", "two"}, u.Service.Exec); diff != "" {
				t.Errorf("exec (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"a", "b"}, u.After); diff != "" {
				t.Errorf("after (-want +got):\n%s", diff)
			}
		},
	}, {
		name:    "explicit empty array resets, a later file appends again",
		dropins: map[string]string{"10.toml": "[service]\nexec = []\nsuccess_exit_status = []\n", "20.toml": "[service]\nexec = [\"/bin/sh\", \"-x\"]\n"},
		check: func(t *testing.T, u *Unit) {
			if diff := cmp.Diff([]string{sh, "-x"}, u.Service.Exec); diff != "" {
				t.Errorf("exec (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int{0}, u.Service.SuccessExitStatus); diff != "" {
				t.Errorf("success_exit_status reset to the default (-want +got):\n%s", diff)
			}
		},
	}, {
		name:    "success_exit_status adds to 0, as systemd's SuccessExitStatus= does",
		dropins: map[string]string{"10.toml": "[service]\nsuccess_exit_status = [4, 0, 3]\n"},
		check: func(t *testing.T, u *Unit) {
			if diff := cmp.Diff([]int{0, 3, 4}, u.Service.SuccessExitStatus); diff != "" {
				t.Errorf("success_exit_status (-want +got):\n%s", diff)
			}
		},
	}, {
		name:    "environment merges per key",
		dropins: map[string]string{"10.toml": "[service.environment]\nB = \"two\"\nC = \"3\"\n"},
		check: func(t *testing.T, u *Unit) {
			if diff := cmp.Diff(map[string]string{"A": "1", "B": "two", "C": "3"}, u.Service.Environment); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "hidden and non-toml files in the drop-in directory are ignored",
		dropins: map[string]string{".10.toml": "[service]\nstop_timeout = \"9s\"\n", "10.toml~": "[service]\nstop_timeout = \"8s\"\n",
			"README": "not toml"},
		check: func(t *testing.T, u *Unit) {
			if u.Service.StopTimeout != time.Second {
				t.Errorf("stop_timeout = %v, want 1s from the unit file", u.Service.StopTimeout)
			}
			if diff := cmp.Diff([]string{"/units/web.toml"}, u.Sources); diff != "" {
				t.Errorf("sources (-want +got):\n%s", diff)
			}
		},
	}, {
		name:    "sources list every file applied, in order",
		dropins: map[string]string{"b.toml": "", "a.toml": ""},
		check: func(t *testing.T, u *Unit) {
			want := []string{"/units/web.toml", "/units/web.d/a.toml", "/units/web.d/b.toml"}
			if diff := cmp.Diff(want, u.Sources); diff != "" {
				t.Errorf("sources (-want +got):\n%s", diff)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"web.toml": base, "a.toml": "[service]\nexec = [\"/bin/sh\"]\n", "b.toml": "[service]\nexec = [\"/bin/sh\"]\n"}
			for n, d := range tt.dropins {
				files["web.d/"+n] = d
			}
			tt.check(t, mustUnit(t, mustLoad(t, files), "web"))
		})
	}
}

func TestTemplates(t *testing.T) {
	s := mustLoad(t, map[string]string{
		"tick@.toml": `
[unit]
description = "%p/%i/%n/%%"
[service]
exec = ["/bin/sh", "-c", "echo %i"]
environment = { WHO = "%i" }
`,
		"tick@a.toml":        "",
		"tick@b.toml":        "[service]\nstop_signal = \"HUP\"\nexec = [\"b-file\"]\n",
		"tick@.d/10.toml":    "[service]\nexec = [\"all\"]\n",
		"tick@b.d/10.toml":   "[service]\nexec = [\"only-b\"]\n",
		"tick@c.d/10.toml":   "[service]\nexec = [\"only-c\"]\n",
		"plain.toml":         "[service]\nexec = [\"/bin/sh\"]\n",
		"broken@.toml":       "[service]\nexce = []\n",
		"broken@x.toml":      "",
		"orphan@x.toml":      "[service]\nexec = [\"/bin/sh\"]\n",
		"orphan-empty@.d/10": "",
	})
	if _, ok := s.Units["tick@"]; ok {
		t.Error("template tick@ is a unit; templates are not units")
	}
	a := mustUnit(t, s, "tick@a")
	if a.Description != "tick/a/tick@a/%" {
		t.Errorf("description = %q, want specifiers expanded", a.Description)
	}
	if diff := cmp.Diff([]string{sh, "-c", "echo a", "all"}, a.Service.Exec); diff != "" {
		t.Errorf("tick@a exec (-want +got):\n%s", diff)
	}
	if a.Service.Environment["WHO"] != "a" {
		t.Errorf("environment WHO = %q, want a", a.Service.Environment["WHO"])
	}
	b := mustUnit(t, s, "tick@b")
	if diff := cmp.Diff([]string{sh, "-c", "echo b", "b-file", "all", "only-b"}, b.Service.Exec); diff != "" {
		t.Errorf("tick@b exec: template, instance file, NAME@.d, NAME@INST.d (-want +got):\n%s", diff)
	}
	wantSources := []string{"/units/tick@.toml", "/units/tick@b.toml", "/units/tick@.d/10.toml", "/units/tick@b.d/10.toml"}
	if diff := cmp.Diff(wantSources, b.Sources); diff != "" {
		t.Errorf("tick@b sources (-want +got):\n%s", diff)
	}
	if b.Service.StopSignal != "SIGHUP" {
		t.Errorf("stop_signal = %q, want SIGHUP", b.Service.StopSignal)
	}
	if b.Hash == a.Hash {
		t.Error("instances with different definitions have equal hashes")
	}

	c, err := s.Instance("tick@c")
	if err != nil {
		t.Fatalf("Instance(tick@c): %v", err)
	}
	if diff := cmp.Diff([]string{sh, "-c", "echo c", "all", "only-c"}, c.Service.Exec); diff != "" {
		t.Errorf("runtime instance exec (-want +got):\n%s", diff)
	}
	if _, ok := s.Units["tick@c"]; ok {
		t.Error("Instance changed the Set")
	}
	if u, err := s.Instance("plain"); err != nil || u != s.Units["plain"] {
		t.Errorf("Instance(plain) = %v, %v; want the loaded unit", u, err)
	}
	for name, want := range map[string]string{
		"nope@x":     "no template nope@.toml",
		"nope":       "no such unit",
		"broken@y":   `unknown key "exce"`,
		"broken@x":   `unknown key "exce"`,
		"tick@a@b":   "more than one '@'",
		"tick@../..": "path separator",
	} {
		if _, err := s.Instance(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Instance(%q) error = %v, want one containing %q", name, err, want)
		}
	}
	if probs := s.Problems["broken@"]; len(probs) != 1 || !strings.Contains(probs[0].Msg, "exce") {
		t.Errorf("template problems = %v, want the unknown key", probs)
	}
	if _, ok := s.Units["orphan@x"]; !ok {
		t.Errorf("an instance file without a template is a unit of its own; problems: %v", s.Problems["orphan@x"])
	}
}

func TestSpecifiers(t *testing.T) {
	for _, tt := range []struct{ in, name, want, bad string }{
		{"%i", "tick@a", "a", ""},
		{"%n", "tick@a", "tick@a", ""},
		{"%p", "tick@a", "tick", ""},
		{"%p", "web", "web", ""},
		{"%i", "web", "", ""},
		{"100%%", "web", "100%", ""},
		{"%%i", "x@y", "%i", ""},
		{"a%ib%pc", "x@y", "aybxc", ""},
		{"%x", "web", "", "%x"},
		{"50%", "web", "", "%"},
		{"%é", "web", "", "%é"},
		{"no specifiers", "web", "no specifiers", ""},
	} {
		if bad := badSpecifier(tt.in); bad != tt.bad {
			t.Errorf("badSpecifier(%q) = %q, want %q", tt.in, bad, tt.bad)
		}
		if tt.bad == "" {
			if got := expandSpecifiers(tt.in, tt.name); got != tt.want {
				t.Errorf("expandSpecifiers(%q, %q) = %q, want %q", tt.in, tt.name, got, tt.want)
			}
		}
	}
	s := mustLoad(t, map[string]string{"w.toml": "[service]\nexec = [\"/bin/sh\", \"%s\"]\nuser = \"%u\"\n"})
	if got := problemText(s.Problems["w"]); !strings.Contains(got, `w.toml:2:20: unknown specifier "%s" in exec`) ||
		!strings.Contains(got, `w.toml:3:8: unknown specifier "%u" in user`) {
		t.Errorf("problems:\n%s\nwant both unknown specifiers with positions", got)
	}
}

func TestDependencies(t *testing.T) {
	svc := "\n[service]\nexec = [\"/bin/sh\"]\n"
	s := mustLoad(t, map[string]string{
		"a.toml":     "[unit]\nrequires = [\"b\"]" + svc,
		"b.toml":     "[unit]\nafter = [\"c\"]" + svc,
		"c.toml":     "[unit]\nrequires = [\"a\"]" + svc,
		"d.toml":     "[unit]\nrequires = [\"a\"]\nafter = [\"missing\"]" + svc,
		"self.toml":  "[unit]\nafter = [\"self\"]" + svc,
		"e.toml":     "[unit]\nrequires = [\"missing\", \"tpl@x\", \"tpl@\"]" + svc,
		"tpl@.toml":  "[unit]\nrequires = [\"loop@%i\"]" + svc,
		"loop@.toml": "[unit]\nrequires = [\"tpl@%i\"]" + svc,
	})
	for name, want := range map[string]string{
		"a":    "a.toml:2:13: dependency cycle: a -> b -> c -> a",
		"b":    "b.toml:2:10: dependency cycle: b -> c -> a -> b",
		"c":    "c.toml:2:13: dependency cycle: c -> a -> b -> c",
		"self": "self.toml:2:10: dependency cycle: self -> self",
		"e":    `e.toml:2:13: requires "missing", but there is no such unit`,
	} {
		if got := problemText(s.Problems[name]); !strings.Contains(got, want) {
			t.Errorf("problems of %s:\n%s\nwant %q", name, got, want)
		}
	}
	if got := problemText(s.Problems["e"]); !strings.Contains(got, `requires "tpl@"`) || strings.Contains(got, `"tpl@x"`) {
		t.Errorf("problems of e:\n%s\nwant the template name refused and the instance accepted", got)
	}
	mustUnit(t, s, "d") // requires a unit with problems, after a missing one: fine
	if _, err := s.Instance("tpl@z"); err == nil || !strings.Contains(err.Error(), "dependency cycle: tpl@z -> loop@z -> tpl@z") {
		t.Errorf("Instance(tpl@z) error = %v, want the cycle through loop@z", err)
	}
}

func TestHash(t *testing.T) {
	load := func(files map[string]string, name string) *Unit { return mustUnit(t, mustLoad(t, files), name) }
	one := load(map[string]string{"w.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"x\"]\nstop_timeout = \"10s\"\n"}, "w")
	same := []map[string]string{
		{"w.toml": "# a comment\n[service]\nstop_timeout = \"10000ms\"\nexec = [ \"/bin/sh\",\n \"-c\", \"x\" ]\n"},
		{"w.toml": "[service]\nexec = [\"/bin/sh\"]\n", "w.d/1.toml": "[service]\nexec = [\"-c\", \"x\"]\n"},
		{"w.toml": "[unit]\nenabled = true\n[service]\ntype = \"simple\"\nexec = [\"/bin/sh\", \"-c\", \"x\"]\nrestart = \"on-failure\"\n"},
	}
	for i, files := range same {
		if u := load(files, "w"); u.Hash != one.Hash {
			t.Errorf("case %d: equal definitions, different hashes: %s vs %s", i, u.Hash, one.Hash)
		}
	}
	differ := []map[string]string{
		{"w.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"y\"]\nstop_timeout = \"10s\"\n"},
		{"w.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"x\"]\nstop_timeout = \"11s\"\n"},
		{"w.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"x\"]\nenvironment = { A = \"\" }\n"},
		{"w.toml": "[unit]\nenabled = false\n[service]\nexec = [\"/bin/sh\", \"-c\", \"x\"]\n"},
	}
	for i, files := range differ {
		if u := load(files, "w"); u.Hash == one.Hash {
			t.Errorf("case %d: different definitions, equal hashes", i)
		}
	}
	if other := load(map[string]string{"v.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"x\"]\n"}, "v"); other.Hash == one.Hash {
		t.Error("units with different names have equal hashes")
	}
}

func TestPaths(t *testing.T) {
	fsys := mapFS(map[string]string{
		"w.toml": `[service]
exec = ["./bin/run.sh"]
working_directory = "."
environment_files = ["-./opt.env", "/abs.env"]
`,
		"w.d/10.toml":  "[service]\nworking_directory = \"data\"\nenvironment_files = [\"more.env\"]\n",
		"bin/run.sh":   "#!/bin/sh\n",
		"o.toml":       "[orchestrator]\ntask = \"t\"\nagent = [\"./agent.sh\"]\nproject_dir = \"p\"\n",
		"agent.sh":     "#!/bin/sh\n",
		"noexec.toml":  "[service]\nexec = [\"./plain.txt\"]\n",
		"plain.txt":    "",
		"dir.toml":     "[service]\nexec = [\"./bin\"]\n",
		"bare.toml":    "[service]\nexec = [\"tool\"]\n",
		"envpath.toml": "[service]\nexec = [\"tool\"]\nenvironment = { PATH = \"/units/bin:/usr/bin\" }\n",
		"bin/tool":     "",
	})
	fsys["bin/tool"].Mode = 0o755
	ld := &loader{fsys: fsys, open: fsys.Open, dir: "units", absDir: "/units", stat: os.Stat, timeout: tomldoc.DecodeTimeout,
		getenv: func(k string) string {
			if k == "PATH" {
				return "relative/bin:/nonexistent"
			}
			return ""
		}}
	s, err := ld.load()
	if err != nil {
		t.Fatal(err)
	}
	w := mustUnit(t, s, "w")
	if w.Service.Exec[0] != "/units/bin/run.sh" || w.Service.WorkingDirectory != "/units/w.d/data" {
		t.Errorf("exec[0] = %q, working_directory = %q; want them resolved against the file that set them", w.Service.Exec[0], w.Service.WorkingDirectory)
	}
	if diff := cmp.Diff([]string{"-/units/opt.env", "/abs.env", "/units/w.d/more.env"}, w.Service.EnvironmentFiles); diff != "" {
		t.Errorf("environment_files (-want +got):\n%s", diff)
	}
	if w.Sources[0] != filepath.Join("units", "w.toml") {
		t.Errorf("sources = %q, want paths under the directory as given", w.Sources)
	}
	o := mustUnit(t, s, "o")
	if o.Orchestrator.ProjectDir != "/units/p" || o.Orchestrator.Agent[0] != "/units/agent.sh" {
		t.Errorf("orchestrator = %+v, want project_dir and agent[0] resolved", o.Orchestrator)
	}
	if u := mustUnit(t, s, "envpath"); u.Service.Exec[0] != "tool" {
		t.Errorf("exec[0] = %q, want a bare name kept bare", u.Service.Exec[0])
	}
	for name, want := range map[string]string{
		"noexec": `units/noexec.toml:2:9: exec[0] "./plain.txt" is not executable (units/plain.txt) (chmod +x units/plain.txt)`,
		"dir":    `exec[0] "./bin" is a directory`,
		"bare":   `exec[0] "tool" is not found in PATH`,
	} {
		if got := problemText(s.Problems[name]); !strings.Contains(got, want) {
			t.Errorf("problems of %s:\n%s\nwant %q", name, got, want)
		}
	}
}

func TestAnnotate(t *testing.T) {
	s := mustLoad(t, map[string]string{
		"w.toml":      "[unit]\ndescription = \"say \\\"hi\\\"\"\n[service]\nexec = [\"/bin/sh\"]\nenvironment = { A = \"1\" }\nstop_timeout = \"1m30s\"\n",
		"w.d/10.toml": "[service]\nexec = [\"-c\", \"true\"]\nenvironment.B = \"2\"\nstart_limit_burst = 3\n",
		"t@.toml":     "[service]\nexec = [\"/bin/sh\", \"%i\"]\n",
		"o.toml":      "[orchestrator]\ntask = \"t\"\nagent = [\"x\"]\nmax_budget_usd = 2\n",
	})
	ann, err := s.Annotate("w")
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]Annotation)
	for _, a := range ann {
		got[a.Table+"."+a.Key] = a
	}
	for k, want := range map[string]Annotation{
		"unit.description":          {"unit", "description", `"say \"hi\""`, "/units/w.toml"},
		"unit.enabled":              {"unit", "enabled", "true", DefaultSource},
		"unit.placement":            {"unit", "placement", `"local"`, DefaultSource},
		"service.exec":              {"service", "exec", `["/bin/sh", "-c", "true"]`, "/units/w.toml, /units/w.d/10.toml"},
		"service.environment.A":     {"service.environment", "A", `"1"`, "/units/w.toml"},
		"service.environment.B":     {"service.environment", "B", `"2"`, "/units/w.d/10.toml"},
		"service.stop_timeout":      {"service", "stop_timeout", `"1m30s"`, "/units/w.toml"},
		"service.start_limit_burst": {"service", "start_limit_burst", "3", "/units/w.d/10.toml"},
		"service.restart_delay":     {"service", "restart_delay", `"100ms"`, DefaultSource},
		"service.watchdog":          {"service", "watchdog", `"0"`, DefaultSource},
		"service.type":              {"service", "type", `"simple"`, DefaultSource},
	} {
		if diff := cmp.Diff(want, got[k]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	if _, ok := got["service.user"]; ok {
		t.Error("annotation for user, which nobody set and has no default")
	}
	if _, ok := got["orchestrator.task"]; ok {
		t.Error("orchestrator keys annotated for a unit without [orchestrator]")
	}
	inst, err := s.Annotate("t@x")
	if err != nil {
		t.Fatal(err)
	}
	if a := find(inst, "service", "exec"); a.Value != `["/bin/sh", "x"]` {
		t.Errorf("t@x exec = %q, want the specifier expanded", a.Value)
	}
	orc, err := s.Annotate("o")
	if err != nil {
		t.Fatal(err)
	}
	if a := find(orc, "service", "type"); a.Value != `"orchestrator"` || a.Source != "/units/o.toml" {
		t.Errorf("o type = %+v, want orchestrator from o.toml", a)
	}
	if a := find(orc, "orchestrator", "max_budget_usd"); a.Value != "2.0" {
		t.Errorf("max_budget_usd = %q, want a TOML float", a.Value)
	}
	if _, err := s.Annotate("missing"); err == nil {
		t.Error("Annotate(missing) succeeded")
	}
}

func find(ann []Annotation, table, key string) Annotation {
	for _, a := range ann {
		if a.Table == table && a.Key == key {
			return a
		}
	}
	return Annotation{}
}

func TestLoadFiles(t *testing.T) {
	big := strings.Repeat("# padding\n", maxFileSize/10+1)
	s := mustLoad(t, map[string]string{
		".hidden.toml":     "not = [valid",
		"notes.txt":        "ignored",
		"big.toml":         big,
		".hidden.d/x.toml": "[bad",
		"bad name.toml":    "",
		"w.toml":           "[service]\nexec = [\"/bin/sh\"]\n",
	})
	if len(s.Units) != 1 || s.Units["w"] == nil {
		t.Errorf("units = %v, want only w", s.Units)
	}
	if got := problemText(s.Problems["big"]); !strings.Contains(got, "/units/big.toml:1:1: file too large (262150 bytes, the limit is 262144)") {
		t.Errorf("problems of big = %q", got)
	}
	if got := problemText(s.Problems["bad name"]); !strings.Contains(got, "bad file name") {
		t.Errorf("problems of 'bad name' = %q", got)
	}
	if len(s.Problems) != 2 {
		t.Errorf("problems = %v, want big and 'bad name' only", s.Problems)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing dir) error = %v", err)
	}
}

func TestLoadRealDir(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "w.toml"), "[service]\nexec = [\"./run.sh\"]\n")
	write(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere.toml", filepath.Join(dir, "dangling.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("w.toml", filepath.Join(dir, "linked.toml")); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u := mustUnit(t, s, "w"); u.Service.Exec[0] != filepath.Join(dir, "run.sh") {
		t.Errorf("exec[0] = %q", u.Service.Exec[0])
	}
	mustUnit(t, s, "linked")
	if got := problemText(s.Problems["dangling"]); !strings.Contains(got, "cannot read") {
		t.Errorf("problems of dangling = %q, want cannot read", got)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadManyFilesInParallel loads a directory large enough to be read and
// built on several threads: every unit and every problem is where it belongs, as
// with one reader, and a second load through the cache parses nothing.
func TestLoadManyFilesInParallel(t *testing.T) {
	dir := t.TempDir()
	const n = 4 * readsPerReader
	for i := range n {
		name := fmt.Sprintf("u%03d", i)
		text := "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo " + name + "\"]\n"
		if i%3 == 1 { // a command looked up in PATH, by every builder at once
			text = "[service]\nexec = [\"sh\", \"-c\", \"echo " + name + "\"]\n"
		}
		if i%50 == 7 {
			text = "[service]\nexec = [\"/bin/sh\"]\nrestart = \"sometimes\"\n" // a bad value
		}
		if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache()
	s, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := range n {
		name := fmt.Sprintf("u%03d", i)
		if i%50 == 7 {
			bad++
			if len(s.Problems[name]) == 0 || s.Units[name] != nil {
				t.Errorf("%s: loaded as %v with problems %v, want only problems", name, s.Units[name], s.Problems[name])
			}
			continue
		}
		u := s.Units[name]
		if u == nil {
			t.Fatalf("%s: not loaded (problems %v)", name, s.Problems[name])
		}
		if want := "echo " + name; len(u.Service.Exec) != 3 || u.Service.Exec[2] != want {
			t.Errorf("%s: exec %q, want its own file's %q", name, u.Service.Exec, want)
		}
	}
	if len(s.Units) != n-bad {
		t.Errorf("%d units, want %d", len(s.Units), n-bad)
	}
	before := c.Stats()
	if before.Parsed != n {
		t.Errorf("first load parsed %d files, want %d", before.Parsed, n)
	}
	// Files written within the cache's racy window are read again, not
	// parsed: by content.
	if _, err := LoadCached(c, dir); err != nil {
		t.Fatal(err)
	}
	if after := c.Stats(); after.Parsed != before.Parsed {
		t.Errorf("the second load parsed %d files again, want none", after.Parsed-before.Parsed)
	}
}

// TestPathSearchesPerLoad loads units that run a program by bare name: one
// load finds it missing for all of them, and the next load, once it is
// installed, finds it for all of them (what a load found is not kept).
func TestPathSearchesPerLoad(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("an executable is a file with an extension there")
	}
	dir, bin := t.TempDir(), t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		text := fmt.Sprintf("[service]\nexec = [\"opsvc-test-tool\"]\nenvironment = { PATH = %q }\n", bin)
		if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache()
	s, err := LoadCached(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if got := problemText(s.Problems[name]); !strings.Contains(got, `"opsvc-test-tool" is not found in PATH`) {
			t.Errorf("%s before the install: problems %q, want the program not found", name, got)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "opsvc-test-tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if s, err = LoadCached(c, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if s.Units[name] == nil {
			t.Errorf("%s after the install: not loaded: %s", name, problemText(s.Problems[name]))
		}
	}
}

package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var updateGolden = flag.Bool("update-settings", false, "rewrite testdata/*.err from the current output")

// TestSettingsGolden parses every testdata/*.toml: a file with a .err beside
// it must fail with exactly that text; one without must parse.
func TestSettingsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := ParseSettings(filepath.Base(file), data)
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *updateGolden {
				if perr == nil {
					os.Remove(golden)
					return
				}
				if err := os.WriteFile(golden, []byte(perr.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if errors.Is(err, os.ErrNotExist) {
				if perr != nil {
					t.Fatalf("want no error, got:\n%v", perr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if perr == nil {
				t.Fatalf("parsed without error, want:\n%s", want)
			}
			if diff := cmp.Diff(string(want), perr.Error()+"\n"); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			// Every line is one *Problem with a position.
			for _, e := range unjoin(perr) {
				var p *Problem
				if !errors.As(e, &p) || p.File != filepath.Base(file) || p.Line < 1 || p.Col < 1 {
					t.Errorf("%v: not a positioned *Problem", e)
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestSettingsDefaults(t *testing.T) {
	design, err := os.ReadFile("testdata/design_example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"design example": string(design), "empty": "", "empty tables": "[orchestrator]\n[control]\n"} {
		got, err := ParseSettings(name, []byte(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(DefaultSettings(), got); diff != "" {
			t.Errorf("%s (-defaults +got):\n%s", name, diff)
		}
	}
	got, err := LoadSettings(filepath.Join(t.TempDir(), "missing.toml"))
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	if diff := cmp.Diff(DefaultSettings(), got); diff != "" {
		t.Errorf("missing file (-defaults +got):\n%s", diff)
	}
	if err := DefaultSettings().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// DefaultSettings returns a fresh value each time.
	a := DefaultSettings()
	a.Orchestrator.ValidModels[0] = "changed"
	if DefaultSettings().Orchestrator.ValidModels[0] != "haiku" {
		t.Error("DefaultSettings shares its slices")
	}
}

func TestSettingsPartialFile(t *testing.T) {
	got, err := LoadSettings("testdata/partial.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultSettings()
	want.Orchestrator.Model = "opus"
	want.Orchestrator.MaxTurns = 200
	want.Orchestrator.MaxBudgetUSD = 100
	want.Orchestrator.MaxConcurrentSessions = 4
	want.Orchestrator.MaxSessionsPerMinute = 0
	want.Control = ControlSettings{Group: "opsvc", AllowUIDs: []int{0, 1000}, Listen: "127.0.0.1:7780"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSettingsUnreadable(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadSettings(dir) // a directory
	if err == nil || !strings.HasPrefix(err.Error(), "config: read settings "+dir) {
		t.Errorf("err = %v, want config: read settings %s: …", err, dir)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Settings)
		field  string // "" = valid
		hint   string
	}{
		{"defaults", func(*Settings) {}, "", ""},
		{"max_turns low edge", func(s *Settings) { s.Orchestrator.MaxTurns = 1 }, "", ""},
		{"max_turns high edge", func(s *Settings) { s.Orchestrator.MaxTurns = 200 }, "", ""},
		{"max_turns 0", func(s *Settings) { s.Orchestrator.MaxTurns = 0 }, "orchestrator.max_turns", "allowed: 1 to 200"},
		{"max_turns 201", func(s *Settings) { s.Orchestrator.MaxTurns = 201 }, "orchestrator.max_turns", "allowed: 1 to 200"},
		{"max_continuations 20", func(s *Settings) { s.Orchestrator.MaxContinuations = 20 }, "", ""},
		{"max_continuations 21", func(s *Settings) { s.Orchestrator.MaxContinuations = 21 }, "orchestrator.max_continuations", "allowed: 1 to 20"},
		{"max_continuations 0", func(s *Settings) { s.Orchestrator.MaxContinuations = 0 }, "orchestrator.max_continuations", "allowed: 1 to 20"},
		{"budget 0", func(s *Settings) { s.Orchestrator.MaxBudgetUSD = 0 }, "", ""},
		{"budget 100", func(s *Settings) { s.Orchestrator.MaxBudgetUSD = 100 }, "", ""},
		{"budget 100.01", func(s *Settings) { s.Orchestrator.MaxBudgetUSD = 100.01 }, "orchestrator.max_budget_usd", "allowed: 0 to 100"},
		{"budget negative", func(s *Settings) { s.Orchestrator.MaxBudgetUSD = -0.5 }, "orchestrator.max_budget_usd", "allowed: 0 to 100"},
		{"budget NaN", func(s *Settings) { s.Orchestrator.MaxBudgetUSD = math.NaN() }, "orchestrator.max_budget_usd", "allowed: 0 to 100"},
		{"concurrent 0", func(s *Settings) { s.Orchestrator.MaxConcurrentSessions = 0 }, "", ""},
		{"concurrent -1", func(s *Settings) { s.Orchestrator.MaxConcurrentSessions = -1 }, "orchestrator.max_concurrent_sessions", "allowed: 0 or more; 0 means unlimited"},
		{"per minute -1", func(s *Settings) { s.Orchestrator.MaxSessionsPerMinute = -1 }, "orchestrator.max_sessions_per_minute", "allowed: 0 or more; 0 means unlimited"},
		{"global budget large", func(s *Settings) { s.Orchestrator.GlobalBudgetUSD = 1e6 }, "", ""},
		{"global budget -1", func(s *Settings) { s.Orchestrator.GlobalBudgetUSD = -1 }, "orchestrator.global_budget_usd", "allowed: 0 or more"},
		{"global budget inf", func(s *Settings) { s.Orchestrator.GlobalBudgetUSD = math.Inf(1) }, "orchestrator.global_budget_usd", "allowed: 0 or more"},
		{"worker budget -1", func(s *Settings) { s.Orchestrator.PerWorkerBudgetUSD = -1 }, "orchestrator.per_worker_budget_usd", "allowed: 0 or more"},
		{"model not valid", func(s *Settings) { s.Orchestrator.Model = "gpt" }, "orchestrator.model", `use one of "haiku", "sonnet", "opus", or add it to valid_models`},
		{"model added", func(s *Settings) {
			s.Orchestrator.Model = "gpt"
			s.Orchestrator.ValidModels = append(s.Orchestrator.ValidModels, "gpt")
		}, "", ""},
		{"no valid models", func(s *Settings) { s.Orchestrator.ValidModels = nil }, "orchestrator.valid_models", `list at least one model, e.g. ["haiku", "sonnet", "opus"]`},
		{"empty model", func(s *Settings) { s.Orchestrator.Model = "" }, "orchestrator.model", "name one of valid_models"},
		{"listen ok", func(s *Settings) { s.Control.Listen = "[::1]:7780" }, "", ""},
		{"listen no port", func(s *Settings) { s.Control.Listen = "localhost" }, "control.listen", `write HOST:PORT such as "127.0.0.1:7780", or "" for none`},
		{"listen port 0", func(s *Settings) { s.Control.Listen = ":0" }, "control.listen", `write HOST:PORT such as "127.0.0.1:7780", or "" for none`},
		{"uid -1", func(s *Settings) { s.Control.AllowUIDs = []int{-1} }, "control.allow_uids", "allowed: 0 to 4294967294"},
		{"group with colon", func(s *Settings) { s.Control.Group = "a:b" }, "control.group", `name a group such as "opsvc", or "" for none`},
		{"tls both", func(s *Settings) { s.Control.TLSCert, s.Control.TLSKey = "c.pem", "k.pem" }, "", ""},
		{"tls cert alone", func(s *Settings) { s.Control.TLSCert = "c.pem" }, "control.tls_cert", "set both to PEM files, or neither"},
		{"tls key alone", func(s *Settings) { s.Control.TLSKey = "k.pem" }, "control.tls_key", "set both to PEM files, or neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultSettings()
			tt.change(&s)
			err := s.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("Validate = %v, want a *Problem", err)
			}
			if p.Field != tt.field || p.Hint != tt.hint || p.File != "" {
				t.Errorf("problem = %+v, want field %s, hint %q", p, tt.field, tt.hint)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "config: "+tt.field) || !strings.Contains(msg, "("+tt.hint+")") {
				t.Errorf("message %q: want it to start with config: %s and end with the hint", msg, tt.field)
			}
		})
	}

	// All problems at once.
	s := DefaultSettings()
	s.Orchestrator.MaxTurns, s.Orchestrator.MaxContinuations, s.Control.Listen = 0, 0, "x"
	if n := len(unjoin(s.Validate())); n != 3 {
		t.Errorf("Validate reported %d problems, want 3: %v", n, s.Validate())
	}
}

// TestSettingsJSON pins the JSON of GET /v1/settings and that PUT's body decodes
// back to the same settings.
func TestSettingsJSON(t *testing.T) {
	data, err := json.Marshal(DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"orchestrator":{"model":"sonnet","valid_models":["haiku","sonnet","opus"],"max_turns":30,"max_continuations":5,` +
		`"max_budget_usd":5,"max_concurrent_sessions":0,"max_sessions_per_minute":60,"global_budget_usd":50,"per_worker_budget_usd":10},` +
		`"control":{"group":"","allow_uids":[],"listen":"","tls_cert":"","tls_key":"","allow_plaintext":false},` +
		`"cluster":{"etcd":[],"prefix":"/opsvc","node":"%H","tls_ca":"","tls_cert":"","tls_key":"","username":"","password_file":"",` +
		`"lease_ttl":"10s","dial_timeout":"5s"}}`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	var back Settings
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultSettings(), back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestSettingsSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "etc", "opsvc.toml") // the directory does not exist yet
	s := DefaultSettings()
	s.Orchestrator.Model = "opus"
	s.Orchestrator.ValidModels = []string{"opus", "my \"quoted\" model"}
	s.Orchestrator.MaxBudgetUSD = 12.5
	s.Orchestrator.MaxConcurrentSessions = 3
	s.Control = ControlSettings{Group: "opsvc", AllowUIDs: []int{1000}, Listen: "0.0.0.0:7780", TLSCert: "c.pem", TLSKey: "k.pem", AllowPlaintext: true}
	if err := SaveSettings(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSettings(path)
	if err != nil {
		t.Fatalf("saved file does not load: %v", err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("round trip (-saved +loaded):\n%s", diff)
	}

	// The mode of an existing file is kept; no temp file is left behind.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Control.AllowUIDs = nil
	if err := SaveSettings(path, s); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after save = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	got, err = LoadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip with nil allow_uids (-saved +loaded):\n%s", diff)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"opsvc.toml", "opsvc.toml.lock"}, names); diff != "" {
		t.Errorf("files beside the settings (-want +got):\n%s", diff)
	}

	// Invalid settings are refused and the file is left as it was.
	before, _ := os.ReadFile(path)
	bad := s
	bad.Orchestrator.MaxTurns = 1000
	err = SaveSettings(path, bad)
	var p *Problem
	if !errors.As(err, &p) || p.Field != "orchestrator.max_turns" {
		t.Errorf("SaveSettings(invalid) = %v, want the max_turns problem", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("an invalid save changed the file")
	}
}

// TestSettingsSaveWhileLoading: concurrent saves never show a reader a partial file.
func TestSettingsSaveWhileLoading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opsvc.toml")
	variant := func(i int) Settings {
		s := DefaultSettings()
		s.Orchestrator.MaxTurns = 1 + i%200
		s.Orchestrator.ValidModels = append(s.Orchestrator.ValidModels, strings.Repeat("m", 1000+i))
		return s
	}
	if err := SaveSettings(path, variant(0)); err != nil {
		t.Fatal(err)
	}
	const writers, saves = 3, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for i := range saves {
				if err := SaveSettings(path, variant(w*saves+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range writers * saves {
			s, err := LoadSettings(path)
			if err != nil {
				errs <- fmt.Errorf("load while saving: %w", err)
				return
			}
			i := len(s.Orchestrator.ValidModels[3]) - 1000
			if diff := cmp.Diff(variant(i), s); diff != "" {
				errs <- fmt.Errorf("load while saving read a mix of variants (-want +got):\n%s", diff)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestNoProcessImports: package config never starts processes.
func TestNoProcessImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "os/exec" {
			t.Error("package config depends on os/exec")
		}
	}
}

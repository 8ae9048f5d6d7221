package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/unit"
)

// maxUnitInput bounds a unit file read from stdin or written by an editor.
const maxUnitInput = 1 << 20

// validate is `opsvc validate [PATH|-]`; - reads one unit file from stdin.
func (c *cli) validate() error {
	path := c.paths.Units
	if len(c.args.pos) > 1 {
		return fail(exitUsage, "validate: at most one PATH (a unit file, a units directory, or - for stdin)")
	}
	if len(c.args.pos) == 1 {
		path = c.args.pos[0]
	}
	shown := path
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(os.Stdin, maxUnitInput+1))
		if err != nil {
			return fail(exitFailure, "validate: reading stdin: %v", err)
		}
		if len(data) > maxUnitInput {
			return fail(exitFailure, "validate: stdin: more than %d bytes (a unit file is smaller)", maxUnitInput)
		}
		dir, err := os.MkdirTemp("", "opsvc-validate")
		if err != nil {
			return fail(exitFailure, "validate: %v", err)
		}
		defer os.RemoveAll(dir)
		name := nameFromHeader(data)
		path = filepath.Join(dir, name+".toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fail(exitFailure, "validate: %v", err)
		}
		shown = "stdin"
	} else if _, err := os.Stat(path); err != nil {
		return fail(exitFailure, "validate %s: %v (give a unit file or a units directory)", path, unwrapPathErr(err))
	}
	probs := unit.ValidateWith(path, c.validModels())
	if shown == "stdin" {
		for i := range probs {
			probs[i].File = "stdin"
		}
	}
	if c.args.has("json") {
		if probs == nil {
			probs = []unit.Problem{}
		}
		json.NewEncoder(c.stdout).Encode(map[string]any{"problems": probs})
	} else {
		for _, p := range probs {
			fmt.Fprintln(c.stdout, p.Error())
		}
	}
	if shown != "stdin" {
		c.warnFleetWithoutCluster(path)
	}
	if len(probs) > 0 {
		return fail(exitFailure, "validate %s: %d problem(s)", shown, len(probs))
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// problemFile finds the file of a FILE:LINE:COL: problem.
var problemFile = regexp.MustCompile(`^(/[^:]+):[0-9]+:[0-9]+: `)

var catHeader = regexp.MustCompile(`^# ([A-Za-z0-9:_.@-]+)\b`)

// nameFromHeader takes the unit name from the first line `opsvc cat` writes,
// so a template instance read back is checked as itself.
func nameFromHeader(data []byte) string {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if m := catHeader.FindSubmatch(first); m != nil {
		if n := string(m[1]); unit.ValidName(n) == nil && !strings.HasSuffix(n, "@") {
			if i := strings.IndexByte(n, '@'); i >= 0 {
				return n[:i] + "@" // validated as the template it came from
			}
			return n
		}
	}
	return "stdin"
}

// cat is `opsvc cat UNIT`: the effective definition as TOML, one table
// each, every value with its source file as a comment.
func (c *cli) cat() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "cat: name one unit (opsvc cat web)")
	}
	name := c.args.pos[0]
	if err := checkName("cat", name); err != nil {
		return err
	}
	var out struct {
		Name       string            `json:"name"`
		Definition []unit.Annotation `json:"definition"`
	}
	err := c.call("GET", "/v1/units/"+url.PathEscape(name)+"/definition", nil, nil, &out)
	if err != nil && codeFor(err) == exitNoUnit {
		// A unit the daemon runs whose files have problems now: show it
		// with its load error, rather than "not found".
		us, uerr := c.oneUnit("cat", name)
		if uerr != nil {
			return uerr
		}
		return c.catBroken(us)
	}
	if err != nil {
		return asExit("cat "+name, err)
	}
	if c.args.has("json") {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printDefinition(c.stdout, name, out.Definition)
	return nil
}

// catBroken prints a unit whose files do not load: its error, then each
// file as comments, so the output stays valid TOML.
func (c *cli) catBroken(us unitStatus) error {
	if c.args.has("json") {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"name": us.Name, "error": us.Error, "sources": us.Sources})
	} else {
		w := c.stdout
		fmt.Fprintf(w, "# %s\n", us.Name)
		fmt.Fprintf(w, "# %s, but its unit files have problems:\n", runningWords(us))
		for _, l := range strings.Split(us.Error, "\n") {
			fmt.Fprintf(w, "#   %s\n", l)
		}
		files := append([]string{}, us.Sources...)
		for _, l := range strings.Split(us.Error, "\n") {
			if m := problemFile.FindStringSubmatch(l); m != nil && !contains(files, m[1]) {
				files = append(files, m[1])
			}
		}
		for _, src := range files {
			fmt.Fprintf(w, "#\n# --- %s\n", src)
			data, err := readUnitFile(src)
			if err != nil {
				fmt.Fprintf(w, "# (cannot read: %v)\n", unwrapPathErr(err))
				continue
			}
			for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
				fmt.Fprintf(w, "# %s\n", escapeControl(l))
			}
		}
	}
	return fail(exitFailure, "cat %s: its unit files have problems (fix them, check with opsvc validate, then opsvc reload)", us.Name)
}

func runningWords(us unitStatus) string {
	if us.PID > 0 {
		return fmt.Sprintf("running (pid %d) with its last good definition", us.PID)
	}
	return us.State.String()
}

func readUnitFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxUnitInput))
	return data, err
}

func printDefinition(w io.Writer, name string, defs []unit.Annotation) {
	fmt.Fprintf(w, "# %s\n", name)
	// One header per table, tables in the order they first appear:
	// TOML refuses a table defined twice.
	var order []string
	byTable := map[string][]unit.Annotation{}
	for _, d := range defs {
		if _, ok := byTable[d.Table]; !ok {
			order = append(order, d.Table)
		}
		byTable[d.Table] = append(byTable[d.Table], d)
	}
	width := 0
	for _, d := range defs {
		if n := len(tomlKey(d.Key)) + 3 + len(d.Value); n > width && n < 60 {
			width = n
		}
	}
	for i, table := range order {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "[%s]\n", table)
		for _, d := range byTable[table] {
			kv := tomlKey(d.Key) + " = " + d.Value
			fmt.Fprintf(w, "%-*s  # %s\n", width, kv, d.Source)
		}
	}
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// edit is `opsvc edit UNIT`: $EDITOR on NAME.d/override.toml; the result is
// installed only once the unit with it is valid, then the daemon reloads.
func (c *cli) edit() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "edit: name one unit (opsvc edit web)")
	}
	name := c.args.pos[0]
	if err := checkName("edit", name); err != nil {
		return err
	}
	dir, daemon, err := c.unitsDirOf(name)
	if err != nil {
		return err
	}
	dropDir := filepath.Join(dir, name+".d")
	target := filepath.Join(dropDir, "override.toml")
	draft := filepath.Join(dropDir, ".override.toml.draft")
	old, err := os.ReadFile(target)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	start := old
	if d, err := os.ReadFile(draft); err == nil {
		start = d // the last try that did not validate
		fmt.Fprintf(c.stderr, "opsvc: edit %s: going on from the draft that did not validate\n", name)
	} else if len(old) == 0 {
		start = []byte(fmt.Sprintf("# Settings here override %s.toml (opsvc cat %s shows the result).\n# For example:\n# [service]\n# restart = \"always\"\n", name, name))
	}
	tmp, err := os.MkdirTemp("", "opsvc-edit")
	if err != nil {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, "override.toml")
	if err := os.WriteFile(work, start, 0o600); err != nil {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	if err := c.runEditor(work); err != nil {
		return err
	}
	edited, err := readUnitFile(work)
	if err != nil {
		return fail(exitFailure, "edit %s: reading the edited file: %v", name, err)
	}
	if bytes.Equal(edited, old) || (len(old) == 0 && len(stripComments(edited)) == 0) {
		os.Remove(draft)
		fmt.Fprintf(c.stderr, "opsvc: edit %s: no change\n", name)
		return nil
	}
	probs, err := validateWith(dir, name, edited, c.validModels())
	if err != nil {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	if len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(c.stdout, p.Error())
		}
		if err := os.MkdirAll(dropDir, 0o755); err == nil {
			atomicfile.Write(draft, edited, 0o644)
		}
		return fail(exitFailure, "edit %s: not installed, %d problem(s) (opsvc edit %s again goes on from your draft)", name, len(probs), name)
	}
	if err := os.MkdirAll(dropDir, 0o755); err != nil {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	if len(bytes.TrimSpace(stripComments(edited))) == 0 {
		os.Remove(target)
	} else if err := atomicfile.Write(target, edited, 0o644); err != nil {
		return fail(exitFailure, "edit %s: %v", name, err)
	}
	os.Remove(draft)
	fmt.Fprintf(c.stderr, "opsvc: edit %s: installed %s\n", name, target)
	if daemon {
		return c.reload()
	}
	return nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for l := range bytes.SplitSeq(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, t...)
		}
	}
	return out
}

// unitsDirOf finds the directory of a unit's files: from the daemon when it
// runs, else --units.
func (c *cli) unitsDirOf(name string) (dir string, daemon bool, err error) {
	var us unitStatus
	err = c.call("GET", "/v1/units/"+url.PathEscape(name), nil, nil, &us)
	switch {
	case err == nil && len(us.Sources) > 0:
		return filepath.Dir(us.Sources[0]), true, nil
	case err != nil && codeFor(err) == exitNoUnit:
		return "", true, noUnit("edit", name)
	case err == nil:
		return c.paths.Units, true, nil
	}
	if _, serr := os.Stat(filepath.Join(c.paths.Units, name+".toml")); serr != nil {
		if _, terr := os.Stat(filepath.Join(c.paths.Units, templateOf(name)+".toml")); terr != nil {
			return "", false, fail(exitNoUnit, "edit %s: no %s.toml in %s and no daemon to ask (--units DIR)", name, name, c.paths.Units)
		}
	}
	return c.paths.Units, false, nil
}

func templateOf(name string) string {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i+1]
	}
	return name
}

// runEditor runs $VISUAL or $EDITOR (else vi) on path, on the terminal.
func (c *cli) runEditor(path string) error {
	ed := c.env.getenv("VISUAL")
	if ed == "" {
		ed = c.env.getenv("EDITOR")
	}
	if ed == "" {
		ed = "vi"
	}
	cmd := exec.CommandContext(c.ctx, "/bin/sh", "-c", ed+` "$1"`, "opsvc-edit", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stderr, c.stderr
	if f, ok := c.stdout.(*os.File); ok {
		cmd.Stdout = f
	}
	if err := cmd.Run(); err != nil {
		return fail(exitFailure, "edit: the editor %q failed: %v (set EDITOR; nothing was changed)", ed, err)
	}
	return nil
}

// validateWith checks unit name as it would load with override.toml set to
// data, on a copy of the units directory's files.
func validateWith(dir, name string, data []byte, models []string) ([]unit.Problem, error) {
	tmp, err := os.MkdirTemp("", "opsvc-check")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		src := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if !strings.HasSuffix(e.Name(), ".d") {
				continue
			}
			sub, err := os.ReadDir(src)
			if err != nil {
				continue
			}
			os.MkdirAll(filepath.Join(tmp, e.Name()), 0o700)
			for _, f := range sub {
				if f.Type().IsRegular() || f.Type()&os.ModeSymlink != 0 {
					copyFile(filepath.Join(src, f.Name()), filepath.Join(tmp, e.Name(), f.Name()))
				}
			}
			continue
		}
		copyFile(src, filepath.Join(tmp, e.Name()))
	}
	drop := filepath.Join(tmp, name+".d")
	if err := os.MkdirAll(drop, 0o700); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(drop, ".override.toml.draft"))
	if err := os.WriteFile(filepath.Join(drop, "override.toml"), data, 0o600); err != nil {
		return nil, err
	}
	var out []unit.Problem
	mine := func(rel string) bool {
		for _, n := range []string{name, templateOf(name)} {
			if rel == n+".toml" || strings.HasPrefix(rel, n+".d"+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}
	for _, p := range unit.ValidateWith(tmp, models) {
		rel, err := filepath.Rel(tmp, p.File)
		if err != nil || !mine(rel) {
			continue // another unit's problem is not this edit's
		}
		p.File = filepath.Join(dir, rel)
		out = append(out, p)
	}
	return out, nil
}

func copyFile(src, dst string) {
	data, err := readUnitFile(src)
	if err != nil {
		return
	}
	os.WriteFile(dst, data, 0o600)
}

// validModels is [orchestrator] valid_models from the daemon's settings file,
// for checking units without a daemon; nil (the default list) when the file
// is missing or does not load.
func (c *cli) validModels() []string {
	if c.paths.Config == "" {
		return nil
	}
	st, err := config.LoadSettings(c.paths.Config)
	if err != nil {
		return nil
	}
	return st.Orchestrator.ValidModels
}

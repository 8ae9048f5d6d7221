package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
)

// allUnits asks the daemon for every unit.
func (c *cli) allUnits(op string) ([]unitStatus, error) {
	units, _, err := c.unitList(op)
	return units, err
}

// oneUnit asks the daemon for one unit; an unknown unit exits 4.
func (c *cli) oneUnit(op, name string) (unitStatus, error) {
	var us unitStatus
	if err := checkName(op, name); err != nil {
		return us, err
	}
	if err := c.call("GET", "/v1/units/"+url.PathEscape(name), nil, nil, &us); err != nil {
		if codeFor(err) == exitNoUnit {
			return us, noUnit(op, name)
		}
		return us, asExit(op+" "+name, err)
	}
	return us, nil
}

// checkName refuses a malformed unit name as a usage error.
func checkName(op, name string) error {
	if err := unit.ValidName(name); err != nil {
		return fail(exitUsage, "%s: %s", op, stripPackage(err.Error()))
	}
	return nil
}

func noUnit(op, name string) error {
	return fail(exitNoUnit, "%s %s: no such unit (opsvc list shows the units)", op, name)
}

func isPattern(s string) bool { return strings.ContainsAny(s, "*?[") }

// expand turns names and shell globs into unit names, in the order given;
// --all (where the verb has it) means every unit.
func (c *cli) expand(op string, words []string) ([]string, error) {
	needList := c.args.has("all")
	for _, w := range words {
		if isPattern(w) {
			if _, err := path.Match(w, ""); err != nil {
				return nil, fail(exitUsage, "%s: bad pattern %q: %v (use shell globs: 'worker@*')", op, w, err)
			}
			needList = true
		} else if err := checkName(op, w); err != nil {
			return nil, err
		}
	}
	if !needList {
		return words, nil
	}
	all, err := c.allUnits(op)
	if err != nil {
		return nil, err
	}
	if c.args.has("all") {
		if len(words) > 0 {
			return nil, fail(exitUsage, "%s: --all takes no unit names", op)
		}
		names := make([]string, len(all))
		for i, u := range all {
			names[i] = u.Name
		}
		return names, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, w := range words {
		if !isPattern(w) {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
			continue
		}
		matched := false
		for _, u := range all {
			if ok, _ := path.Match(w, u.Name); ok {
				matched = true
				if !seen[u.Name] {
					seen[u.Name] = true
					out = append(out, u.Name)
				}
			}
		}
		if !matched {
			return nil, fail(exitNoUnit, "%s %s: no unit matches (opsvc list shows the units)", op, w)
		}
	}
	return out, nil
}

// list is `opsvc list [PATTERN...] [--state S,...] [--failed]`.
func (c *cli) list() error {
	for _, p := range c.args.pos {
		if _, err := path.Match(p, ""); err != nil {
			return fail(exitUsage, "list: bad pattern %q: %v (use shell globs: 'worker@*')", p, err)
		}
	}
	states := map[string]bool{}
	for s := range strings.SplitSeq(c.args.get("state"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, err := supervisor.ParseState(s); err != nil {
			return fail(exitUsage, "list: unknown state %q (use active, inactive, failed, activating or deactivating)", s)
		}
		states[s] = true
	}
	if c.args.has("failed") {
		states[supervisor.Failed.String()] = true
	}
	all, err := c.allUnits("list")
	if err != nil {
		return err
	}
	units := all[:0] // filtered in place
	for i := range all {
		u := &all[i]
		if len(states) > 0 && !states[u.State.String()] {
			continue
		}
		if len(c.args.pos) > 0 {
			match := false
			for _, p := range c.args.pos {
				if ok, _ := path.Match(p, u.Name); ok {
					match = true
					break
				}
			}
			if !match {
				continue
			}
		}
		units = append(units, *u)
	}
	if c.args.has("json") {
		return writeUnitsJSON(c.stdout, units, "", false)
	}
	c.stdout.Write(c.listTable(units, time.Now()))
	if len(units) == 0 {
		fmt.Fprintln(c.stderr, "opsvc: list: no unit matches")
	}
	return nil
}

// listTable is list's table: a header and a line per unit, columns padded
// to their widest cell, trailing spaces trimmed.
func (c *cli) listTable(units []unitStatus, now time.Time) []byte {
	col := c.colors()
	type row struct{ cells [6]string }
	rows := make([]row, 0, len(units)+1)
	rows = append(rows, row{[6]string{"UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "DESCRIPTION"}})
	size := 0
	for _, u := range units {
		pid, up := "-", "-"
		if u.PID > 0 {
			pid = strconv.Itoa(u.PID)
		}
		if u.State == supervisor.Active && !u.Since.IsZero() {
			up = shortDur(now.Sub(u.Since))
		}
		desc := u.Description
		if u.Error != "" {
			desc = "(its unit file has problems: opsvc status " + u.Name + ")"
		}
		rows = append(rows, row{[6]string{u.Name, stateWord(u), pid, up, strconv.Itoa(u.Restarts), desc}})
	}
	var width [6]int
	for _, r := range rows {
		for i, f := range r.cells {
			width[i] = max(width[i], len(f))
		}
	}
	for _, w := range width {
		size += w + 2
	}
	out := make([]byte, 0, len(rows)*(size+1))
	for ri, r := range rows {
		start := len(out)
		for i, f := range r.cells {
			if ri > 0 && i == 1 {
				out = append(out, col.state(units[ri-1].State, f)...)
			} else {
				out = append(out, f...)
			}
			if i < len(r.cells)-1 {
				for range width[i] - len(f) + 2 {
					out = append(out, ' ')
				}
			}
		}
		out = append(out[:start+len(bytes.TrimRight(out[start:], " "))], '\n')
	}
	return out
}

func stateWord(u unitStatus) string {
	return u.State.String() + "/" + u.Sub
}

func shortDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		m := int(d.Minutes()) % 60 // d ≥ 1h: 0..59
		pad := ""
		if m < 10 {
			pad = "0"
		}
		return strconv.Itoa(int(d.Hours())) + "h" + pad + strconv.Itoa(m) + "m"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// is answers is-active, is-failed and is-enabled: one word per unit unless
// --quiet; the exit code says whether every unit is what was asked.
func (c *cli) is(what string) error {
	op := "is-" + what
	if len(c.args.pos) == 0 {
		return fail(exitUsage, "%s: name at least one unit (opsvc %s web)", op, op)
	}
	quiet := c.args.has("quiet")
	all, anyOK, missing := true, false, false
	for _, name := range c.args.pos {
		us, err := c.oneUnit(op, name)
		if err != nil {
			if codeFor(err) == exitNoUnit {
				missing = true
				if !quiet {
					fmt.Fprintln(c.stdout, "not-found")
				}
				all = false
				continue
			}
			return err
		}
		word, ok := us.State.String(), false
		switch what {
		case "active":
			ok = us.State == supervisor.Active
		case "failed":
			ok = us.State == supervisor.Failed
		case "enabled":
			en, err := c.enabled(us)
			if err != nil {
				return err
			}
			word = "disabled"
			if en {
				word = "enabled"
			}
			ok = en
		}
		if !quiet {
			fmt.Fprintln(c.stdout, word)
		}
		anyOK = anyOK || ok
		all = all && ok
	}
	switch {
	case what == "failed" && anyOK:
		return nil // as systemctl: true if any is failed
	case what == "failed":
		return &exitError{code: exitFailure}
	case all:
		return nil
	case missing && len(c.args.pos) == 1:
		return &exitError{code: exitNoUnit}
	case what == "active":
		return &exitError{code: exitInactive}
	}
	return &exitError{code: exitFailure}
}

// enabled says whether a unit starts with the daemon: the persisted choice
// of enable/disable when there is one, else its file's [unit] enabled.
func (c *cli) enabled(us unitStatus) (bool, error) {
	if us.Enabled != nil {
		return *us.Enabled, nil
	}
	var out api.EnabledResult
	if err := c.call("GET", "/v1/units/"+url.PathEscape(us.Name)+"/enabled", nil, nil, &out); err != nil {
		if codeFor(err) == exitNoUnit {
			return false, noUnit("is-enabled", us.Name)
		}
		return false, asExit("is-enabled "+us.Name, err)
	}
	return out.Enabled, nil
}

func (c *cli) definition(name string) ([]unit.Annotation, error) {
	var out struct {
		Definition []unit.Annotation `json:"definition"`
	}
	err := c.call("GET", "/v1/units/"+url.PathEscape(name)+"/definition", nil, nil, &out)
	return out.Definition, err
}

// properties are show's KEY=VALUE pairs, in a fixed order.
func properties(us unitStatus, enabled bool) [][2]string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("Mon 2006-01-02 15:04:05 MST")
	}
	code, sig := "", ""
	if us.Exit != nil {
		code, sig = strconv.Itoa(us.Exit.Code), us.Exit.Signal
	}
	load := "loaded"
	if us.Error != "" {
		load = "error"
	}
	frag, dropins := "", ""
	if len(us.Sources) > 0 {
		frag, dropins = us.Sources[0], strings.Join(us.Sources[1:], " ")
	}
	ufs := "disabled"
	if enabled {
		ufs = "enabled"
	}
	return [][2]string{
		{"Id", us.Name},
		{"Description", us.Description},
		{"Type", us.Type},
		{"LoadState", load},
		{"LoadError", us.Error},
		{"ActiveState", us.State.String()},
		{"SubState", us.Sub},
		{"Result", us.Result},
		{"MainPID", strconv.Itoa(us.PID)},
		{"ActiveEnterTimestamp", ts(us.Since)},
		{"NRestarts", strconv.Itoa(us.Restarts)},
		{"ExecMainStatus", code},
		{"ExecMainSignal", sig},
		{"StatusText", us.StatusText},
		{"UnitFileState", ufs},
		{"Wanted", strconv.FormatBool(us.Wanted)},
		{"NotRunningBecause", whyNotRunning(us, enabled)},
		{"LastStartError", us.LastError},
		{"FragmentPath", frag},
		{"DropInPaths", dropins},
	}
}

// show is `opsvc show UNIT [-p PROP,...] [--value]`.
func (c *cli) show() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "show: name one unit (opsvc show web -p ActiveState)")
	}
	us, err := c.oneUnit("show", c.args.pos[0])
	if err != nil {
		return err
	}
	en, err := c.enabled(us)
	if err != nil {
		return err
	}
	props := properties(us, en)
	// Then every key of the definition: service.stop_timeout is StopTimeout.
	if defs, err := c.definition(us.Name); err == nil {
		seen := map[string]bool{}
		for _, p := range props {
			seen[p[0]] = true
		}
		for _, d := range defs {
			name := camel(d.Key)
			if strings.Contains(d.Table, ".") { // environment and other sub-tables
				name = camel(d.Table[strings.LastIndexByte(d.Table, '.')+1:]) + "[" + d.Key + "]"
			}
			if !seen[name] {
				seen[name] = true
				props = append(props, [2]string{name, strings.Trim(d.Value, `"`)})
			}
		}
	}
	var want []string
	for p := range strings.SplitSeq(c.args.get("property"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			want = append(want, p)
		}
	}
	byName := map[string]string{}
	var names []string
	for _, p := range props {
		byName[p[0]] = p[1]
		names = append(names, p[0])
	}
	if c.args.has("json") {
		out := map[string]string{}
		for _, p := range props {
			if len(want) == 0 || contains(want, p[0]) {
				out[p[0]] = p[1]
			}
		}
		return json.NewEncoder(c.stdout).Encode(out)
	}
	if len(want) == 0 {
		want = names
	}
	for _, p := range want {
		v, ok := byName[p]
		if !ok {
			sort.Strings(names)
			return fail(exitUsage, "show: unknown property %q (known: %s)", p, strings.Join(names, ", "))
		}
		if c.args.has("value") {
			fmt.Fprintln(c.stdout, v)
		} else {
			fmt.Fprintf(c.stdout, "%s=%s\n", p, v)
		}
	}
	return nil
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// whyNotRunning says in a few words why a unit has no process, or "".
func whyNotRunning(us unitStatus, enabled bool) string {
	if us.PID > 0 || us.State == supervisor.Active || us.State == supervisor.Activating {
		return ""
	}
	switch {
	case us.Error != "":
		return "its unit file has problems (opsvc validate)"
	case us.State == supervisor.Failed:
		r := "it failed"
		if us.Result != "" {
			r += " (" + us.Result + ")"
		}
		return r + "; opsvc start or opsvc reset-failed"
	case us.Blocked != "":
		return us.Blocked
	case us.StoppedByHand:
		return "stopped by hand; opsvc start starts it"
	case !us.Wanted && !enabled:
		return "disabled; opsvc enable or opsvc start"
	case !us.Wanted:
		return "stopped by hand; opsvc start starts it"
	case us.Sub == "exited":
		return "it ran and exited"
	}
	return ""
}

// kill is `opsvc kill UNIT [--signal SIG] [--main]`.
func (c *cli) kill() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "kill: name one unit (opsvc kill web --signal HUP)")
	}
	name := c.args.pos[0]
	if err := checkName("kill", name); err != nil {
		return err
	}
	sig := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(c.args.get("signal")), "SIG"))
	if sig == "" {
		sig = "TERM"
	}
	if _, ok := signalNumber(sig); !ok {
		return fail(exitUsage, "kill: unknown signal %q (use a name such as TERM, HUP, INT, KILL, USR1, or a number)", c.args.get("signal"))
	}
	q := url.Values{"signal": {sig}}
	if c.args.has("main") {
		q.Set("main", "1")
	}
	if err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/kill", q, nil, nil); err != nil {
		if codeFor(err) == exitNoUnit {
			return noUnit("kill", name)
		}
		return asExit("kill "+name, err)
	}
	return nil
}

// resetFailed is `opsvc reset-failed [UNIT...]`.
func (c *cli) resetFailed() error {
	names := c.args.pos
	if len(names) == 0 {
		if err := c.call("POST", "/v1/reset-failed", nil, nil, nil); err != nil {
			return asExit("reset-failed", err)
		}
		return nil
	}
	names, err := c.expand("reset-failed", names)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/reset-failed", nil, nil, nil); err != nil {
			if codeFor(err) == exitNoUnit {
				return noUnit("reset-failed", name)
			}
			return asExit("reset-failed "+name, err)
		}
	}
	return nil
}

// choice is `opsvc enable|disable UNIT...`: persisted by the daemon in its
// state directory.
func (c *cli) choice(verb string) error {
	if len(c.args.pos) == 0 {
		return fail(exitUsage, "%s: name at least one unit (opsvc %s web)", verb, verb)
	}
	names, err := c.expand(verb, c.args.pos)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/"+verb, nil, nil, nil); err != nil {
			if codeFor(err) == exitNoUnit {
				return noUnit(verb, name)
			}
			return asExit(verb+" "+name, err)
		}
	}
	return nil
}

// unitStatus is a unit as the daemon shows it, with the fields of enable,
// disable and stop-by-hand where the daemon reports them.
type unitStatus struct {
	supervisor.UnitStatus
	Enabled       *bool `json:"enabled,omitempty"`
	StoppedByHand bool  `json:"stopped_by_hand,omitempty"`
}

// signalNumber knows the signals kill may send, by name or number.
func signalNumber(s string) (int, bool) {
	names := map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15, "CONT": 18, "STOP": 19, "WINCH": 28}
	if n, ok := names[s]; ok {
		return n, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0 && n < 65
}

// camel turns stop_timeout into StopTimeout.
func camel(key string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(key, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

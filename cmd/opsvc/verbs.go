package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/unit"
)

func (c *cli) version() error {
	fmt.Fprintf(c.stdout, "opsvc %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func (c *cli) status() error {
	var units []supervisor.UnitStatus
	missing := 0
	if len(c.args.pos) == 0 {
		var out struct {
			Units []supervisor.UnitStatus `json:"units"`
		}
		if err := c.call("GET", "/v1/units", nil, nil, &out); err != nil {
			return asExit("status", err)
		}
		units = out.Units
	} else {
		for _, name := range c.args.pos {
			var us supervisor.UnitStatus
			if err := c.call("GET", "/v1/units/"+url.PathEscape(name), nil, nil, &us); err != nil {
				if codeFor(err) == exitNoUnit {
					fmt.Fprintf(c.stderr, "opsvc: unit %q not found (see: opsvc status)\n", name)
					missing++
					continue
				}
				return asExit("status "+name, err)
			}
			units = append(units, us)
		}
	}
	if c.args.has("json") {
		if units == nil {
			units = []supervisor.UnitStatus{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"units": units})
	} else {
		now := time.Now()
		for i, us := range units {
			if i > 0 {
				fmt.Fprintln(c.stdout)
			}
			c.printStatus(us, now, len(c.args.pos) > 0)
		}
	}
	if missing > 0 {
		return fail(exitNoUnit, "")
	}
	if len(c.args.pos) > 0 {
		for _, us := range units {
			if us.State != supervisor.Active {
				return fail(exitInactive, "")
			}
		}
	}
	return nil
}

func (c *cli) printStatus(us supervisor.UnitStatus, now time.Time, withLogs bool) {
	w := c.stdout
	head := "● " + us.Name
	if us.Description != "" {
		head += " - " + us.Description
	}
	fmt.Fprintln(w, head)
	loaded := "loaded"
	if us.Error != "" {
		loaded = "error"
	}
	if len(us.Sources) > 0 {
		fmt.Fprintf(w, "     Loaded: %s (%s)\n", loaded, us.Sources[0])
		if len(us.Sources) > 1 {
			fmt.Fprintf(w, "    Drop-In: %s\n", strings.Join(us.Sources[1:], ", "))
		}
	} else {
		fmt.Fprintf(w, "     Loaded: %s\n", loaded)
	}
	active := fmt.Sprintf("%s (%s)", us.State, us.Sub)
	if us.State == supervisor.Failed && us.Result != "" {
		active = fmt.Sprintf("%s (Result: %s)", us.State, us.Result)
	}
	if !us.Since.IsZero() {
		active += fmt.Sprintf(" since %s; %s", us.Since.Local().Format("Mon 2006-01-02 15:04:05 MST"), ago(now, us.Since))
	}
	fmt.Fprintf(w, "     Active: %s\n", active)
	if us.PID > 0 {
		fmt.Fprintf(w, "   Main PID: %d\n", us.PID)
	} else if us.Exit != nil {
		fmt.Fprintf(w, "   Main PID: (%s)\n", exitText(*us.Exit))
	}
	if us.Restarts > 0 {
		fmt.Fprintf(w, "   Restarts: %d\n", us.Restarts)
	}
	if us.StatusText != "" {
		fmt.Fprintf(w, "     Status: %q\n", us.StatusText)
	}
	if us.Blocked != "" {
		fmt.Fprintf(w, "    Waiting: %s\n", us.Blocked)
	}
	if us.LastError != "" {
		fmt.Fprintf(w, "  Start err: %s\n", us.LastError)
	}
	if us.Error != "" {
		for i, l := range strings.Split(us.Error, "\n") {
			label := "      Error:"
			if i > 0 {
				label = "            "
			}
			fmt.Fprintf(w, "%s %s\n", label, l)
		}
	}
	if withLogs && !c.args.has("json") {
		var lines []logs.Line
		if resp, err := c.do("GET", "/v1/units/"+url.PathEscape(us.Name)+"/logs", url.Values{"n": {"10"}}, nil); err == nil {
			streamLines(resp.Body, func(b []byte) error {
				var l logs.Line
				if json.Unmarshal(b, &l) == nil {
					lines = append(lines, l)
				}
				return nil
			})
			resp.Body.Close()
		}
		if len(lines) > 0 {
			fmt.Fprintln(w)
			for _, l := range lines {
				fmt.Fprintln(w, logLine(l))
			}
		}
	}
}

func exitText(e api.ExitStatus) string {
	if e.Signal != "" {
		return fmt.Sprintf("code=killed, signal=%s", e.Signal)
	}
	return fmt.Sprintf("code=exited, status=%d", e.Code)
}

func logLine(l logs.Line) string {
	text := strings.TrimRight(l.Text, "\n")
	tag := l.Unit
	if l.PID > 0 {
		tag += "[" + strconv.Itoa(l.PID) + "]"
	}
	if l.Stream == "stderr" {
		tag += " (stderr)"
	}
	return fmt.Sprintf("%s %s: %s", l.Time.Local().Format("Jan 02 15:04:05"), tag, text)
}

// verb runs start, stop or restart on each named unit.
func (c *cli) verb(verb string) error {
	if len(c.args.pos) == 0 {
		return fail(exitUsage, "%s: name at least one unit (see: opsvc status)", verb)
	}
	q := url.Values{}
	if !c.args.has("no-wait") {
		q.Set("wait", "1")
	}
	if c.args.has("drain") {
		q.Set("drain", "1")
	}
	// Every unit is asked at once (the daemon orders what depends on what),
	// then the answers are reported in the order given.
	errs := make([]error, len(c.args.pos))
	sem := make(chan struct{}, 1024)
	c.http() // made once, shared by the requests
	var wg sync.WaitGroup
	for i, name := range c.args.pos {
		if err := unit.ValidName(name); err != nil {
			errs[i] = fail(exitFailure, "%s %s: %v", verb, name, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/"+verb, q, nil, nil)
			switch {
			case err == nil:
			case codeFor(err) == exitNoUnit:
				errs[i] = fail(exitNoUnit, "unit %q not found (see: opsvc status)", name)
			default:
				errs[i] = asExit(verb+" "+name, err)
			}
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		ee, ok := err.(*exitError)
		if !ok {
			continue
		}
		fmt.Fprintln(c.stderr, "opsvc: "+ee.msg)
		if first == nil {
			first = &exitError{code: ee.code}
		}
		if strings.HasPrefix(ee.msg, "cannot reach") {
			break // once is enough
		}
	}
	return first
}

func (c *cli) reload() error {
	var out struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if err := c.call("POST", "/v1/reload", nil, nil, &out); err != nil {
		return asExit("reload", err)
	}
	if out.Error != "" {
		return fail(exitFailure, "reload: %s", out.Error)
	}
	fmt.Fprintln(c.stdout, out.Message)
	return nil
}

func (c *cli) logs() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "logs: name one unit (opsvc logs UNIT [-f] [-n N])")
	}
	name := c.args.pos[0]
	q := url.Values{}
	if n := c.args.get("n"); n != "" {
		q.Set("n", n)
	} else {
		q.Set("n", "10")
	}
	if c.args.has("f") || c.args.has("follow") {
		q.Set("follow", "1")
	}
	resp, err := c.do("GET", "/v1/units/"+url.PathEscape(name)+"/logs", q, nil)
	if err != nil {
		if codeFor(err) == exitNoUnit {
			return fail(exitNoUnit, "unit %q not found (see: opsvc status)", name)
		}
		return asExit("logs "+name, err)
	}
	return printStream(c, resp, logLine)
}

// printStream copies an NDJSON response to stdout as it arrives: raw with
// --json, else each line decoded into a T and formatted by human.
func printStream[T any](c *cli, resp *http.Response, human func(T) string) error {
	defer resp.Body.Close()
	asJSON := c.args.has("json")
	return ignoreCancel(c, streamLines(resp.Body, func(b []byte) error {
		if asJSON {
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.stdout, human(v))
		return err
	}))
}

func ignoreCancel(c *cli, err error) error {
	if err != nil && c.ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *cli) events() error {
	q := url.Values{}
	if s := c.args.get("since"); s != "" {
		q.Set("since", s)
	}
	if u := c.args.get("unit"); u != "" {
		q.Set("unit", u)
	}
	if t := c.args.get("type"); t != "" {
		q.Set("type", t)
	}
	follow := c.args.has("f") || c.args.has("follow")
	if follow {
		q.Set("follow", "1")
	} else {
		q.Set("follow", "0")
	}
	resp, err := c.do("GET", "/v1/events", q, nil)
	if err != nil {
		return asExit("events", err)
	}
	return printStream(c, resp, eventLine)
}

func eventLine(e bus.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6d %s %-18s", e.Seq, e.Time.Local().Format("15:04:05.000"), e.Type)
	if e.Unit != "" {
		b.WriteString(" " + e.Unit)
	}
	if e.PID != 0 {
		fmt.Fprintf(&b, " pid=%d", e.PID)
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := e.Data[k]
		switch x := v.(type) {
		case string:
			if x == "" {
				continue
			}
			if strings.ContainsAny(x, " \"") {
				fmt.Fprintf(&b, " %s=%q", k, x)
			} else {
				fmt.Fprintf(&b, " %s=%s", k, x)
			}
		case nil:
		default:
			j, _ := json.Marshal(x)
			if string(j) == "null" || string(j) == "[]" {
				continue
			}
			fmt.Fprintf(&b, " %s=%s", k, j)
		}
	}
	return b.String()
}

func (c *cli) validate() error {
	path := c.paths.Units
	if len(c.args.pos) > 1 {
		return fail(exitUsage, "validate: at most one PATH (a unit file or a units directory)")
	}
	if len(c.args.pos) == 1 {
		path = c.args.pos[0]
	}
	if _, err := os.Stat(path); err != nil {
		return fail(exitFailure, "validate %s: %v", path, err)
	}
	probs := unit.Validate(path)
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
	if len(probs) > 0 {
		return fail(exitFailure, "validate %s: %d problem(s)", path, len(probs))
	}
	return nil
}

func (c *cli) cat() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "cat: name one unit")
	}
	name := c.args.pos[0]
	var out struct {
		Name       string            `json:"name"`
		Definition []unit.Annotation `json:"definition"`
	}
	if err := c.call("GET", "/v1/units/"+url.PathEscape(name)+"/definition", nil, nil, &out); err != nil {
		if codeFor(err) == exitNoUnit {
			return fail(exitNoUnit, "unit %q not found (see: opsvc status)", name)
		}
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

func printDefinition(w io.Writer, name string, defs []unit.Annotation) {
	fmt.Fprintf(w, "# %s\n", name)
	width := 0
	for _, d := range defs {
		if n := len(d.Key) + 3 + len(d.Value); n > width && n < 60 {
			width = n
		}
	}
	table := ""
	for _, d := range defs {
		if d.Table != table {
			if table != "" {
				fmt.Fprintln(w)
			}
			table = d.Table
			fmt.Fprintf(w, "[%s]\n", table)
		}
		kv := d.Key + " = " + d.Value
		fmt.Fprintf(w, "%-*s  # %s\n", width, kv, d.Source)
	}
}

func (c *cli) send() error {
	if len(c.args.pos) < 2 || len(c.args.pos) > 3 {
		return fail(exitUsage, "send: opsvc send UNIT NAME [JSON]")
	}
	name := c.args.pos[0]
	body := map[string]any{"name": c.args.pos[1]}
	if len(c.args.pos) == 3 {
		if !json.Valid([]byte(c.args.pos[2])) {
			return fail(exitUsage, "send: %q is not JSON (quote strings: '\"text\"')", c.args.pos[2])
		}
		body["args"] = json.RawMessage(c.args.pos[2])
	}
	var out struct {
		Data json.RawMessage `json:"data"`
	}
	if err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/command", nil, body, &out); err != nil {
		if codeFor(err) == exitNoUnit {
			return fail(exitNoUnit, "unit %q not found (see: opsvc status)", name)
		}
		return asExit("send "+name, err)
	}
	var buf bytes.Buffer
	if json.Indent(&buf, out.Data, "", "  ") != nil {
		buf.Reset()
		buf.Write(out.Data)
	}
	fmt.Fprintf(c.stdout, "%s\n", buf.Bytes())
	return nil
}

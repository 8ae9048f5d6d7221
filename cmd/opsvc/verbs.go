package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/logs"
)

func (c *cli) version() error {
	fmt.Fprintf(c.stdout, "opsvc %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func (c *cli) status() error {
	var units []unitStatus
	var degraded string
	missing := 0
	if len(c.args.pos) == 0 {
		var err error
		if units, degraded, err = c.unitList("status"); err != nil {
			return err
		}
		if degraded != "" && !c.args.has("json") {
			// A daemon that cannot write to disk keeps running; say so first.
			fmt.Fprintf(c.stdout, "opsvc daemon is %s (free space or fix the file system; it recovers by itself)\n\n", degraded)
		}
	} else {
		names, err := c.expand("status", c.args.pos)
		if err != nil {
			return err
		}
		for _, name := range names {
			us, err := c.oneUnit("status", name)
			if err != nil {
				if codeFor(err) == exitNoUnit {
					report(err, c.stderr)
					missing++
					continue
				}
				return err
			}
			units = append(units, us)
		}
	}
	if c.args.has("json") {
		if err := writeUnitsJSON(c.stdout, units, degraded, true); err != nil {
			return fail(exitFailure, "status: cannot write the units as JSON: %v (is stdout closed?)", err)
		}
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

func (c *cli) printStatus(us unitStatus, now time.Time, withLogs bool) {
	w := c.stdout
	col := c.colors()
	head := col.state(us.State, "●") + " " + us.Name
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
	fmt.Fprintf(w, "     Active: %s\n", col.state(us.State, active))
	if us.Enabled == nil && (withLogs || us.PID == 0) {
		if en, err := c.enabled(us); err == nil {
			us.Enabled = &en
		}
	}
	if us.Enabled != nil {
		en := "disabled"
		if *us.Enabled {
			en = "enabled"
		}
		fmt.Fprintf(w, "    Enabled: %s\n", en)
	}
	if us.PID > 0 {
		fmt.Fprintf(w, "   Main PID: %d\n", us.PID)
	} else if us.Exit != nil {
		fmt.Fprintf(w, "   Main PID: (%s)\n", exitText(*us.Exit))
	}
	if us.Placement == "fleet" {
		host := us.Host
		if host == "" {
			host = "none yet"
		}
		fmt.Fprintf(w, "       Host: %s (placement = fleet)\n", host)
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
	if why := whyNotRunning(us, us.Enabled == nil || *us.Enabled); why != "" && us.Blocked == "" {
		fmt.Fprintf(w, "        Why: %s\n", why)
	}
	if us.Error != "" {
		for i, l := range strings.Split(us.Error, "\n") {
			label := col.red("      Error:")
			if i > 0 {
				label = "            "
			}
			fmt.Fprintf(w, "%s %s\n", label, l)
		}
	}
	if withLogs && !c.args.has("json") {
		var lines []logs.Line
		if resp, err := c.do("GET", "/v1/logs", url.Values{"unit": {us.Name}, "n": {"10"}}, nil); err == nil {
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
				fmt.Fprintln(w, logLine(l, col))
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

// logLine is a line of output as `opsvc logs` shows it by default: control
// characters escaped, the unit coloured by name when colour is on.
func logLine(l logs.Line, col palette) string {
	text := escapeControl(strings.TrimRight(l.Text, "\n"))
	tag := col.unit(l.Unit)
	if l.PID > 0 {
		tag += "[" + strconv.Itoa(l.PID) + "]"
	}
	if l.Stream == "stderr" {
		tag += col.red(" (stderr)")
	}
	return fmt.Sprintf("%s %s: %s", l.Time.Local().Format("Jan 02 15:04:05"), tag, text)
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

func (c *cli) send() error {
	if len(c.args.pos) < 2 || len(c.args.pos) > 3 {
		return fail(exitUsage, "send: opsvc send UNIT NAME [JSON]")
	}
	name := c.args.pos[0]
	if err := checkName("send", name); err != nil {
		return err
	}
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
			return noUnit("send", name)
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

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/logs"
)

// parseWhen reads a time for --since/--until: a duration back from now
// (10m, 2h, 1d), a date and time ("2026-12-01 10:00", local), a date, or
// RFC 3339.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	switch s {
	case "now":
		return now, nil
	case "today":
		y, m, d := now.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, now.Location()), nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("not a time: %q", s)
}

// logsQuery turns the logs flags into the query of GET /v1/logs.
func (c *cli) logsQuery(names []string) (url.Values, error) {
	q := url.Values{"unit": names}
	n := "10"
	if c.args.has("lines") {
		n = c.args.get("lines")
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			return nil, fail(exitUsage, "logs: bad -n %q: give a number of lines, 0 or more", n)
		}
	}
	q.Set("n", n)
	now := time.Now()
	for _, k := range []string{"since", "until"} {
		if !c.args.has(k) {
			continue
		}
		t, err := parseWhen(c.args.get(k), now)
		if err != nil {
			return nil, fail(exitUsage, "logs: bad --%s: %v (use 10m, 2h, 1d, \"2026-12-01 10:00\" or a date)", k, err)
		}
		q.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
	if c.args.has("priority") {
		switch p := strings.ToLower(c.args.get("priority")); p {
		case "emerg", "alert", "crit", "err", "error", "0", "1", "2", "3", "stderr":
			q.Set("stream", "stderr")
		case "warning", "notice", "info", "debug", "4", "5", "6", "7":
		default:
			return nil, fail(exitUsage, "logs: bad -p %q: use err for the standard error stream only", p)
		}
	}
	if g := c.args.get("grep"); c.args.has("grep") {
		if _, err := regexp.Compile(g); err != nil {
			return nil, fail(exitUsage, "logs: bad --grep: %v (a Go regular expression)", err)
		}
		q.Set("grep", g)
	}
	if c.args.has("follow") {
		q.Set("follow", "1")
	}
	return q, nil
}

// logs is `opsvc logs UNIT... [-f] [-n N] [--since T] [--until T] [-p err]
// [--grep RE] [-o short|cat|json]`.
func (c *cli) logs() error {
	if len(c.args.pos) == 0 {
		return fail(exitUsage, "logs: name at least one unit (opsvc logs web -f)")
	}
	format := "short"
	if c.args.has("json") {
		format = "json"
	}
	if c.args.has("output") {
		format = c.args.get("output")
	}
	switch format {
	case "short", "cat", "json":
	default:
		return fail(exitUsage, "logs: bad -o %q: use short, cat or json", format)
	}
	names, err := c.expand("logs", c.args.pos)
	if err != nil {
		return err
	}
	q, err := c.logsQuery(names)
	if err != nil {
		return err
	}
	resp, err := c.do("GET", "/v1/logs", q, nil)
	if err != nil {
		if codeFor(err) == exitNoUnit {
			return fail(exitNoUnit, "logs: %v (opsvc list shows the units)", err)
		}
		return asExit("logs", err)
	}
	col := c.colors()
	escape := isTerminal(c.stdout)
	return c.printStream(resp, func(b []byte) error {
		if format == "json" {
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		var l logs.Line
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		if format == "cat" {
			text := strings.TrimRight(l.Text, "\n")
			if escape {
				text = escapeControl(text)
			}
			_, err := fmt.Fprintln(c.stdout, text)
			return err
		}
		_, err := fmt.Fprintln(c.stdout, logLine(l, col))
		return err
	})
}

// printStream hands each line of an NDJSON response to f as it arrives.
func (c *cli) printStream(resp *http.Response, f func([]byte) error) error {
	defer resp.Body.Close()
	return ignoreCancel(c, streamLines(resp.Body, f))
}

func ignoreCancel(c *cli, err error) error {
	if err != nil && c.ctx.Err() != nil {
		return nil
	}
	return err
}

// events is `opsvc events [-f] [-n N] [--since SEQ] [--unit U] [--type T]`.
// -f alone follows from now; with -n or --since it prints those first.
func (c *cli) events() error {
	if c.args.has("fleet") {
		return c.fleetEvents()
	}
	q := url.Values{}
	if u := c.args.get("unit"); u != "" {
		if err := checkName("events --unit", u); err != nil {
			return err
		}
		q.Set("unit", u)
	}
	if t := c.args.get("type"); t != "" {
		q.Set("type", t)
	}
	if c.args.has("since") {
		s := c.args.get("since")
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			return fail(exitUsage, "events: bad --since %q: give an event seq, 0 or more (opsvc events shows them)", s)
		}
		q.Set("since", s)
	}
	last := -1
	if c.args.has("lines") {
		n, err := strconv.Atoi(c.args.get("lines"))
		if err != nil || n < 0 {
			return fail(exitUsage, "events: bad -n %q: give a number of events, 0 or more", c.args.get("lines"))
		}
		last = n
	}
	follow := c.args.has("follow")
	asJSON := c.args.has("json")
	print := func(b []byte) error {
		if asJSON {
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		var e bus.Event
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.stdout, escapeControl(eventLine(e)))
		return err
	}
	if follow && last < 0 && !c.args.has("since") {
		// From now: the newest seq, then what comes after it.
		var now api.LastSeqResult
		if err := c.call("GET", "/v1/events/last", nil, nil, &now); err != nil {
			return asExit("events", err)
		}
		q.Set("since", strconv.FormatUint(now.Seq, 10))
	}
	if last >= 0 {
		// Read what is stored (the log is size-capped), keep the last N,
		// then go on from the last seq seen.
		q.Set("follow", "0")
		resp, err := c.do("GET", "/v1/events", q, nil)
		if err != nil {
			return asExit("events", err)
		}
		var ring [][]byte
		var seq uint64
		err = c.printStream(resp, func(b []byte) error {
			var e struct {
				Seq uint64 `json:"seq"`
			}
			if json.Unmarshal(b, &e) == nil && e.Seq > seq {
				seq = e.Seq
			}
			if last > 0 {
				ring = append(ring, append([]byte(nil), b...))
				if len(ring) > last {
					ring = ring[1:]
				}
			}
			return nil
		})
		if err != nil {
			return asExit("events", err)
		}
		for _, b := range ring {
			if err := print(b); err != nil {
				return err
			}
		}
		if !follow || c.ctx.Err() != nil {
			return nil
		}
		q.Set("since", strconv.FormatUint(seq, 10))
	}
	if follow {
		q.Set("follow", "1")
	} else {
		q.Set("follow", "0")
	}
	resp, err := c.do("GET", "/v1/events", q, nil)
	if err != nil {
		return asExit("events", err)
	}
	return c.printStream(resp, print)
}

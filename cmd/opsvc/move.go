package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/opsvc/opsvc/cluster/fleetevents"
)

// move is `opsvc move UNIT HOST [--timeout D]`: the fleet unit stops where
// it runs and starts on HOST; exit 0 once it is active there.
func (c *cli) move() error {
	if len(c.args.pos) != 2 {
		return fail(exitUsage, "move: name a fleet unit and a host (opsvc move web web-2)")
	}
	name, host := c.args.pos[0], c.args.pos[1]
	if err := checkName("move", name); err != nil {
		return err
	}
	q := url.Values{"to": {host}}
	if c.args.has("timeout") {
		d, err := time.ParseDuration(c.args.get("timeout"))
		if err != nil || d <= 0 {
			return fail(exitUsage, "move: bad --timeout %q: give a duration such as 30s", c.args.get("timeout"))
		}
		q.Set("timeout", d.String())
	}
	var us unitStatus
	if err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/move", q, nil, &us); err != nil {
		if codeFor(err) == exitNoUnit {
			return noUnit("move", name)
		}
		return asExit("move "+name, err)
	}
	if c.args.has("json") {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(us)
	}
	fmt.Fprintf(c.stdout, "%s: active on %s\n", name, host)
	return nil
}

// fleetEvents is `opsvc events --fleet [-n N]`: every host's unit state
// changes, live, each line with its host.
func (c *cli) fleetEvents() error {
	if c.args.has("since") || c.args.has("unit") || c.args.has("type") {
		return fail(exitUsage, "events --fleet: takes -n only (the fleet's events have no common seq)")
	}
	q := url.Values{"fleet": {"1"}}
	if c.args.has("lines") {
		n, err := strconv.Atoi(c.args.get("lines"))
		if err != nil || n < 0 {
			return fail(exitUsage, "events: bad -n %q: give a number of events, 0 or more", c.args.get("lines"))
		}
		q.Set("n", strconv.Itoa(n))
	}
	resp, err := c.do("GET", "/v1/events", q, nil)
	if err != nil {
		return asExit("events --fleet", err)
	}
	asJSON := c.args.has("json")
	return c.printStream(resp, func(b []byte) error {
		if asJSON {
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		var e fleetevents.Event
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.stdout, "%-12s %s\n", escapeControl(e.Node), escapeControl(eventLine(e.Event)))
		return err
	})
}

package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/cluster/fleetevents"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/unit"
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

// warnFleetWithoutCluster warns, on stderr, of fleet units that the daemon
// of these settings would not start: it has no [cluster]. A warning only: the
// units directory may be shared with daemons that have one.
func (c *cli) warnFleetWithoutCluster(path string) {
	if c.paths.Config == "" {
		return
	}
	st, err := config.LoadSettings(c.paths.Config) // a missing file: the defaults, no [cluster]
	if err != nil || st.Cluster.Enabled() {
		return
	}
	dir, only := path, ""
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		dir, only = filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), ".toml")
	}
	set, err := unit.Load(dir)
	if err != nil {
		return
	}
	names := make([]string, 0, len(set.Units))
	for name, u := range set.Units {
		if u.Placement == unit.PlacementFleet && (only == "" || name == only) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(c.stderr, "opsvc: validate: warning: %s: placement = \"fleet\" needs [cluster] etcd in %s; a daemon without it does not start the unit\n", name, c.paths.Config)
	}
}

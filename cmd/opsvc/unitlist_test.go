package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
)

func listFixture() []unitStatus {
	since := time.Date(2026, 12, 3, 8, 1, 32, 577859332, time.UTC)
	yes := true
	return []unitStatus{
		{UnitStatus: api.UnitStatus{Name: "web", Description: "<b>&web</b>", Type: "simple", State: supervisor.Active, Sub: "running",
			PID: 42, Since: since, Restarts: 3, Exit: &api.ExitStatus{Code: 137, Signal: "SIGKILL"}, Result: "signal",
			StatusText: "ok\n\"quoted\"", Error: "a\nb", LastError: "x", Blocked: "after db", Wanted: true,
			Sources: []string{"/u/web.toml", "/u/web.d/a.toml"}, Placement: "fleet", Host: "h1"}},
		{UnitStatus: api.UnitStatus{Name: "db", State: supervisor.Inactive, Sub: "dead", Sources: []string{}}},
		{UnitStatus: api.UnitStatus{Name: "cron", State: supervisor.Failed, Sub: "failed", Since: since.Add(-50 * time.Hour),
			Description: "żółw \xff", Sources: nil}, Enabled: &yes},
		{UnitStatus: api.UnitStatus{Name: "q", State: supervisor.Activating, Sub: "start", Since: since}, StoppedByHand: true},
	}
}

// TestUnitsJSONAsEncodingJSON: status --json and list --json write what
// encoding/json writes for the map they wrote before, byte for byte.
func TestUnitsJSONAsEncodingJSON(t *testing.T) {
	all := listFixture()
	var many []unitStatus // more than a buffer's worth
	for range 500 {
		many = append(many, all...)
	}
	for _, tc := range []struct {
		name     string
		units    []unitStatus
		degraded string
	}{
		{"none", nil, ""}, {"empty", []unitStatus{}, ""}, {"none degraded", nil, "logs: <disk full>"},
		{"one", all[:1], ""}, {"plain", all[:2], "event log"}, {"all", all, ""}, {"all degraded", all, "registry"},
		{"many", many, ""},
	} {
		units := tc.units
		if units == nil {
			units = []unitStatus{}
		}
		var pretty bytes.Buffer
		enc := json.NewEncoder(&pretty)
		enc.SetIndent("", "  ")
		doc := map[string]any{"units": units}
		if tc.degraded != "" {
			doc["degraded"] = tc.degraded
		}
		enc.Encode(doc)
		var got bytes.Buffer
		err := writeUnitsJSON(&got, tc.units, tc.degraded, true)
		if err != nil || got.String() != pretty.String() {
			t.Errorf("%s: status --json wrote (%v)\n%s\nencoding/json writes\n%s", tc.name, err, got.String(), pretty.String())
		}
		if tc.degraded != "" {
			continue // list --json leaves it out
		}
		var compact bytes.Buffer
		json.NewEncoder(&compact).Encode(map[string]any{"units": units})
		got.Reset()
		err = writeUnitsJSON(&got, tc.units, "", false)
		if err != nil || got.String() != compact.String() {
			t.Errorf("%s: list --json wrote (%v)\n%s\nencoding/json writes\n%s", tc.name, err, got.String(), compact.String())
		}
	}
}

// tableBefore is list's table as it was written with fmt and a
// strings.Builder per line: the reference listTable must match.
func tableBefore(col palette, units []unitStatus, now time.Time) string {
	shortDur := func(d time.Duration) string {
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	rows := [][]string{{"UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "DESCRIPTION"}}
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
		rows = append(rows, []string{u.Name, stateWord(u), pid, up, strconv.Itoa(u.Restarts), desc})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, f := range r {
			width[i] = max(width[i], len(f))
		}
	}
	var out strings.Builder
	for ri, r := range rows {
		var b strings.Builder
		for i, f := range r {
			cell := f
			if ri > 0 && i == 1 {
				cell = col.state(units[ri-1].State, f)
			}
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len(f)+2))
			}
		}
		fmt.Fprintln(&out, strings.TrimRight(b.String(), " "))
	}
	return out.String()
}

// TestListTableAsBefore: the table is what list wrote before, with and
// without colour, with uptimes of every form (seconds to days, and a start
// in the future) and descriptions ending in spaces.
func TestListTableAsBefore(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	units := listFixture()
	for i, ago := range []time.Duration{-3 * time.Second, 0, 59 * time.Second, 90 * time.Second, time.Hour, 61*time.Minute + 5*time.Second,
		47*time.Hour + 59*time.Minute, 48 * time.Hour, 400 * time.Hour} {
		units = append(units, unitStatus{UnitStatus: api.UnitStatus{Name: fmt.Sprintf("u%d", i), State: supervisor.Active, Sub: "running",
			PID: 100 + i, Since: now.Add(-ago), Description: "trailing  "}})
	}
	for _, color := range []string{"never", "always"} {
		c := &cli{args: args{flags: map[string]string{"color": color}}, env: env{getenv: func(string) string { return "" }}}
		for _, us := range [][]unitStatus{nil, units[:1], units} {
			got := string(c.listTable(us, now))
			if want := tableBefore(c.colors(), us, now); got != want {
				t.Errorf("color %s, %d units: table\n%s\nwas\n%s", color, len(us), got, want)
			}
		}
	}
}

package bus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stored returns every stored event.
func stored(t *testing.T, b *Bus) []Event {
	t.Helper()
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, s)
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)} }

// TestEventDataBounded: an event with thousands of errors, a huge text or many keys is stored
// within MaxEventBytes, marked truncated, its lists cut at MaxListItems with "and N more".
func TestEventDataBounded(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir, Options{})
	var errs []string
	for i := range 5000 {
		errs = append(errs, fmt.Sprintf("units/bad.toml:%d:1: unknown key \"k%d\" (remove it)", i+1, i))
	}
	b.Publish(Event{Type: "config.invalid", Data: map[string]any{"error": strings.Join(errs, "\n")}})
	b.Publish(Event{Type: "config.invalid", Data: map[string]any{"errors": errs}})
	many := map[string]any{}
	for i := range 20000 {
		many[fmt.Sprintf("key%05d", i)] = strings.Repeat("v", 20)
	}
	b.Publish(Event{Type: "worker.blob", Unit: "w", Data: many})
	b.Publish(Event{Type: "unit.status", Unit: "w", Data: map[string]any{"text": "small"}})

	raw, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if len(line) > MaxEventBytes {
			t.Errorf("stored event %d is %d bytes, more than %d", i+1, len(line), MaxEventBytes)
		}
	}
	got := stored(t, b)
	if len(got) != 4 {
		t.Fatalf("%d events stored, want 4", len(got))
	}
	text := got[0].Data["error"].(string)
	lines := strings.Split(text, "\n")
	if len(lines) != MaxListItems+1 || lines[MaxListItems] != fmt.Sprintf("… and %d more", 5000-MaxListItems) || got[0].Data["truncated"] == nil {
		t.Errorf("error text kept %d lines ending %q, truncated %v", len(lines), lines[len(lines)-1], got[0].Data["truncated"])
	}
	list := got[1].Data["errors"].([]any)
	if len(list) != MaxListItems+1 || list[MaxListItems] != fmt.Sprintf("… and %d more", 5000-MaxListItems) {
		t.Errorf("error list kept %d items ending %v", len(list), list[len(list)-1])
	}
	if got[2].Data["truncated"] == nil || len(got[2].Data) >= len(many) {
		t.Errorf("the event with %d keys kept %d, truncated %v", len(many), len(got[2].Data), got[2].Data["truncated"])
	}
	if got[3].Data["truncated"] != nil || got[3].Data["text"] != "small" {
		t.Errorf("a small event was changed: %v", got[3].Data)
	}
	// Every stored event can be read back by a line reader with the CLI's cap.
	for _, e := range got {
		b, _ := json.Marshal(e)
		if len(b) > MaxEventBytes {
			t.Errorf("event %d is %d bytes", e.Seq, len(b))
		}
	}
}

// TestSourceRateLimit: a source that floods is kept to its rate; another source's events are
// all stored; what was kept out is counted in one bus.suppressed per interval.
func TestSourceRateLimit(t *testing.T) {
	clk := newClock()
	b := openT(t, t.TempDir(), Options{Now: clk.Now, SourceRate: 10, SourceBurst: 50, Interval: time.Second})
	published := 0
	for i := range 10000 {
		if i%100 == 0 {
			clk.Add(100 * time.Millisecond) // 10 s in all
			b.Publish(Event{Type: "unit.status", Unit: "quiet", Data: map[string]any{"i": i}})
		}
		if e := b.Publish(Event{Type: "worker.spam", Unit: "loud", Data: map[string]any{"i": i}}); e.Seq != 0 {
			published++
		}
	}
	clk.Add(2 * time.Second)
	b.Publish(Event{Type: "unit.status", Unit: "quiet", Data: map[string]any{"i": "last"}})
	if max := 50 + 10*12; published > max {
		t.Fatalf("the loud source got %d events stored, want at most %d", published, max)
	}
	var quiet, loud int
	var suppressed float64
	for _, e := range stored(t, b) {
		switch {
		case e.Unit == "quiet":
			quiet++
		case e.Unit == "loud":
			loud++
		case e.Type == TypeSuppressed:
			if e.Data["source"] != "loud (worker)" {
				t.Fatalf("suppressed %v", e.Data)
			}
			suppressed += e.Data["count"].(float64)
		}
	}
	if quiet != 101 {
		t.Fatalf("%d of the quiet source's 101 events stored", quiet)
	}
	if loud != published || int(suppressed) != 10000-published {
		t.Fatalf("loud: %d stored (%d published), %v suppressed, want the rest of 10000", loud, published, suppressed)
	}
}

// TestCoalesceRefusals: a flood of one refusal yields the first at once, then one event per
// interval with the count of repeats.
func TestCoalesceRefusals(t *testing.T) {
	clk := newClock()
	b := openT(t, t.TempDir(), Options{Now: clk.Now, Interval: time.Second})
	for i := range 1000 {
		b.Publish(Event{Type: "unit.notify_refused", Unit: "web", PID: 1000 + i, Data: map[string]any{"reason": "not the main process"}})
	}
	b.Publish(Event{Type: "unit.notify_refused", Unit: "db", PID: 7})
	clk.Add(time.Second)
	b.Publish(Event{Type: "unit.ready", Unit: "web"})
	clk.Add(time.Second)
	b.Publish(Event{Type: "unit.notify_refused", Unit: "web", PID: 5})
	got := stored(t, b)
	var types []string
	for _, e := range got {
		types = append(types, e.Type+"/"+e.Unit)
	}
	want := "[unit.notify_refused/web unit.notify_refused/db unit.notify_refused/web unit.ready/web unit.notify_refused/web]"
	if fmt.Sprint(types) != want {
		t.Fatalf("stored %v, want %s", types, want)
	}
	if r := got[2].Data["repeated"]; r != float64(999) || got[2].PID != 1999 {
		t.Fatalf("coalesced event %+v, want the last one with repeated 999", got[2])
	}
	if got[4].Data["repeated"] != nil {
		t.Fatalf("after a quiet interval a refusal is published at once, got %+v", got[4])
	}
}

// TestReportFault: a component's failure is published once as daemon.degraded, listed by
// Faults, and its recovery as daemon.recovered.
func TestReportFault(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	for range 3 {
		b.ReportFault("registry", fmt.Errorf("write registry.json: no space left on device"))
	}
	if f := b.Faults(); len(f) != 1 || f[0].Component != "registry" || !strings.Contains(f[0].Error, "no space") {
		t.Fatalf("faults %+v", f)
	}
	b.ReportFault("logs", fmt.Errorf("write web.log: no space left on device"))
	if got, want := b.FaultText(), "degraded: logs: write web.log: no space left on device; registry: write registry.json: no space left on device"; got != want {
		t.Fatalf("FaultText = %q, want %q", got, want)
	}
	b.ReportFault("logs", nil)
	b.ReportFault("registry", nil)
	b.ReportFault("registry", nil)
	if f := b.Faults(); len(f) != 0 || b.FaultText() != "" {
		t.Fatalf("faults after recovery %+v", f)
	}
	var types []string
	for _, e := range stored(t, b) {
		types = append(types, e.Type+"/"+e.Data["component"].(string))
	}
	if want := "[daemon.degraded/registry daemon.degraded/logs daemon.recovered/logs daemon.recovered/registry]"; fmt.Sprint(types) != want {
		t.Fatalf("stored %v, want %s", types, want)
	}
}

// TestSourceOf: a worker's own events, API callers and the daemon's events about a unit are
// limited apart.
func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Type: "unit.started", Unit: "web"}, "web"},
		{Event{Type: "worker.progress", Unit: "web"}, "web (worker)"},
		{Event{Type: "unit.status", Unit: "web"}, "web (worker)"},
		{Event{Type: "api.restart", Unit: "web", Data: map[string]any{"uid": 1000}}, "api uid 1000"},
		{Event{Type: "api.denied", Data: map[string]any{"uid": 1000}}, "api uid 1000"},
		{Event{Type: "config.invalid"}, "config.invalid"},
		{Event{Type: "unit.started", Unit: "web", Source: "x"}, "x"},
	} {
		if got := sourceOf(tc.e); got != tc.want {
			t.Errorf("sourceOf(%s %s) = %q, want %q", tc.e.Type, tc.e.Unit, got, tc.want)
		}
	}
}

// TestTickSleepsAndWakes: once nothing is left to sum up the ticker sleeps; a source that
// floods afterwards still gets its bus.suppressed at the end of the interval, with no
// event after the flood to carry it.
func TestTickSleepsAndWakes(t *testing.T) {
	b := openT(t, t.TempDir(), Options{SourceRate: 100, SourceBurst: 2, Interval: 20 * time.Millisecond})
	suppressed := func() int {
		n := 0
		for _, e := range stored(t, b) {
			if e.Type == TypeSuppressed {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	idle := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.limiter.idle()
	}
	for round := 1; round <= 2; round++ {
		for i := range 5 {
			b.Publish(Event{Type: "worker.spam", Unit: "loud", Data: map[string]any{"i": i}})
		}
		waitFor("bus.suppressed", func() bool { return suppressed() == round })
		waitFor("idle limiter", idle) // the full bucket is forgotten: the ticker sleeps
	}
}

package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// everyData holds one value of every EventData type, with each field set.
func everyData() []EventData {
	c := Caller{UID: 1000, PID: 42}
	end := ChainEnd{ChainID: "c1", Status: "complete", Reason: "done"}
	return []EventData{
		UnitStarting{Reason: "start"}, UnitStarted{}, UnitReady{Result: "success"},
		UnitStopping{Reason: "stop"}, UnitStopped{Code: 143, Signal: "SIGTERM", Reason: "stop"},
		UnitExited{Code: 1}, UnitRestarting{DelayMS: 100, Result: "exit-code"},
		UnitFailed{Result: "exit-code", Code: 1}, UnitKilled{Reason: "stop timeout"},
		UnitWatchdog{Reason: "no heartbeat"}, UnitError{Error: "start: no such file"},
		UnitStatusText{Text: "serving"}, UnitIPCError{Error: "not JSON", Coalesced: Coalesced{Repeated: 3, Interval: "10s"}}, UnitIPCClosed{},
		UnitNotifyRefused{Reason: "not the main process", Coalesced: Coalesced{Repeated: 2, Interval: "10s"}},
		ConfigLoaded{Reason: "start", Changed: []string{"a"}, Added: []string{"b"}, Removed: []string{"c"}, Invalid: 1},
		ConfigInvalid{Problems: []string{"web.toml:1:1: bad"}}, ConfigSettings{c},
		DaemonReady{Units: 3}, DaemonStopping{},
		APIDenied{UID: 1000, PID: 42, Path: "/v1/units", Status: 403, Reason: "uid not allowed", Repeated: 4, Interval: "10s"},
		APIStart{c}, APIStop{c}, APIRestart{c}, APICommand{Command: "ping", Caller: c},
		ChainCreated{ChainID: "c1", Task: "t"}, ChainResumed{ChainID: "c2", RestartedFrom: "c1"},
		ChainCompleted{end}, ChainFailed{end}, ChainInterrupted{end},
		SessionStarted{ChainID: "c1", Index: 2},
		SessionFinished{ChainID: "c1", Index: 2, Status: "complete", Turns: 3, CostUSD: 0.5},
		SessionLease{LeaseID: "l1", ChainID: "c1"},
		BusLagged{DroppedAfter: 9},
		BusSuppressed{Source: "web", Count: 12, Interval: "10s", Hint: "h"},
		DaemonDegraded{Component: "events", Error: "no space left on device", Hint: "h"},
		DaemonRecovered{Component: "events", Since: "2026-12-02T13:00:00Z"},
		WorkerEvent{Name: "progress", Data: map[string]any{"n": 1.0}},
	}
}

func TestEventDataRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range everyData() {
		typ := d.EventType()
		if seen[typ] {
			t.Errorf("%T: type %s used twice", d, typ)
		}
		seen[typ] = true
		got := ForType(typ)
		if got == nil {
			t.Errorf("ForType(%q) = nil, want *%T", typ, d)
			continue
		}
		if err := Decode(Map(d), got); err != nil {
			t.Errorf("Decode(%T): %v", d, err)
			continue
		}
		if v := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(v, d) {
			t.Errorf("%s: round trip gave %#v, want %#v", typ, v, d)
		}
	}
}

func TestMapOfEmptyDataIsNil(t *testing.T) {
	for _, d := range []EventData{UnitStarted{}, UnitIPCClosed{}, DaemonStopping{}} {
		if m := Map(d); m != nil {
			t.Errorf("Map(%T) = %v, want nil", d, m)
		}
	}
}

func TestWorkerEventType(t *testing.T) {
	if got := (WorkerEvent{}).EventType(); got != TypeWorkerEvent {
		t.Errorf("nameless worker event type = %q, want %q", got, TypeWorkerEvent)
	}
	if got := (WorkerEvent{Name: "tick"}).EventType(); got != "worker.tick" {
		t.Errorf("worker event type = %q, want worker.tick", got)
	}
	if ForType("worker.") != nil || ForType("nope") != nil {
		t.Error("ForType knows a type that does not exist")
	}
}

func TestErrorShape(t *testing.T) {
	b, err := json.Marshal(&Error{Message: "unit \"x\" not found"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if _, ok := m["error"]; !ok {
		t.Errorf("error body %s has no error field", b)
	}
	if _, ok := m["hint"]; !ok {
		t.Errorf("error body %s has no hint field", b)
	}
	if _, ok := m["unit"]; ok {
		t.Errorf("error body %s has a unit field without a unit", b)
	}
	e := &Error{Message: "m", Hint: "h"}
	if e.Error() != "m (h)" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestRoutesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Routes() {
		k := r.Method + " " + r.Path
		if seen[k] || !strings.HasPrefix(r.Path, "/v1/") {
			t.Errorf("route %s: duplicate or not under /v1/", k)
		}
		seen[k] = true
	}
}

func TestCLIEventDataRoundTrip(t *testing.T) {
	c := Caller{UID: 1000, PID: 42}
	for _, d := range []EventData{APIKill{Signal: "SIGHUP", Main: true, Caller: c}, APIResetFailed{c}, APIEnable{c}, APIDisable{c}, APIMove{To: "web-2", Caller: c}} {
		got := ForType(d.EventType())
		if got == nil {
			t.Fatalf("ForType(%q) = nil", d.EventType())
		}
		if err := Decode(Map(d), got); err != nil {
			t.Fatal(err)
		}
		if v := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(v, d) {
			t.Errorf("%s: round trip gave %#v, want %#v", d.EventType(), v, d)
		}
	}
}

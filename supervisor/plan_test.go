package supervisor

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opsvc/opsvc/unit"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func mkUnit(name, hash string, opts ...func(*unit.Unit)) *unit.Unit {
	u := &unit.Unit{Name: name, Enabled: true, Service: unit.DefaultService(), Hash: hash}
	u.Service.Exec = []string{"/bin/true"}
	for _, o := range opts {
		o(u)
	}
	return u
}

func requires(deps ...string) func(*unit.Unit) {
	return func(u *unit.Unit) { u.Requires = deps }
}

func after(deps ...string) func(*unit.Unit) {
	return func(u *unit.Unit) { u.After = deps }
}

func TestPlan(t *testing.T) {
	running := Lifecycle{State: Active, Sub: "running", PID: 10, Running: true, Hash: "h1"}
	tests := []struct {
		name     string
		desired  map[string]Desired
		observed map[string]Lifecycle
		want     []Action
		wake     time.Time
	}{
		{
			name:    "new wanted unit starts",
			desired: map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			want:    []Action{{Kind: ActStart, Unit: "web", Reason: "wanted"}},
		},
		{
			name:     "running and unchanged: nothing",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": running},
		},
		{
			name:     "changed definition stops first",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h2"), Want: true}},
			observed: map[string]Lifecycle{"web": running},
			want:     []Action{{Kind: ActStop, Unit: "web", Reason: "definition changed", Stop: StopChanged}},
		},
		{
			name:     "stopped after a change starts with the new definition",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h2"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Inactive, Hash: "h1", StopReason: StopChanged}},
			want:     []Action{{Kind: ActStart, Unit: "web", Reason: "definition changed"}},
		},
		{
			name:     "not wanted and running: stop",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1")}},
			observed: map[string]Lifecycle{"web": running},
			want:     []Action{{Kind: ActStop, Unit: "web", Reason: "not wanted", Stop: StopManual}},
		},
		{
			name:     "removed and stopped: forget",
			observed: map[string]Lifecycle{"old": {State: Inactive}},
			want:     []Action{{Kind: ActForget, Unit: "old", Reason: "removed"}},
		},
		{
			name:     "stopping: wait for the exit until the deadline",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1")}},
			observed: map[string]Lifecycle{"web": {State: Deactivating, Running: true, Stopping: true, StopDeadline: t0.Add(time.Second)}},
			wake:     t0.Add(time.Second),
		},
		{
			name:     "stop timeout: kill",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1")}},
			observed: map[string]Lifecycle{"web": {State: Deactivating, Running: true, Stopping: true, StopDeadline: t0}},
			want:     []Action{{Kind: ActKill, Unit: "web", Reason: "stop timeout"}},
		},
		{
			name:     "start timeout: kill",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Activating, Running: true, Hash: "h1", StartDeadline: t0.Add(-time.Millisecond)}},
			want:     []Action{{Kind: ActKill, Unit: "web", Reason: "start timeout"}},
		},
		{
			name:     "watchdog missed",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Active, Running: true, Hash: "h1", WatchdogDeadline: t0}},
			want:     []Action{{Kind: ActWatchdog, Unit: "web", Reason: "watchdog timeout"}},
		},
		{
			name:     "closed channel: wait for the exit",
			desired:  map[string]Desired{"w": {Unit: mkUnit("w", "h1"), Want: true}},
			observed: map[string]Lifecycle{"w": {State: Active, Running: true, Hash: "h1", EOFDeadline: t0.Add(time.Second)}},
			wake:     t0.Add(time.Second),
		},
		{
			name:     "closed channel and still running: kill",
			desired:  map[string]Desired{"w": {Unit: mkUnit("w", "h1"), Want: true}},
			observed: map[string]Lifecycle{"w": {State: Active, Running: true, Hash: "h1", EOFDeadline: t0}},
			want:     []Action{{Kind: ActKill, Unit: "w", Reason: ReasonChannelClosed}},
		},
		{
			name:     "auto-restart not yet due",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Activating, Sub: "auto-restart", RestartAt: t0.Add(200 * time.Millisecond)}},
			wake:     t0.Add(200 * time.Millisecond),
		},
		{
			name:     "auto-restart due",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Activating, Sub: "auto-restart", RestartAt: t0}},
			want:     []Action{{Kind: ActStart, Unit: "web", Reason: "auto-restart"}},
		},
		{
			name:    "start limit hit",
			desired: map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Activating, Sub: "auto-restart", RestartAt: t0,
				Starts: []time.Time{t0.Add(-5 * time.Second), t0.Add(-4 * time.Second), t0.Add(-3 * time.Second), t0.Add(-2 * time.Second), t0.Add(-time.Second)}}},
			want: []Action{{Kind: ActFail, Unit: "web", Reason: "start-limit-hit"}},
		},
		{
			name:    "old starts fall out of the window",
			desired: map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Activating, Sub: "auto-restart", RestartAt: t0,
				Starts: []time.Time{t0.Add(-50 * time.Second), t0.Add(-40 * time.Second), t0.Add(-30 * time.Second), t0.Add(-20 * time.Second), t0.Add(-time.Second)}}},
			want: []Action{{Kind: ActStart, Unit: "web", Reason: "auto-restart"}},
		},
		{
			name:     "failed stays failed",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true}},
			observed: map[string]Lifecycle{"web": {State: Failed, Settled: true}},
		},
		{
			name:     "explicit start clears failed",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true, StartGen: 1}},
			observed: map[string]Lifecycle{"web": {State: Failed, Settled: true, Starts: []time.Time{t0, t0, t0, t0, t0}}},
			want:     []Action{{Kind: ActStart, Unit: "web", Reason: "start requested"}},
		},
		{
			name:     "restart requested",
			desired:  map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: true, RestartGen: 1}},
			observed: map[string]Lifecycle{"web": running},
			want:     []Action{{Kind: ActStop, Unit: "web", Reason: "restart requested", Stop: StopRestart}},
		},
		{
			name: "requires waits for readiness",
			desired: map[string]Desired{
				"db":  {Unit: mkUnit("db", "d"), Want: true},
				"web": {Unit: mkUnit("web", "w", requires("db")), Want: true},
			},
			observed: map[string]Lifecycle{"db": {State: Activating, Running: true, Hash: "d"}},
			want:     []Action{{Kind: ActBlock, Unit: "web", Reason: "waiting for db to be ready"}},
		},
		{
			name: "requires ready: start",
			desired: map[string]Desired{
				"db":  {Unit: mkUnit("db", "d"), Want: true},
				"web": {Unit: mkUnit("web", "w", requires("db")), Want: true},
			},
			observed: map[string]Lifecycle{"db": {State: Active, Running: true, Hash: "d"}, "web": {State: Inactive, Blocked: "waiting for db to be ready"}},
			want:     []Action{{Kind: ActStart, Unit: "web", Reason: "wanted"}},
		},
		{
			name: "failed requirement keeps the dependent inactive",
			desired: map[string]Desired{
				"db":  {Unit: mkUnit("db", "d"), Want: true},
				"web": {Unit: mkUnit("web", "w", requires("db")), Want: true},
			},
			observed: map[string]Lifecycle{"db": {State: Failed, Settled: true}},
			want:     []Action{{Kind: ActBlock, Unit: "web", Reason: "requires db, which failed"}},
		},
		{
			name: "after orders the start",
			desired: map[string]Desired{
				"a": {Unit: mkUnit("a", "a"), Want: true},
				"b": {Unit: mkUnit("b", "b", after("a")), Want: true},
			},
			want: []Action{{Kind: ActStart, Unit: "a", Reason: "wanted"}, {Kind: ActBlock, Unit: "b", Reason: "after a, which is starting"}},
		},
		{
			name: "stopping a requirement stops the dependent first",
			desired: map[string]Desired{
				"db":  {Unit: mkUnit("db", "d")},
				"web": {Unit: mkUnit("web", "w", requires("db")), Want: true},
			},
			observed: map[string]Lifecycle{"db": {State: Active, Running: true, Hash: "d"}, "web": {State: Active, Running: true, Hash: "w"}},
			want: []Action{
				{Kind: ActBlock, Unit: "db", Reason: "stopping after web"},
				{Kind: ActStop, Unit: "web", Reason: "required unit db is stopped", Stop: StopDependency},
			},
		},
		{
			name: "shutdown: reverse dependency order, independent in parallel",
			desired: map[string]Desired{
				"db":    {Unit: mkUnit("db", "d")},
				"web":   {Unit: mkUnit("web", "w", requires("db"))},
				"other": {Unit: mkUnit("other", "o")},
			},
			observed: map[string]Lifecycle{
				"db":    {State: Active, Running: true, Hash: "d"},
				"web":   {State: Active, Running: true, Hash: "w"},
				"other": {State: Active, Running: true, Hash: "o"},
			},
			want: []Action{
				{Kind: ActBlock, Unit: "db", Reason: "stopping after web"},
				{Kind: ActStop, Unit: "other", Reason: "not wanted", Stop: StopManual},
				{Kind: ActStop, Unit: "web", Reason: "not wanted", Stop: StopManual},
			},
		},
		{
			name: "stopping a unit others merely run after does not wait for them",
			desired: map[string]Desired{
				"ticker":   {Unit: mkUnit("ticker", "t")},
				"slowstop": {Unit: mkUnit("slowstop", "s", after("ticker")), Want: true},
			},
			observed: map[string]Lifecycle{"ticker": {State: Active, Running: true, Hash: "t"}, "slowstop": {State: Active, Running: true, Hash: "s"}},
			want:     []Action{{Kind: ActStop, Unit: "ticker", Reason: "not wanted", Stop: StopManual}},
		},
		{
			name:     "oneshot that succeeded stays",
			desired:  map[string]Desired{"job": {Unit: mkUnit("job", "j"), Want: true}},
			observed: map[string]Lifecycle{"job": {State: Active, Sub: "exited", Hash: "j", Settled: true}},
		},
		{
			name:    "unit without a valid definition is not started",
			desired: map[string]Desired{"bad": {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, wake := Plan(tt.desired, tt.observed, t0)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if !wake.Equal(tt.wake) {
				t.Errorf("wake = %v, want %v", wake, tt.wake)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		base, max time.Duration
		n         int
		want      time.Duration
	}{
		{100 * time.Millisecond, 30 * time.Second, 1, 100 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 2, 200 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 4, 800 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 20, 30 * time.Second},
		{100 * time.Millisecond, 30 * time.Second, 1000, 30 * time.Second},
		{0, 30 * time.Second, 5, 0},
		{time.Second, 500 * time.Millisecond, 1, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Backoff(tt.base, tt.max, tt.n); got != tt.want {
			t.Errorf("Backoff(%v, %v, %d) = %v, want %v", tt.base, tt.max, tt.n, got, tt.want)
		}
	}
}

func TestOnExit(t *testing.T) {
	svc := unit.DefaultService()
	always := svc
	always.Restart = unit.RestartAlways
	no := svc
	no.Restart = unit.RestartNo
	oneshot := svc
	oneshot.Type = unit.TypeOneshot
	custom := svc
	custom.SuccessExitStatus = []int{0, 3}
	tests := []struct {
		name     string
		svc      unit.Service
		st       ExitStatus
		ran      time.Duration
		failures int
		result   string
		want     Decision
	}{
		{"on-failure, clean exit", svc, ExitStatus{}, time.Second, 0, "", Decision{Result: "success", Failures: 0}},
		{"on-failure, exit 1", svc, ExitStatus{Code: 1}, time.Second, 0, "", Decision{Restart: true, Delay: 100 * time.Millisecond, Failures: 1, Result: "exit-code"}},
		{"on-failure, third crash", svc, ExitStatus{Code: 137, Signal: "SIGKILL"}, time.Second, 2, "", Decision{Restart: true, Delay: 400 * time.Millisecond, Failures: 3, Result: "signal"}},
		{"long run resets backoff", svc, ExitStatus{Code: 1}, time.Minute, 7, "", Decision{Restart: true, Delay: 100 * time.Millisecond, Failures: 1, Result: "exit-code"}},
		{"success_exit_status", custom, ExitStatus{Code: 3}, time.Second, 0, "", Decision{Result: "success"}},
		{"always restarts a clean exit", always, ExitStatus{}, time.Second, 3, "", Decision{Restart: true, Delay: 100 * time.Millisecond, Failures: 0, Result: "success"}},
		{"no: failure ends failed", no, ExitStatus{Code: 2}, time.Second, 0, "", Decision{Result: "exit-code", Failed: true}},
		{"watchdog kill", svc, ExitStatus{Code: 137, Signal: "SIGKILL"}, time.Second, 0, "watchdog", Decision{Restart: true, Delay: 100 * time.Millisecond, Failures: 1, Result: "watchdog"}},
		{"oneshot success", oneshot, ExitStatus{}, time.Second, 0, "", Decision{Result: "success"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OnExit(tt.svc, tt.st, tt.ran, tt.failures, tt.result)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("OnExit (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	for s := Inactive; s <= Failed; s++ {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseState("running"); err == nil {
		t.Error("ParseState(running) = nil error, want one")
	}
}

//go:build unix

package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/unit"
	"pgregory.net/rapid"
)

// outcome is what Step must do for one phase and event: the phase it ends
// in and its effects, or nothing at all because the pair cannot happen.
type outcome struct {
	never   bool
	to      Phase
	effects string // effect kinds in order; publish as "publish:TYPE"
}

// phaseLast is the highest phase, for the tests that walk every phase.
const phaseLast = PhaseFailed

func to(p Phase, effects ...string) outcome {
	return outcome{to: p, effects: strings.Join(effects, " ")}
}

var never = outcome{never: true}

// tableService is the service every table row runs with: notify (so readiness
// is an event of its own), restart always, a watchdog and every timeout.
func tableService() unit.Service {
	svc := unit.DefaultService()
	svc.Type = unit.TypeNotify
	svc.Restart = unit.RestartAlways
	svc.RestartDelay = 3 * time.Second
	svc.Watchdog = time.Second
	svc.StartTimeout = 5 * time.Second
	svc.StopTimeout = 2 * time.Second
	return svc
}

// phaseSample is one lifecycle in each phase.
func phaseSample(p Phase) Lifecycle {
	switch p {
	case PhaseDead:
		return Lifecycle{State: Inactive, Sub: "dead"}
	case PhaseLaunching:
		return Lifecycle{State: Activating, Sub: "start", Gen: 1}
	case PhaseStarting:
		return Lifecycle{State: Activating, Sub: "start", Running: true, PID: 10, Gen: 1, StartDeadline: t0.Add(5 * time.Second)}
	case PhaseRunning:
		return Lifecycle{State: Active, Sub: "running", Running: true, PID: 10, Gen: 1, WatchdogDeadline: t0.Add(time.Second)}
	case PhaseExited:
		return Lifecycle{State: Active, Sub: "exited", Settled: true, Gen: 1}
	case PhaseAutoRestart:
		return Lifecycle{State: Activating, Sub: "auto-restart", Gen: 1, Failures: 1, RestartAt: t0.Add(3 * time.Second)}
	case PhaseStopping:
		return Lifecycle{State: Deactivating, Sub: "stop", Running: true, PID: 10, Gen: 1, Stopping: true, StopReason: StopManual, StopDeadline: t0.Add(2 * time.Second)}
	case PhaseFailed:
		return Lifecycle{State: Failed, Sub: "failed", Settled: true, Gen: 1}
	}
	panic(fmt.Sprintf("no sample for %s", p))
}

// eventSample is one event of each kind.
func eventSample(k EventKind) Event {
	ev := Event{Kind: k, Svc: tableService(), Defined: true, Wanted: true, Gen: 1, Hash: "h1"}
	switch k {
	case EvStart:
		ev.Reason = "wanted"
	case EvStarted, EvMainPID:
		ev.PID = 11
	case EvStartFailed:
		ev.Text = "exec: no such file"
	case EvStatus:
		ev.Text = "warming up"
	case EvExtendTimeout:
		ev.Delay = 10 * time.Second
	case EvError:
		ev.Text = "errno 5"
	case EvStop:
		ev.Reason, ev.Stop = "not wanted", StopManual
	case EvExited:
		ev.Exit = ExitStatus{Code: 1}
		ev.Ran = time.Minute
	case EvStartLimit:
		ev.Reason = "start-limit-hit"
	case EvBlocked:
		ev.Reason = "waiting for db to be ready"
	}
	return ev
}

// stepTable is every phase × event pair. Rows read as systemd would: a stop
// of a unit waiting to restart ends it dead, a stop of a failed unit leaves
// it failed, an exit the supervisor did not ask for follows the restart
// policy (here: restart always, so auto-restart).
var stepTable = map[Phase]map[EventKind]outcome{
	PhaseDead: {
		EvStart:   to(PhaseLaunching, "publish:unit.starting", "start-process"),
		EvStarted: never, EvStartFailed: never, EvReady: never, EvHeartbeat: never, EvWatchdogTrigger: never,
		EvStatus: never, EvExtendTimeout: never, EvStoppingNotice: never, EvMainPID: never, EvError: never,
		EvChannelClosed: never,
		EvStop:          to(PhaseDead),
		EvExited:        never, EvStartTimeout: never, EvStopTimeout: never, EvWatchdogTimeout: never, EvChannelTimeout: never,
		EvStartLimit:  to(PhaseFailed, "publish:unit.failed"),
		EvBlocked:     to(PhaseDead),
		EvResetFailed: to(PhaseDead),
	},
	PhaseLaunching: {
		EvStart:       never,
		EvStarted:     to(PhaseStarting, "publish:unit.started"),
		EvStartFailed: to(PhaseAutoRestart, "publish:unit.restarting"),
		EvReady:       never, EvHeartbeat: never, EvWatchdogTrigger: never, EvStatus: never, EvExtendTimeout: never,
		EvStoppingNotice: never, EvMainPID: never, EvError: never, EvChannelClosed: never,
		// The fork ends in the pass that began it: no plan sees it launching.
		EvStop: never, EvExited: never, EvStartTimeout: never, EvStopTimeout: never, EvWatchdogTimeout: never,
		EvChannelTimeout: never, EvStartLimit: never,
		EvBlocked:     to(PhaseLaunching),
		EvResetFailed: to(PhaseLaunching),
	},
	PhaseStarting: {
		EvStart: never, EvStarted: never, EvStartFailed: never,
		EvReady:           to(PhaseRunning, "publish:unit.ready"),
		EvHeartbeat:       to(PhaseStarting),
		EvWatchdogTrigger: to(PhaseStarting),
		EvStatus:          to(PhaseStarting, "publish:unit.status"),
		EvExtendTimeout:   to(PhaseStarting),
		EvStoppingNotice:  to(PhaseStarting),
		EvMainPID:         to(PhaseStarting),
		EvError:           to(PhaseStarting),
		EvChannelClosed:   to(PhaseStarting, "publish:unit.ipc_closed"),
		EvStop:            to(PhaseStopping, "publish:unit.stopping", "send-stop"),
		EvExited:          to(PhaseAutoRestart, "release", "publish:unit.exited", "publish:unit.restarting"),
		EvStartTimeout:    to(PhaseStarting, "publish:unit.killed", "kill"),
		EvStopTimeout:     never,
		EvWatchdogTimeout: never,
		EvChannelTimeout:  to(PhaseStarting, "publish:unit.killed", "kill"),
		EvStartLimit:      never,
		EvBlocked:         to(PhaseStarting),
		EvResetFailed:     to(PhaseStarting),
	},
	PhaseRunning: {
		EvStart: never, EvStarted: never, EvStartFailed: never,
		EvReady:           to(PhaseRunning),
		EvHeartbeat:       to(PhaseRunning),
		EvWatchdogTrigger: to(PhaseRunning),
		EvStatus:          to(PhaseRunning, "publish:unit.status"),
		EvExtendTimeout:   to(PhaseRunning),
		EvStoppingNotice:  to(PhaseRunning),
		EvMainPID:         to(PhaseRunning),
		EvError:           to(PhaseRunning),
		EvChannelClosed:   to(PhaseRunning, "publish:unit.ipc_closed"),
		EvStop:            to(PhaseStopping, "publish:unit.stopping", "send-stop"),
		EvExited:          to(PhaseAutoRestart, "release", "publish:unit.exited", "publish:unit.restarting"),
		EvStartTimeout:    never,
		EvStopTimeout:     never,
		EvWatchdogTimeout: to(PhaseRunning, "publish:unit.watchdog", "kill"),
		EvChannelTimeout:  to(PhaseRunning, "publish:unit.killed", "kill"),
		EvStartLimit:      never,
		EvBlocked:         to(PhaseRunning),
		EvResetFailed:     to(PhaseRunning),
	},
	PhaseExited: {
		EvStart:   to(PhaseLaunching, "publish:unit.starting", "start-process"),
		EvStarted: never, EvStartFailed: never, EvReady: never, EvHeartbeat: never, EvWatchdogTrigger: never,
		EvStatus: never, EvExtendTimeout: never, EvStoppingNotice: never, EvMainPID: never, EvError: never,
		EvChannelClosed: never,
		EvStop:          to(PhaseDead, "publish:unit.stopped"),
		EvExited:        never, EvStartTimeout: never, EvStopTimeout: never, EvWatchdogTimeout: never, EvChannelTimeout: never,
		EvStartLimit:  to(PhaseFailed, "publish:unit.failed"),
		EvBlocked:     to(PhaseExited),
		EvResetFailed: to(PhaseExited),
	},
	PhaseAutoRestart: {
		EvStart:   to(PhaseLaunching, "publish:unit.starting", "start-process"),
		EvStarted: never, EvStartFailed: never, EvReady: never, EvHeartbeat: never, EvWatchdogTrigger: never,
		EvStatus: never, EvExtendTimeout: never, EvStoppingNotice: never, EvMainPID: never, EvError: never,
		EvChannelClosed: never,
		EvStop:          to(PhaseDead, "publish:unit.stopped"),
		EvExited:        never, EvStartTimeout: never, EvStopTimeout: never, EvWatchdogTimeout: never, EvChannelTimeout: never,
		EvStartLimit:  to(PhaseFailed, "publish:unit.failed"),
		EvBlocked:     to(PhaseAutoRestart),
		EvResetFailed: to(PhaseAutoRestart),
	},
	PhaseStopping: {
		EvStart: never, EvStarted: never, EvStartFailed: never,
		EvReady:           to(PhaseStopping),
		EvHeartbeat:       to(PhaseStopping),
		EvWatchdogTrigger: to(PhaseStopping),
		EvStatus:          to(PhaseStopping, "publish:unit.status"),
		EvExtendTimeout:   to(PhaseStopping),
		EvStoppingNotice:  to(PhaseStopping),
		EvMainPID:         to(PhaseStopping),
		EvError:           to(PhaseStopping),
		EvChannelClosed:   to(PhaseStopping),
		EvStop:            to(PhaseStopping),
		EvExited:          to(PhaseDead, "release", "publish:unit.stopped"),
		EvStartTimeout:    never,
		EvStopTimeout:     to(PhaseStopping, "publish:unit.killed", "kill"),
		EvWatchdogTimeout: never,
		EvChannelTimeout:  never,
		EvStartLimit:      never,
		EvBlocked:         to(PhaseStopping),
		EvResetFailed:     to(PhaseStopping),
	},
	PhaseFailed: {
		EvStart:   to(PhaseLaunching, "publish:unit.starting", "start-process"),
		EvStarted: never, EvStartFailed: never, EvReady: never, EvHeartbeat: never, EvWatchdogTrigger: never,
		EvStatus: never, EvExtendTimeout: never, EvStoppingNotice: never, EvMainPID: never, EvError: never,
		EvChannelClosed: never,
		EvStop:          to(PhaseFailed),
		EvExited:        never, EvStartTimeout: never, EvStopTimeout: never, EvWatchdogTimeout: never, EvChannelTimeout: never,
		EvStartLimit:  to(PhaseFailed, "publish:unit.failed"),
		EvBlocked:     to(PhaseFailed),
		EvResetFailed: to(PhaseDead),
	},
}

func effectList(effs []Effect) string {
	var parts []string
	for _, e := range effs {
		if e.Kind == EffPublish {
			parts = append(parts, "publish:"+e.Data.EventType())
			continue
		}
		parts = append(parts, e.Kind.String())
	}
	return strings.Join(parts, " ")
}

// TestStepTable runs every phase × event pair through Step and compares it
// with the table; a pair missing from the table fails the test.
func TestStepTable(t *testing.T) {
	for p := PhaseDead; p <= phaseLast; p++ {
		if got := phaseSample(p).Phase(); got != p {
			t.Fatalf("sample of %s is in phase %s", p, got)
		}
		for k := EvStart; k <= evLast; k++ {
			want, ok := stepTable[p][k]
			if !ok {
				t.Errorf("%s × %s: no expected outcome in the table", p, k)
				continue
			}
			in := phaseSample(p)
			before := phaseSample(p)
			next, effs := in.Step(eventSample(k), t0)
			if !reflect.DeepEqual(in, before) {
				t.Errorf("%s × %s: Step changed its receiver", p, k)
			}
			if want.never {
				if len(effs) != 1 || effs[0].Kind != EffIllegal || !strings.Contains(effs[0].Text, "cannot happen") {
					t.Errorf("%s × %s: effects %q, want one illegal effect", p, k, effectList(effs))
				}
				if diff := cmp.Diff(in, next); diff != "" {
					t.Errorf("%s × %s: an impossible event changed the lifecycle (-before +after):\n%s", p, k, diff)
				}
				continue
			}
			if got := next.Phase(); got != want.to {
				t.Errorf("%s × %s: phase %s (%s %s), want %s", p, k, got, next.State, next.Sub, want.to)
			}
			if got := effectList(effs); got != want.effects {
				t.Errorf("%s × %s: effects %q, want %q", p, k, got, want.effects)
			}
		}
	}
	for p := range stepTable {
		if p < PhaseDead || p > phaseLast {
			t.Errorf("table has phase %s, which does not exist", p)
		}
	}
}

// TestStepOutcomes runs short event sequences and checks where the unit ends,
// as systemd would.
func TestStepOutcomes(t *testing.T) {
	restartNo := tableService()
	restartNo.Restart = unit.RestartNo
	simple := tableService()
	simple.Type, simple.Restart = unit.TypeSimple, unit.RestartNo
	oneshot := tableService()
	oneshot.Type, oneshot.Restart = unit.TypeOneshot, unit.RestartNo
	orch := tableService()
	orch.Type = unit.TypeOrchestrator

	ev := func(k EventKind, mod ...func(*Event)) Event {
		e := eventSample(k)
		for _, m := range mod {
			m(&e)
		}
		return e
	}
	svc := func(s unit.Service) func(*Event) { return func(e *Event) { e.Svc = s } }
	exit := func(code int, sig string) func(*Event) {
		return func(e *Event) { e.Exit = ExitStatus{Code: code, Signal: sig} }
	}
	tests := []struct {
		name   string
		from   Phase
		events []Event
		state  State
		sub    string
		check  func(t *testing.T, l Lifecycle)
	}{
		{
			name: "stop while waiting to restart cancels the restart", from: PhaseAutoRestart,
			events: []Event{ev(EvStop)}, state: Inactive, sub: "dead",
			check: func(t *testing.T, l Lifecycle) {
				if !l.RestartAt.IsZero() || l.Failures != 0 {
					t.Errorf("restart at %v, failures %d; want none pending", l.RestartAt, l.Failures)
				}
			},
		},
		{
			name: "asked stop ends inactive whatever the exit", from: PhaseRunning,
			events: []Event{ev(EvStop), ev(EvExited, exit(143, "SIGTERM"))}, state: Inactive, sub: "dead",
			check: func(t *testing.T, l Lifecycle) {
				if l.Result != "success" || l.Exit == nil || l.Exit.Signal != "SIGTERM" {
					t.Errorf("result %q exit %+v", l.Result, l.Exit)
				}
			},
		},
		{
			name: "a stop that had to kill ends inactive (timeout)", from: PhaseRunning,
			events: []Event{ev(EvStop), ev(EvStopTimeout), ev(EvExited, exit(137, "SIGKILL"))}, state: Inactive, sub: "timeout",
		},
		{
			name: "failure without restart ends failed", from: PhaseRunning,
			events: []Event{ev(EvExited, svc(restartNo))}, state: Failed, sub: "failed",
		},
		{
			name: "clean exit without restart ends dead", from: PhaseRunning,
			events: []Event{ev(EvExited, svc(simple), exit(0, ""))}, state: Inactive, sub: "dead",
		},
		{
			name: "failure while the daemon stops is not restarted", from: PhaseRunning,
			events: []Event{ev(EvExited, func(e *Event) { e.Wanted = false })}, state: Failed, sub: "failed",
		},
		{
			name: "simple unit is ready when forked", from: PhaseLaunching,
			events: []Event{ev(EvStarted, svc(simple))}, state: Active, sub: "running",
		},
		{
			name: "oneshot success is active (exited), and a stop ends it", from: PhaseLaunching,
			events: []Event{ev(EvStarted, svc(oneshot)), ev(EvExited, svc(oneshot), exit(0, "")), ev(EvStop, svc(oneshot))},
			state:  Inactive, sub: "dead",
		},
		{
			name: "start timeout kills and fails with result timeout", from: PhaseStarting,
			events: []Event{ev(EvStartTimeout, svc(restartNo)), ev(EvExited, svc(restartNo), exit(137, "SIGKILL"))},
			state:  Failed, sub: "failed",
			check: func(t *testing.T, l Lifecycle) {
				if l.Result != "timeout" {
					t.Errorf("result %q, want timeout", l.Result)
				}
			},
		},
		{
			name: "watchdog kill restarts with result watchdog", from: PhaseRunning,
			events: []Event{ev(EvWatchdogTimeout), ev(EvExited, exit(137, "SIGKILL"))}, state: Activating, sub: "auto-restart",
			check: func(t *testing.T, l Lifecycle) {
				if l.Result != "watchdog" || l.RestartAt.IsZero() {
					t.Errorf("result %q restart at %v", l.Result, l.RestartAt)
				}
			},
		},
		{
			name: "a plain stop cuts a drain short", from: PhaseRunning,
			events: []Event{ev(EvStop, svc(orch), func(e *Event) { e.Drain = true }), ev(EvStop, svc(orch))},
			state:  Deactivating, sub: "stop",
			check: func(t *testing.T, l Lifecycle) {
				if l.Drain || l.StopDeadline.IsZero() {
					t.Errorf("drain %v stop deadline %v; want the deadline armed", l.Drain, l.StopDeadline)
				}
			},
		},
		{
			name: "restart takes the asked generation when the stop is through", from: PhaseRunning,
			events: []Event{ev(EvStop, func(e *Event) { e.Stop = StopRestart }), ev(EvExited, exit(0, ""), func(e *Event) { e.RestartGen = 4 })},
			state:  Inactive, sub: "dead",
			check: func(t *testing.T, l Lifecycle) {
				if l.RestartGen != 4 {
					t.Errorf("restart gen %d, want 4", l.RestartGen)
				}
			},
		},
		{
			name: "a new start generation resets the backoff", from: PhaseFailed,
			events: []Event{ev(EvStart, func(e *Event) { e.Gen = 2 })}, state: Activating, sub: "start",
			check: func(t *testing.T, l Lifecycle) {
				if l.Failures != 0 || len(l.Starts) != 1 || l.Settled {
					t.Errorf("failures %d starts %d settled %v", l.Failures, len(l.Starts), l.Settled)
				}
			},
		},
		{
			name: "an auto-restart counts as a restart", from: PhaseAutoRestart,
			events: []Event{ev(EvStart)}, state: Activating, sub: "start",
			check: func(t *testing.T, l Lifecycle) {
				if l.Restarts != 1 || !l.RestartAt.IsZero() {
					t.Errorf("restarts %d restart at %v", l.Restarts, l.RestartAt)
				}
			},
		},
		{
			name: "STOPPING=1 marks the sub-state", from: PhaseRunning,
			events: []Event{ev(EvStoppingNotice)}, state: Active, sub: "stopping",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := phaseSample(tt.from)
			now := t0
			for _, e := range tt.events {
				var effs []Effect
				l, effs = l.Step(e, now)
				for _, eff := range effs {
					if eff.Kind == EffIllegal {
						t.Fatalf("%s: %s", e.Kind, eff.Text)
					}
				}
				now = now.Add(time.Second)
			}
			if l.State != tt.state || l.Sub != tt.sub {
				t.Fatalf("ends %s (%s), want %s (%s)", l.State, l.Sub, tt.state, tt.sub)
			}
			if tt.check != nil {
				tt.check(t, l)
			}
		})
	}
}

// TestPlanStopsWhatWaits: an unwanted unit that waits to restart, or a
// oneshot that is over, is stopped although no process runs.
func TestPlanStopsWhatWaits(t *testing.T) {
	for _, p := range []Phase{PhaseAutoRestart, PhaseExited} {
		desired := map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: false, StartGen: 1}}
		acts, _ := Plan(desired, map[string]Lifecycle{"web": phaseSample(p)}, t0)
		want := []Action{{Kind: ActStop, Unit: "web", Reason: "not wanted", Stop: StopManual}}
		if diff := cmp.Diff(want, acts); diff != "" {
			t.Errorf("%s: plan (-want +got):\n%s", p, diff)
		}
	}
	for _, p := range []Phase{PhaseDead, PhaseFailed} {
		desired := map[string]Desired{"web": {Unit: mkUnit("web", "h1"), Want: false, StartGen: 1}}
		if acts, _ := Plan(desired, map[string]Lifecycle{"web": phaseSample(p)}, t0); len(acts) != 0 {
			t.Errorf("%s: plan %+v, want nothing", p, acts)
		}
	}
}

// TestStopCancelsAutoRestart: opsvc stop of a unit waiting to restart ends it
// inactive (dead) and drops the pending restart.
func TestStopCancelsAutoRestart(t *testing.T) {
	h := newHarness(t, map[string]string{
		"flap.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"exit 1\"]\nrestart = \"always\"\nrestart_delay = \"3s\"\n",
	})
	h.waitEvent("unit.restarting", "flap")
	if us := h.status("flap"); us.State != Activating || us.Sub != "auto-restart" {
		t.Fatalf("before stop: %s (%s), want activating (auto-restart)", us.State, us.Sub)
	}
	code, b := h.do("POST", "/v1/units/flap/stop?wait=1", nil)
	if code != http.StatusOK {
		t.Fatalf("stop: %d %s", code, b)
	}
	us := h.status("flap")
	if us.State != Inactive || us.Sub != "dead" || us.Wanted {
		t.Fatalf("after stop: %s (%s) wanted=%v, want inactive (dead), not wanted", us.State, us.Sub, us.Wanted)
	}
	e := h.waitEvent("unit.stopped", "flap")
	if e.Data["reason"] != "stop" {
		t.Errorf("unit.stopped reason = %v, want stop", e.Data["reason"])
	}
	var pending time.Time
	h.sup.do(context.Background(), func() { pending = h.sup.units["flap"].RestartAt })
	if !pending.IsZero() {
		t.Errorf("a restart is still due at %v", pending)
	}
}

// verbAsync sends a start/stop/restart with wait=1 and hands back its answer.
func (h *harness) verbAsync(verb, name string) <-chan [2]any {
	out := make(chan [2]any, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://opsvc/v1/units/"+name+"/"+verb+"?wait=1", nil)
		resp, err := h.client.Do(req)
		if err != nil {
			out <- [2]any{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		out <- [2]any{resp.StatusCode, body}
	}()
	return out
}

func awaitAnswer(t *testing.T, ch <-chan [2]any) (int, map[string]any) {
	t.Helper()
	select {
	case r := <-ch:
		body, _ := r[1].(map[string]any)
		code, _ := r[0].(int)
		if body == nil {
			t.Fatalf("answer: %v", r[1])
		}
		return code, body
	case <-time.After(15 * time.Second):
		t.Fatal("no answer within 15s")
	}
	return 0, nil
}

// TestWaitingStartCanceledByStop: a start waiting for readiness ends at once
// when a stop follows it, with 409 and the reason.
func TestWaitingStartCanceledByStop(t *testing.T) {
	h := newHarness(t, map[string]string{
		// Never ready: the start would wait forever.
		"slow.toml": "[unit]\nenabled = false\n[service]\ntype = \"notify\"\nexec = [\"/bin/sleep\", \"1000\"]\nstart_timeout = \"0s\"\n",
	})
	start := h.verbAsync("start", "slow")
	h.waitEvent("unit.started", "slow")
	if code, b := h.do("POST", "/v1/units/slow/stop", nil); code != http.StatusOK {
		t.Fatalf("stop: %d %s", code, b)
	}
	code, body := awaitAnswer(t, start)
	if code != http.StatusConflict || body["error"] != "canceled by a later stop" || body["hint"] == "" {
		t.Fatalf("start answered %d %v, want 409 canceled by a later stop with a hint", code, body)
	}
	h.waitEvent("unit.stopped", "slow")
}

// TestWaitingStopCanceledByStart: a stop waiting for a process that ignores
// its stop signal ends at once when a start follows it.
func TestWaitingStopCanceledByStart(t *testing.T) {
	dir := shortTemp(t)
	flag := filepath.Join(dir, "go")
	script := fmt.Sprintf("trap 'test -e %s && exit 0' TERM; echo up; while :; do sleep 1 & wait $!; done", flag)
	h := newHarness(t, map[string]string{
		"stubborn.toml": fmt.Sprintf("[service]\nexec = [\"/bin/sh\", \"-c\", %q]\nstop_timeout = \"60s\"\n", script),
	})
	h.waitEvent("unit.ready", "stubborn")
	h.waitLog("stubborn", "up")
	pid := h.status("stubborn").PID
	stop := h.verbAsync("stop", "stubborn")
	h.waitEvent("unit.stopping", "stubborn")
	if code, b := h.do("POST", "/v1/units/stubborn/start", nil); code != http.StatusOK {
		t.Fatalf("start: %d %s", code, b)
	}
	code, body := awaitAnswer(t, stop)
	if code != http.StatusConflict || body["error"] != "canceled by a later start" {
		t.Fatalf("stop answered %d %v, want 409 canceled by a later start", code, body)
	}
	// Let the process go, so the start goes through and shutdown is quick.
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	h.waitEvent("unit.stopped", "stubborn")
	h.waitEvent("unit.ready", "stubborn")
	if us := h.status("stubborn"); us.State != Active || !us.Wanted {
		t.Fatalf("after the later start: %s (%s) wanted=%v, want active", us.State, us.Sub, us.Wanted)
	}
}

// TestNotifyStatusPublishes: STATUS= from sd_notify updates status_text and
// publishes unit.status, as the IPC status message does.
func TestNotifyStatusPublishes(t *testing.T) {
	h := newHarness(t, map[string]string{
		"n.toml": fmt.Sprintf("[service]\ntype = \"notify\"\nexec = [%q]\nenvironment = { OPSVC_TEST_WORKER = \"notify-status\" }\n", testExe(t)),
	})
	h.waitEvent("unit.ready", "n")
	for {
		e := h.waitEvent("unit.status", "n")
		if e.Data["text"] == "step 2" {
			break
		}
	}
	if us := h.status("n"); us.StatusText != "step 2" {
		t.Fatalf("status_text = %q, want step 2", us.StatusText)
	}
}

// TestManualStopSurvivesReload: a unit the operator stopped stays stopped
// across a reload, until its own file changes.
func TestManualStopSurvivesReload(t *testing.T) {
	h := newHarness(t, map[string]string{
		"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
		"b.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
	})
	h.waitEvent("unit.ready", "a")
	if code, b := h.do("POST", "/v1/units/a/stop?wait=1", nil); code != http.StatusOK {
		t.Fatalf("stop: %d %s", code, b)
	}
	// Another unit's file changes: a stays stopped.
	h.write("b.toml", "[unit]\ndescription = \"b again\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n")
	if code, b := h.do("POST", "/v1/reload", nil); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, b)
	}
	if us := h.status("a"); us.State != Inactive || us.Wanted {
		t.Fatalf("after reloading b: a is %s wanted=%v, want inactive, not wanted", us.State, us.Wanted)
	}
	// Its own file changes: it runs again.
	h.write("a.toml", "[unit]\ndescription = \"a again\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n")
	if code, b := h.do("POST", "/v1/reload", nil); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, b)
	}
	h.waitEvent("unit.ready", "a")
	if us := h.status("a"); us.State != Active || !us.Wanted {
		t.Fatalf("after its file changed: a is %s wanted=%v, want active", us.State, us.Wanted)
	}
}

// TestKillAndResetFailed: opsvc kill ends the process like any exit nobody
// asked for (here: the unit fails), and reset-failed makes a failed unit
// inactive without starting it.
func TestKillAndResetFailed(t *testing.T) {
	h := newHarness(t, map[string]string{
		"k.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"no\"\n",
	})
	h.waitEvent("unit.ready", "k")
	pid := h.status("k").PID
	if code, b := h.do("POST", "/v1/units/k/kill?signal=TERM", nil); code != http.StatusOK {
		t.Fatalf("kill: %d %s", code, b)
	}
	e := h.waitEvent("unit.failed", "k")
	if e.Data["result"] != "signal" {
		t.Errorf("failed with %v, want result signal", e.Data)
	}
	assertGroupGone(t, pid)
	if code, b := h.do("POST", "/v1/units/k/reset-failed", nil); code != http.StatusOK {
		t.Fatalf("reset-failed: %d %s", code, b)
	}
	if us := h.status("k"); us.State != Inactive || us.Sub != "dead" || us.PID != 0 {
		t.Fatalf("after reset-failed: %s (%s) pid %d, want inactive (dead) and nothing started", us.State, us.Sub, us.PID)
	}
}

// stepTableMarkdown renders stepTable as the table in docs/lifecycle.md: one
// row per event, one column per phase.
func stepTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| event \\ phase |")
	for p := PhaseDead; p <= phaseLast; p++ {
		b.WriteString(" " + p.String() + " |")
	}
	b.WriteString("\n|---|")
	for p := PhaseDead; p <= phaseLast; p++ {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for k := EvStart; k <= evLast; k++ {
		b.WriteString("| " + k.String() + " |")
		for p := PhaseDead; p <= phaseLast; p++ {
			o := stepTable[p][k]
			var cell string
			switch {
			case o.never:
				cell = "·"
			case o.to == p && o.effects == "":
				cell = "="
			case o.to == p:
				cell = "= " + o.effects
			case o.effects == "":
				cell = "→ " + o.to.String()
			default:
				cell = "→ " + o.to.String() + ": " + o.effects
			}
			b.WriteString(" " + strings.ReplaceAll(cell, "publish:", "") + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestLifecycleDoc: the table in docs/lifecycle.md is the one the tests hold
// Step to.
func TestLifecycleDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/lifecycle.md")
	if err != nil {
		t.Fatal(err)
	}
	want := stepTableMarkdown()
	if !strings.Contains(string(doc), "\n\n"+want+"\n") { // the whole table, no row more
		t.Errorf("docs/lifecycle.md does not hold the transition table; it should be:\n%s", want)
	}
}

// TestStepProperties feeds random event sequences to Step and checks the
// invariants every lifecycle keeps, whatever the order of events: a stop is
// only under way for a running process, a main pid exists exactly while a
// process runs, no deadline outlives its process, a restart is due only in
// auto-restart, a failed or exited unit is settled, and an impossible event
// changes nothing.
func TestStepProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		svc := tableService()
		svc.Type = rapid.SampledFrom([]unit.Type{unit.TypeSimple, unit.TypeNotify, unit.TypeOneshot, unit.TypeIPC, unit.TypeOrchestrator}).Draw(t, "type")
		svc.Restart = rapid.SampledFrom([]unit.RestartPolicy{unit.RestartNo, unit.RestartOnFailure, unit.RestartAlways}).Draw(t, "restart")
		l := Lifecycle{State: Inactive, Sub: "dead"}
		now := t0
		for i := range rapid.IntRange(1, 60).Draw(t, "steps") {
			// Mostly events that can happen in the phase (so runs go deep),
			// now and then any event.
			var kinds []EventKind
			for k := EvStart; k <= evLast; k++ {
				if !stepTable[l.Phase()][k].never || rapid.IntRange(0, 9).Draw(t, fmt.Sprint("any", i, k)) == 0 {
					kinds = append(kinds, k)
				}
			}
			ev := eventSample(rapid.SampledFrom(kinds).Draw(t, fmt.Sprint("kind", i)))
			ev.Svc = svc
			ev.Wanted = rapid.Bool().Draw(t, fmt.Sprint("wanted", i))
			ev.Drain = rapid.Bool().Draw(t, fmt.Sprint("drain", i))
			ev.Exit.Code = rapid.SampledFrom([]int{0, 1, 143}).Draw(t, fmt.Sprint("code", i))
			before := l
			next, effs := l.Step(ev, now)
			illegal := len(effs) == 1 && effs[0].Kind == EffIllegal
			if illegal && !reflect.DeepEqual(before, next) {
				t.Fatalf("step %d: impossible %s changed the lifecycle", i, ev.Kind)
			}
			l = next
			ph := l.Phase()
			switch {
			case l.Stopping && !l.Running:
				t.Fatalf("step %d (%s): stopping with no process", i, ev.Kind)
			case l.Running != (l.PID != 0):
				t.Fatalf("step %d (%s): running=%v with pid %d", i, ev.Kind, l.Running, l.PID)
			case !l.Running && !(l.StartDeadline.IsZero() && l.StopDeadline.IsZero() && l.WatchdogDeadline.IsZero() && l.EOFDeadline.IsZero()):
				t.Fatalf("step %d (%s): a deadline with no process: %+v", i, ev.Kind, l)
			case !l.RestartAt.IsZero() && ph != PhaseAutoRestart:
				t.Fatalf("step %d (%s): restart due in phase %s", i, ev.Kind, ph)
			case (ph == PhaseFailed || ph == PhaseExited) && !l.Settled:
				t.Fatalf("step %d (%s): %s but not settled", i, ev.Kind, ph)
			}
			now = now.Add(time.Duration(rapid.IntRange(0, 5000).Draw(t, fmt.Sprint("dt", i))) * time.Millisecond)
		}
	})
}

// TestStopCancelsRestartInFakeTime: after a stop of a unit waiting to
// restart, no start ever follows, however long the loop runs.
func TestStopCancelsRestartInFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{exit: 1}
		dir := t.TempDir()
		units := filepath.Join(dir, "units")
		os.MkdirAll(units, 0o755)
		os.WriteFile(filepath.Join(units, "u.toml"), []byte("[service]\nexec = [\"/bin/false\"]\nrestart = \"always\"\nrestart_delay = \"3s\"\n"), 0o644)
		sup, err := New(Options{Paths: config.Paths{Units: units, State: dir, Socket: filepath.Join(dir, "s")}, Runner: r, Settings: config.DefaultSettings(), NoNotifySockets: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sup.Run(ctx) }()
		synctest.Wait()
		var l Lifecycle
		look := func() {
			if err := sup.do(ctx, func() { l = sup.units["u"].Lifecycle }); err != nil {
				t.Fatal(err)
			}
		}
		look()
		if l.Phase() != PhaseAutoRestart {
			t.Fatalf("before stop: %s (%s), want auto-restart", l.State, l.Sub)
		}
		var code int
		sup.do(ctx, func() { code, _ = sup.ask("u", "stop", false, Peer{}) })
		if code != http.StatusOK {
			t.Fatalf("stop answered %d", code)
		}
		time.Sleep(time.Minute) // fake time: twenty restart delays
		synctest.Wait()
		look()
		if starts, _ := r.times(); len(starts) != 1 || l.State != Inactive || l.Sub != "dead" {
			t.Fatalf("a minute after the stop: %d starts, %s (%s); want 1 start, inactive (dead)", len(starts), l.State, l.Sub)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestNothingStartsWhileTheDaemonStops: a unit file that appears or changes
// while the daemon stops its units does not start anything.
func TestNothingStartsWhileTheDaemonStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeRunner{exit: -1} // runs until SIGTERM or SIGKILL
		dir := t.TempDir()
		units := filepath.Join(dir, "units")
		os.MkdirAll(units, 0o755)
		// Ignores its stop signal: the daemon waits for its stop timeout.
		os.WriteFile(filepath.Join(units, "slow.toml"), []byte("[service]\nexec = [\"/bin/true\"]\nstop_signal = \"SIGUSR1\"\nstop_timeout = \"30s\"\n"), 0o644)
		os.WriteFile(filepath.Join(units, "off.toml"), []byte("[service]\nexec = [\"/bin/true\"]\n"), 0o644)
		sup, err := New(Options{Paths: config.Paths{Units: units, State: dir, Socket: filepath.Join(dir, "s")}, Runner: r, Settings: config.DefaultSettings(), NoNotifySockets: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sup.Run(ctx) }()
		synctest.Wait()
		// off is stopped by hand first, so its file change would start it.
		sup.do(context.Background(), func() { sup.ask("off", "stop", false, Peer{}) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		os.WriteFile(filepath.Join(units, "new.toml"), []byte("[service]\nexec = [\"/bin/true\"]\n"), 0o644)
		os.WriteFile(filepath.Join(units, "off.toml"), []byte("[unit]\ndescription = \"changed\"\n[service]\nexec = [\"/bin/true\"]\n"), 0o644)
		if _, err := sup.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if starts, _ := r.times(); len(starts) != 2 {
			t.Errorf("%d starts, want 2 (slow and off, before the daemon stopped)", len(starts))
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Hour): // fake time: past every stop timeout
			t.Fatal("the daemon did not stop")
		}
	})
}

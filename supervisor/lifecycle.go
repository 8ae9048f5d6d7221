package supervisor

import (
	"fmt"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
)

// Lifecycle is everything the supervisor knows of one unit's life: its state,
// the flags and deadlines of its current run, and the outcome of its last
// one. Step is the only code that changes it; Plan only reads it.
type Lifecycle struct {
	State State     `json:",omitzero"`
	Sub   string    `json:",omitzero"`
	Since time.Time `json:",omitzero"`

	PID     int    `json:",omitzero"` // main process, 0 when none
	Running bool   `json:",omitzero"` // a process of the unit is alive (not yet reaped)
	Hash    string `json:",omitzero"` // definition the running process was started from

	Stopping   bool       `json:",omitzero"` // a stop was sent
	StopReason StopReason `json:",omitzero"` // why
	Killed     bool       `json:",omitzero"` // SIGKILL was sent
	// KillResult is the result word of a process the supervisor killed
	// without being asked to stop it: "timeout", "watchdog" or "protocol".
	KillResult string `json:",omitzero"`
	Drain      bool   `json:",omitzero"` // the stop lets an orchestrator finish its session

	// Settled marks a run that is over for good (exited without restart, or
	// failed); only a new StartGen starts it again.
	Settled    bool   `json:",omitzero"`
	Gen        uint64 `json:",omitzero"` // StartGen of the last start
	RestartGen uint64 `json:",omitzero"` // RestartGen handled

	RestartAt time.Time   `json:",omitzero"` // auto-restart due (zero: none scheduled)
	Failures  int         `json:",omitzero"` // consecutive failed runs, for the backoff
	Starts    []time.Time `json:",omitzero"` // recent starts, for the start limit
	Restarts  int         `json:",omitzero"` // automatic restarts so far

	StartDeadline    time.Time `json:",omitzero"` // notify/ipc readiness deadline
	StopDeadline     time.Time `json:",omitzero"` // SIGKILL after this
	WatchdogDeadline time.Time `json:",omitzero"` // heartbeat deadline (zero: off)
	EOFDeadline      time.Time `json:",omitzero"` // the IPC channel closed: the process must exit by then

	Blocked string `json:",omitzero"` // why a wanted unit is not started

	StartedAt  time.Time   `json:",omitzero"` // when the current (or last) process started
	Exit       *ExitStatus `json:",omitzero"` // how the last process ended
	Result     string      `json:",omitzero"` // systemd's result word for the last run
	StatusText string      `json:",omitzero"` // the worker's last STATUS= or status message
	LastError  string      `json:",omitzero"` // why the last start failed
}

// Phase is where a unit is in its life: systemd's active state together with
// whether a process runs. It is derived from the Lifecycle, never stored.
type Phase uint8

// Phases.
const (
	PhaseDead        Phase = 1 // inactive: no process
	PhaseLaunching   Phase = 2 // activating (start): the process is being forked
	PhaseStarting    Phase = 3 // activating (start): the process runs, not ready yet
	PhaseRunning     Phase = 4 // active (running)
	PhaseExited      Phase = 5 // active (exited): a oneshot that succeeded
	PhaseAutoRestart Phase = 6 // activating (auto-restart): waiting to start again
	PhaseStopping    Phase = 7 // deactivating (stop): stop sent, waiting for the exit
	PhaseFailed      Phase = 8 // failed: no process
)

func (p Phase) String() string {
	switch p {
	case PhaseDead:
		return "dead"
	case PhaseLaunching:
		return "launching"
	case PhaseStarting:
		return "starting"
	case PhaseRunning:
		return "running"
	case PhaseExited:
		return "exited"
	case PhaseAutoRestart:
		return "auto-restart"
	case PhaseStopping:
		return "stopping"
	case PhaseFailed:
		return "failed"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Phase says where the unit is.
func (l Lifecycle) Phase() Phase {
	switch {
	case l.Running && l.Stopping:
		return PhaseStopping
	case l.Running && l.State == Active:
		return PhaseRunning
	case l.Running:
		return PhaseStarting
	case l.State == Activating && l.Sub == "auto-restart":
		return PhaseAutoRestart
	case l.State == Activating:
		return PhaseLaunching
	case l.State == Active:
		return PhaseExited
	case l.State == Failed:
		return PhaseFailed
	}
	return PhaseDead
}

// EventKind is what happened to a unit.
type EventKind uint8

// Event kinds. Operator requests reach a unit through the plan: a start,
// restart or definition change becomes EvStart and EvStop as Plan decides.
const (
	EvStart           EventKind = 1  // start the unit now (asked, wanted, or its restart is due)
	EvStarted         EventKind = 2  // the process was forked (PID)
	EvStartFailed     EventKind = 3  // the process could not be started (Text)
	EvReady           EventKind = 4  // READY=1 or the IPC ready message
	EvHeartbeat       EventKind = 5  // WATCHDOG=1 or the IPC heartbeat
	EvWatchdogTrigger EventKind = 6  // WATCHDOG=trigger: fail the watchdog now
	EvStatus          EventKind = 7  // STATUS= or the IPC status message (Text)
	EvExtendTimeout   EventKind = 8  // EXTEND_TIMEOUT_USEC= (Delay)
	EvStoppingNotice  EventKind = 9  // STOPPING=1
	EvMainPID         EventKind = 10 // MAINPID= naming a process of the unit (PID)
	EvError           EventKind = 11 // ERRNO= (Text)
	EvChannelClosed   EventKind = 12 // the worker closed its IPC channel
	EvStop            EventKind = 13 // stop: asked, restart, definition changed or removed, dependency, shutdown
	EvExited          EventKind = 14 // the main process was reaped (Exit, Ran)
	EvStartTimeout    EventKind = 15 // the readiness deadline passed
	EvStopTimeout     EventKind = 16 // the stop deadline passed
	EvWatchdogTimeout EventKind = 17 // the heartbeat deadline passed
	EvChannelTimeout  EventKind = 18 // the process outlived its closed IPC channel
	EvStartLimit      EventKind = 19 // too many starts: give up
	EvBlocked         EventKind = 20 // the plan waits on something before starting (Reason)
	EvResetFailed     EventKind = 21 // reset-failed: forget a failure, the backoff and the start-limit count
	evLast                      = EvResetFailed
)

func (k EventKind) String() string {
	switch k {
	case EvStart:
		return "start"
	case EvStarted:
		return "started"
	case EvStartFailed:
		return "start-failed"
	case EvReady:
		return "ready"
	case EvHeartbeat:
		return "heartbeat"
	case EvWatchdogTrigger:
		return "watchdog-trigger"
	case EvStatus:
		return "status"
	case EvExtendTimeout:
		return "extend-timeout"
	case EvStoppingNotice:
		return "stopping-notice"
	case EvMainPID:
		return "main-pid"
	case EvError:
		return "errno"
	case EvChannelClosed:
		return "channel-closed"
	case EvStop:
		return "stop"
	case EvExited:
		return "exited"
	case EvStartTimeout:
		return "start-timeout"
	case EvStopTimeout:
		return "stop-timeout"
	case EvWatchdogTimeout:
		return "watchdog-timeout"
	case EvChannelTimeout:
		return "channel-timeout"
	case EvStartLimit:
		return "start-limit"
	case EvBlocked:
		return "blocked"
	case EvResetFailed:
		return "reset-failed"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one thing that happened to a unit, with what Step needs to know
// about it. Svc is the unit's current service definition.
type Event struct {
	Kind    EventKind
	Svc     unit.Service
	Defined bool // the unit has a valid definition (EvExited)
	Wanted  bool // the unit is still wanted running (EvExited: restart allowed)

	Reason string     // EvStart, EvStop, EvStartLimit, EvBlocked
	Stop   StopReason // EvStop
	Drain  bool       // EvStop: let an orchestrator finish its session
	StopBy time.Time  // EvStop: SIGKILL by then at the latest (a fleet unit whose lease runs out)

	Gen        uint64 // EvStart, EvStartLimit: the wanted StartGen
	RestartGen uint64 // EvStart, EvStartLimit, EvExited: the wanted RestartGen
	Hash       string // EvStart: the definition being started

	PID   int           // EvStarted, EvMainPID
	Exit  ExitStatus    // EvExited
	Ran   time.Duration // EvExited: how long the process was up
	Text  string        // EvStatus, EvStartFailed, EvError
	Delay time.Duration // EvExtendTimeout
}

// EffectKind is what the loop must do after a step.
type EffectKind uint8

// Effect kinds.
const (
	EffStartProcess EffectKind = 1 // prepare and fork the unit's process, then feed EvStarted or EvStartFailed
	EffSendStop     EffectKind = 2 // the stop signal, or the IPC shutdown message (Drain)
	EffKill         EffectKind = 3 // SIGKILL the unit's process group
	EffRelease      EffectKind = 4 // the process is gone: end its group, close its channel and socket, release its leases
	EffPublish      EffectKind = 5 // publish Data (its type says the event's)
	EffIllegal      EffectKind = 6 // the event cannot happen in this phase; Text says why
)

func (k EffectKind) String() string {
	switch k {
	case EffStartProcess:
		return "start-process"
	case EffSendStop:
		return "send-stop"
	case EffKill:
		return "kill"
	case EffRelease:
		return "release"
	case EffPublish:
		return "publish"
	case EffIllegal:
		return "illegal"
	}
	return fmt.Sprintf("EffectKind(%d)", uint8(k))
}

// Effect is one thing the loop carries out.
type Effect struct {
	Kind  EffectKind
	PID   int           // EffPublish: the process the event is about
	Data  api.EventData // EffPublish: the event
	Drain bool          // EffSendStop
	Text  string        // EffIllegal
}

func publish(pid int, data api.EventData) Effect {
	return Effect{Kind: EffPublish, PID: pid, Data: data}
}

// Step is the unit's transition function: from the current lifecycle and an
// event, the next lifecycle and the effects the loop must carry out. It is
// pure: no I/O, no clock, and l is not changed (slices are copied).
func (l Lifecycle) Step(ev Event, now time.Time) (Lifecycle, []Effect) {
	n := l
	n.Starts = append([]time.Time(nil), l.Starts...)
	ph := l.Phase()
	running := ph == PhaseStarting || ph == PhaseRunning || ph == PhaseStopping
	illegal := func() (Lifecycle, []Effect) {
		return l, []Effect{{Kind: EffIllegal, Text: fmt.Sprintf("supervisor: %s in phase %s (%s %s) cannot happen", ev.Kind, ph, l.State, l.Sub)}}
	}
	ignore := func() (Lifecycle, []Effect) { return l, nil }

	switch ev.Kind {
	case EvStart:
		switch ph {
		case PhaseDead, PhaseFailed, PhaseExited, PhaseAutoRestart:
		default:
			return illegal()
		}
		if !l.RestartAt.IsZero() && l.Gen >= ev.Gen {
			n.Restarts++
		}
		if ev.Gen > l.Gen {
			n.Failures = 0
			n.Starts = nil
		}
		n.Gen, n.RestartGen = ev.Gen, ev.RestartGen
		n.resetRun()
		n.Starts = append(recentStarts(n.Starts, now, ev.Svc.StartLimitInterval), now)
		n.Hash = ev.Hash
		n.enter(Activating, "start", now)
		return n, []Effect{publish(0, api.UnitStarting{Reason: ev.Reason}), {Kind: EffStartProcess}}

	case EvStarted:
		if ph != PhaseLaunching {
			return illegal()
		}
		n.PID, n.Running, n.StartedAt, n.LastError = ev.PID, true, now, ""
		effs := []Effect{publish(ev.PID, api.UnitStarted{})}
		if ev.Svc.Type == unit.TypeSimple {
			return n.becomeReady(ev, now, effs)
		}
		if ev.Svc.StartTimeout > 0 {
			n.StartDeadline = now.Add(ev.Svc.StartTimeout)
		}
		return n, effs

	case EvStartFailed:
		if ph != PhaseLaunching {
			return illegal()
		}
		// A process that could not be started counts as a failed run
		// (systemd's 203/EXEC).
		n.LastError = ev.Text
		ev.Exit, ev.Ran = ExitStatus{Code: 203}, 0
		return n.afterExit(ev, now, nil)

	case EvReady:
		switch ph {
		case PhaseStarting:
			return n.becomeReady(ev, now, nil)
		case PhaseRunning, PhaseStopping:
			return ignore() // said again, or too late to matter
		}
		return illegal()

	case EvHeartbeat:
		switch ph {
		case PhaseRunning:
			if l.WatchdogDeadline.IsZero() || ev.Svc.Watchdog <= 0 {
				return ignore()
			}
			n.WatchdogDeadline = now.Add(ev.Svc.Watchdog)
			return n, nil
		case PhaseStarting, PhaseStopping:
			return ignore()
		}
		return illegal()

	case EvWatchdogTrigger:
		switch ph {
		case PhaseRunning:
			n.WatchdogDeadline = now
			return n, nil
		case PhaseStarting, PhaseStopping:
			return ignore()
		}
		return illegal()

	case EvStatus:
		if !running {
			return illegal()
		}
		n.StatusText = ev.Text
		return n, []Effect{publish(l.PID, api.UnitStatusText{Text: ev.Text})}

	case EvExtendTimeout:
		switch ph {
		case PhaseStarting:
			n.StartDeadline = now.Add(ev.Delay)
			return n, nil
		case PhaseStopping:
			if l.StopDeadline.IsZero() {
				return ignore() // a drain has no deadline to extend
			}
			n.StopDeadline = now.Add(ev.Delay)
			return n, nil
		case PhaseRunning:
			return ignore()
		}
		return illegal()

	case EvStoppingNotice:
		switch ph {
		case PhaseRunning:
			n.enter(Active, "stopping", now)
			return n, nil
		case PhaseStarting, PhaseStopping:
			return ignore()
		}
		return illegal()

	case EvMainPID:
		if !running {
			return illegal()
		}
		n.PID = ev.PID
		return n, nil

	case EvError:
		if !running {
			return illegal()
		}
		n.LastError = ev.Text
		return n, nil

	case EvChannelClosed:
		switch ph {
		case PhaseStarting, PhaseRunning:
			n.EOFDeadline = now.Add(EOFGrace)
			return n, []Effect{publish(l.PID, api.UnitIPCClosed{})}
		case PhaseStopping:
			return ignore() // it is on its way out
		}
		return illegal()

	case EvStop:
		switch ph {
		case PhaseDead, PhaseFailed:
			return ignore() // nothing runs; a failed unit stays failed until started
		case PhaseAutoRestart, PhaseExited:
			// Nothing runs: the pending restart is canceled, a oneshot's
			// success is over.
			n.RestartAt = time.Time{}
			n.Failures = 0
			n.StopReason = ev.Stop
			n.Settled = true
			n.enter(Inactive, "dead", now)
			return n, []Effect{publish(0, api.UnitStopped{Reason: ev.Stop.String()})}
		case PhaseStopping:
			if l.Drain && !ev.Drain {
				// A plain stop cuts a drain short: the stop deadline is
				// armed again, and SIGKILL follows it.
				n.Drain = false
				n.StopDeadline = now.Add(ev.Svc.StopTimeout)
				return n, []Effect{
					publish(l.PID, api.UnitStopping{Reason: "stop without drain"}),
					{Kind: EffSendStop},
				}
			}
			return ignore()
		case PhaseStarting, PhaseRunning:
			n.Stopping = true
			n.StopReason = ev.Stop
			n.Drain = ev.Drain && ev.Svc.Type == unit.TypeOrchestrator
			n.StopDeadline = now.Add(ev.Svc.StopTimeout)
			if !ev.StopBy.IsZero() && ev.StopBy.Before(n.StopDeadline) {
				n.StopDeadline, n.Drain = ev.StopBy, false
			}
			if n.Drain {
				n.StopDeadline = time.Time{} // the session finishes first
			}
			n.WatchdogDeadline = time.Time{}
			n.enter(Deactivating, "stop", now)
			return n, []Effect{
				publish(l.PID, api.UnitStopping{Reason: ev.Reason}),
				{Kind: EffSendStop, Drain: n.Drain},
			}
		}
		return illegal()

	case EvExited:
		switch ph {
		case PhaseStopping:
			st := ev.Exit
			sub := "dead"
			if l.Killed {
				sub = "timeout"
			}
			n.endRun(st)
			n.KillResult = ""
			n.Failures = 0
			if l.StopReason == StopRestart {
				n.RestartGen = ev.RestartGen
			}
			n.Result = "success"
			n.enter(Inactive, sub, now)
			return n, []Effect{
				{Kind: EffRelease},
				publish(l.PID, api.UnitStopped{Code: st.Code, Signal: st.Signal, Reason: l.StopReason.String()}),
			}
		case PhaseStarting, PhaseRunning:
			effs := []Effect{
				{Kind: EffRelease},
				publish(l.PID, api.UnitExited{Code: ev.Exit.Code, Signal: ev.Exit.Signal}),
			}
			return n.afterExit(ev, now, effs)
		}
		return illegal()

	case EvStartTimeout:
		if ph != PhaseStarting {
			return illegal()
		}
		return n.kill("timeout", "start timeout")

	case EvStopTimeout:
		if ph != PhaseStopping {
			return illegal()
		}
		return n.kill("", "stop timeout")

	case EvChannelTimeout:
		switch ph {
		case PhaseStarting, PhaseRunning:
			return n.kill("protocol", ReasonChannelClosed)
		}
		return illegal()

	case EvWatchdogTimeout:
		if ph != PhaseRunning {
			return illegal()
		}
		n.Killed, n.KillResult = true, "watchdog"
		n.WatchdogDeadline = time.Time{}
		return n, []Effect{
			publish(l.PID, api.UnitWatchdog{Reason: "watchdog timeout"}),
			{Kind: EffKill},
		}

	case EvStartLimit:
		switch ph {
		case PhaseDead, PhaseFailed, PhaseExited, PhaseAutoRestart:
		default:
			return illegal()
		}
		n.Settled = true
		n.Gen, n.RestartGen = ev.Gen, ev.RestartGen
		n.RestartAt = time.Time{}
		n.Result = ev.Reason
		n.enter(Failed, ev.Reason, now)
		return n, []Effect{publish(0, api.UnitFailed{Result: ev.Reason})}

	case EvBlocked:
		n.Blocked = ev.Reason
		return n, nil

	case EvResetFailed:
		// The start-limit count and the backoff go whatever the phase; a
		// failed unit becomes inactive, and is not started by it.
		n.Starts, n.Failures = nil, 0
		if ph == PhaseFailed {
			n.Result = ""
			n.enter(Inactive, "dead", now)
		}
		return n, nil
	}
	return illegal()
}

// enter moves to a state; Since changes with the state, not the sub-state.
func (l *Lifecycle) enter(st State, sub string, now time.Time) {
	if l.State != st {
		l.Since = now
	}
	l.State, l.Sub = st, sub
}

// resetRun clears every flag and deadline of a run, and what the last run
// left: the one place a new run starts clean.
func (l *Lifecycle) resetRun() {
	l.clearRun()
	l.Settled = false
	l.StopReason = StopNone
	l.Blocked, l.KillResult, l.StatusText = "", "", ""
}

// endRun records that the unit's process ended: no process, no flag or
// deadline of the run left.
func (l *Lifecycle) endRun(st ExitStatus) {
	l.Running, l.PID, l.Exit = false, 0, &st
	l.clearRun()
}

// clearRun clears the flags and deadlines of a run.
func (l *Lifecycle) clearRun() {
	l.Stopping, l.Killed, l.Drain = false, false, false
	l.RestartAt, l.StartDeadline, l.StopDeadline, l.WatchdogDeadline, l.EOFDeadline = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
}

func (l Lifecycle) becomeReady(ev Event, now time.Time, effs []Effect) (Lifecycle, []Effect) {
	l.StartDeadline = time.Time{}
	l.enter(Active, "running", now)
	if ev.Svc.Watchdog > 0 {
		l.WatchdogDeadline = now.Add(ev.Svc.Watchdog)
	}
	return l, append(effs, publish(l.PID, api.UnitReady{}))
}

func (l Lifecycle) kill(result, reason string) (Lifecycle, []Effect) {
	l.Killed = true
	if result != "" {
		l.KillResult = result
	}
	return l, []Effect{
		publish(l.PID, api.UnitKilled{Reason: reason}),
		{Kind: EffKill},
	}
}

// afterExit applies the restart policy to an exit nobody asked for.
func (l Lifecycle) afterExit(ev Event, now time.Time, effs []Effect) (Lifecycle, []Effect) {
	st := ev.Exit
	l.endRun(st)
	if !ev.Defined {
		l.KillResult = ""
		l.enter(Inactive, "dead", now)
		return l, effs
	}
	dec := OnExit(ev.Svc, st, ev.Ran, l.Failures, l.KillResult)
	l.Result = dec.Result
	l.Failures = dec.Failures
	l.KillResult = ""
	switch {
	case ev.Svc.Type == unit.TypeOneshot && dec.Result == "success":
		l.Settled = true
		l.enter(Active, "exited", now)
		effs = append(effs, publish(0, api.UnitReady{Result: "success"}))
	case dec.Restart && ev.Wanted:
		l.RestartAt = now.Add(dec.Delay)
		l.enter(Activating, "auto-restart", now)
		effs = append(effs, publish(0, api.UnitRestarting{DelayMS: dec.Delay.Milliseconds(), Result: dec.Result}))
	case dec.Failed || (dec.Restart && dec.Result != "success"):
		l.Settled = true
		l.enter(Failed, "failed", now)
		effs = append(effs, publish(0, api.UnitFailed{Result: dec.Result, Code: st.Code, Signal: st.Signal}))
	default:
		l.Settled = true
		l.enter(Inactive, "dead", now)
	}
	return l, effs
}

// recentStarts returns the starts inside the window (now-interval, now], in a
// new slice.
func recentStarts(starts []time.Time, now time.Time, interval time.Duration) []time.Time {
	var out []time.Time
	for _, t := range starts {
		if now.Sub(t) < interval {
			out = append(out, t)
		}
	}
	return out
}

package supervisor

import (
	"fmt"
	"sort"
	"time"

	"github.com/opsvc/opsvc/unit"
)

// Desired is what the operator and the unit files want of one unit.
type Desired struct {
	Unit *unit.Unit // last good definition; nil when the unit never loaded
	Want bool       // wanted running
	// StartGen is bumped by every explicit start: a unit whose last run is
	// over (exited with restart = "no", or failed) runs again only for a new
	// generation, like systemd's reset-failed + start.
	StartGen uint64
	// RestartGen is bumped by every explicit restart.
	RestartGen uint64
	// Drain asks a stop to let an orchestrator finish its session.
	Drain bool
	// Away says why a fleet unit may not run on this host now (another
	// host holds it, say); "" when it may.
	Away string
	// StopBy is when a fleet unit that may no longer run here must be gone
	// (its lease may expire then, and another host start it); zero = no bound.
	StopBy time.Time
}

// StopReason says why a unit is being stopped; it decides what happens after.
type StopReason uint8

// Stop reasons.
const (
	StopNone       StopReason = 0
	StopManual     StopReason = 1 // operator stop, or unit removed
	StopRestart    StopReason = 2 // operator restart
	StopChanged    StopReason = 3 // definition changed
	StopDependency StopReason = 4 // a required unit is stopped
)

func (r StopReason) String() string {
	switch r {
	case StopManual:
		return "stop"
	case StopRestart:
		return "restart"
	case StopChanged:
		return "definition changed"
	case StopDependency:
		return "dependency stopped"
	}
	return ""
}

// ReasonChannelClosed is why a worker that closed its IPC channel and did
// not exit is killed.
const ReasonChannelClosed = "ipc channel closed"

// EOFGrace is how long a worker may live on after closing its IPC channel.
const EOFGrace = time.Second

// ActionKind is what the loop must do.
type ActionKind uint8

// Action kinds.
const (
	ActStart    ActionKind = 1 // start the unit's process
	ActStop     ActionKind = 2 // send the stop request (signal or IPC shutdown)
	ActKill     ActionKind = 3 // SIGKILL the process group
	ActFail     ActionKind = 4 // give up: state failed
	ActBlock    ActionKind = 5 // record why a wanted unit waits
	ActForget   ActionKind = 6 // the unit is gone from the files and stopped
	ActWatchdog ActionKind = 7 // heartbeat missed: kill, then restart per policy
)

func (k ActionKind) String() string {
	switch k {
	case ActStart:
		return "start"
	case ActStop:
		return "stop"
	case ActKill:
		return "kill"
	case ActFail:
		return "fail"
	case ActBlock:
		return "block"
	case ActForget:
		return "forget"
	case ActWatchdog:
		return "watchdog"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one step of a plan, with the reason it is taken.
type Action struct {
	Kind   ActionKind
	Unit   string
	Reason string
	Stop   StopReason // for ActStop
}

// Plan compares what is wanted with what runs and says what to do now, and
// when to look again (zero time: no timer needed). It is pure: no I/O, no
// clock, no mutation of its arguments.
func Plan(desired map[string]Desired, observed map[string]Lifecycle, now time.Time) ([]Action, time.Time) {
	return PlanNames(PlanOrder(desired, observed), desired, observed, now)
}

// PlanOrder is every unit of desired and observed, sorted: the order Plan
// takes them in.
func PlanOrder(desired map[string]Desired, observed map[string]Lifecycle) []string {
	names := make([]string, 0, len(desired)+len(observed))
	for n := range desired {
		names = append(names, n)
	}
	for n := range observed {
		if _, ok := desired[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// PlanNames is Plan given PlanOrder(desired, observed), which a caller that
// plans again and again may keep while no unit comes or goes.
func PlanNames(names []string, desired map[string]Desired, observed map[string]Lifecycle, now time.Time) ([]Action, time.Time) {
	return planNames(names, desired, observed, now, planHooks{})
}

// planHooks let the loop plan a few units among many: it knows which units
// depend on which, and keeps each unit's next deadline.
type planHooks struct {
	// dependent names the first (by name) running unit that must stop
	// before name does, as runningDependents; nil: found from every unit.
	dependent func(name string) string
	// due is given each planned unit's next deadline (zero: none).
	due func(name string, t time.Time)
}

func planNames(names []string, desired map[string]Desired, observed map[string]Lifecycle, now time.Time, h planHooks) ([]Action, time.Time) {
	var (
		acts  []Action
		wake  time.Time
		uwake time.Time         // of the unit being planned
		rdeps map[string]string // made once, when a unit is to stop
	)
	at := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
		if !t.IsZero() && (uwake.IsZero() || t.Before(uwake)) {
			uwake = t
		}
	}
	if h.dependent == nil {
		h.dependent = func(name string) string {
			if rdeps == nil {
				rdeps = runningDependents(desired, observed)
			}
			return rdeps[name]
		}
	}
	if h.due != nil && len(names) > 0 {
		defer func() { h.due(names[len(names)-1], uwake) }()
	}
	for i, name := range names {
		if h.due != nil && i > 0 {
			h.due(names[i-1], uwake)
		}
		uwake = time.Time{}
		d, inDesired := desired[name]
		o, seen := observed[name]
		if !seen {
			o = Lifecycle{State: Inactive}
		}
		wanted := inDesired && d.Want && d.Unit != nil && d.Away == ""

		// Deadlines first: they apply whatever is wanted.
		if o.Running {
			switch {
			case o.Stopping && !o.Killed && !o.StopDeadline.IsZero():
				if !now.Before(o.StopDeadline) {
					acts = append(acts, Action{Kind: ActKill, Unit: name, Reason: "stop timeout"})
					continue
				}
				at(o.StopDeadline)
			case !o.Stopping && !o.EOFDeadline.IsZero():
				if !now.Before(o.EOFDeadline) {
					acts = append(acts, Action{Kind: ActKill, Unit: name, Reason: ReasonChannelClosed})
					continue
				}
				at(o.EOFDeadline)
			case !o.Stopping && o.State == Activating && !o.StartDeadline.IsZero():
				if !now.Before(o.StartDeadline) {
					acts = append(acts, Action{Kind: ActKill, Unit: name, Reason: "start timeout"})
					continue
				}
				at(o.StartDeadline)
			case !o.Stopping && o.State == Active && !o.WatchdogDeadline.IsZero():
				if !now.Before(o.WatchdogDeadline) {
					acts = append(acts, Action{Kind: ActWatchdog, Unit: name, Reason: "watchdog timeout"})
					continue
				}
				at(o.WatchdogDeadline)
			}
		}
		if o.Running && o.Stopping {
			continue // wait for the exit
		}

		if !wanted {
			if o.Running {
				// Stop only once nothing that runs after or requires it is running.
				if dep := h.dependent(name); dep != "" {
					acts = append(acts, Action{Kind: ActBlock, Unit: name, Reason: "stopping after " + dep})
					continue
				}
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: notWanted(d), Stop: StopManual})
				continue
			}
			if ph := o.Phase(); ph == PhaseAutoRestart || ph == PhaseExited {
				// Nothing runs, but the unit is not over: a pending restart
				// is canceled, a oneshot's success ends (as systemd does).
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "not wanted", Stop: StopManual})
				continue
			}
			if !inDesired && seen {
				acts = append(acts, Action{Kind: ActForget, Unit: name, Reason: "removed"})
			}
			continue
		}

		// Wanted.
		if o.Running {
			if req := stoppedRequirement(d.Unit, desired); req != "" {
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "required unit " + req + " is stopped", Stop: StopDependency})
				continue
			}
			if d.RestartGen > o.RestartGen {
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "restart requested", Stop: StopRestart})
				continue
			}
			if o.Hash != "" && o.Hash != d.Unit.Hash {
				acts = append(acts, Action{Kind: ActStop, Unit: name, Reason: "definition changed", Stop: StopChanged})
			}
			continue
		}

		// Wanted, not running.
		if o.Settled && o.Gen >= d.StartGen && o.RestartGen >= d.RestartGen {
			continue // over for this generation (failed, or exited for good)
		}
		if o.State == Active && o.Sub == "exited" && o.Hash == d.Unit.Hash && o.Gen >= d.StartGen && o.RestartGen >= d.RestartGen {
			continue // a oneshot that succeeded
		}
		if !o.RestartAt.IsZero() && now.Before(o.RestartAt) && o.Gen >= d.StartGen {
			at(o.RestartAt)
			continue
		}
		if why := waitingFor(d.Unit, desired, observed); why != "" {
			if o.Blocked != why {
				acts = append(acts, Action{Kind: ActBlock, Unit: name, Reason: why})
			}
			continue
		}
		svc := d.Unit.Service
		if svc.StartLimitBurst > 0 && svc.StartLimitInterval > 0 && o.Gen >= d.StartGen {
			n := StartsWithin(o.Starts, now, svc.StartLimitInterval)
			if n >= svc.StartLimitBurst {
				acts = append(acts, Action{Kind: ActFail, Unit: name, Reason: "start-limit-hit"})
				continue
			}
		}
		acts = append(acts, Action{Kind: ActStart, Unit: name, Reason: startReason(o, d)})
	}
	return acts, wake
}

// notWanted is why a unit that runs is stopped when it is not wanted.
func notWanted(d Desired) string {
	if d.Away != "" && d.Want {
		return d.Away
	}
	return "not wanted"
}

func startReason(o Lifecycle, d Desired) string {
	switch {
	case d.StartGen > o.Gen:
		return "start requested"
	case d.RestartGen > o.RestartGen:
		return "restart requested"
	case o.StopReason == StopChanged:
		return "definition changed"
	case !o.RestartAt.IsZero():
		return "auto-restart"
	}
	return "wanted"
}

// StartsWithin counts the starts inside the window (now-interval, now].
func StartsWithin(starts []time.Time, now time.Time, interval time.Duration) int {
	n := 0
	for _, t := range starts {
		if now.Sub(t) < interval {
			n++
		}
	}
	return n
}

// waitingFor says why a wanted unit cannot start yet: a requirement that is
// not ready, or an ordering predecessor still starting.
func waitingFor(u *unit.Unit, desired map[string]Desired, observed map[string]Lifecycle) string {
	for _, r := range u.Requires {
		d, ok := desired[r]
		if !ok || d.Unit == nil {
			return "requires " + r + ", which is not loaded"
		}
		o := observed[r]
		if o.State == Failed {
			return "requires " + r + ", which failed"
		}
		if !d.Want {
			return "requires " + r + ", which is stopped"
		}
		if o.State != Active {
			return "waiting for " + r + " to be ready"
		}
	}
	for _, a := range u.After {
		d, ok := desired[a]
		if !ok || !d.Want || d.Unit == nil {
			continue
		}
		if o := observed[a]; o.Blocked == "" && (o.State == Activating || ((o.State == Inactive || o.State == 0) && !o.Settled)) {
			return "after " + a + ", which is starting"
		}
	}
	return ""
}

// stoppedRequirement names a requirement of a running unit that the operator
// stopped or removed.
func stoppedRequirement(u *unit.Unit, desired map[string]Desired) string {
	for _, r := range u.Requires {
		if d, ok := desired[r]; !ok || !d.Want {
			return r
		}
	}
	return ""
}

// runningDependents maps each unit to the first (by name) running unit that
// must stop before it does: one that requires it (it is stopped too), or one
// ordered after it that is being stopped as well (shutdown). A unit that
// merely runs after another and stays wanted is not waited for. One pass
// over every unit: a stop of all of them is not a pass per unit.
func runningDependents(desired map[string]Desired, observed map[string]Lifecycle) map[string]string {
	out := make(map[string]string)
	add := func(of, dep string) {
		if cur, ok := out[of]; !ok || dep < cur {
			out[of] = dep
		}
	}
	for n, d := range desired {
		if d.Unit == nil || (len(d.Unit.Requires) == 0 && len(d.Unit.After) == 0) || !observed[n].Running {
			continue
		}
		for _, r := range d.Unit.Requires {
			add(r, n)
		}
		if !d.Want {
			for _, a := range d.Unit.After {
				add(a, n)
			}
		}
	}
	return out
}

// Backoff is the delay before the n-th consecutive restart (n ≥ 1): base
// doubled per failure, capped at max.
func Backoff(base, max time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n; i++ {
		d *= 2
		if max > 0 && d >= max {
			return max
		}
	}
	if max > 0 && d > max {
		return max
	}
	return d
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code   int    `json:"code"`   // exit code, or 128+signal when killed
	Signal string `json:"signal"` // "SIGKILL" when killed by a signal, else ""
}

// Decision is what to do after a process exited on its own.
type Decision struct {
	Restart  bool
	Delay    time.Duration
	Failures int    // consecutive failures after this exit
	Result   string // systemd's result word: success, exit-code, signal, timeout, watchdog
	Failed   bool   // the unit ends failed (no restart, and the exit was a failure)
}

// OnExit decides what follows an exit that nobody asked for. ran is how long
// the process was up; result is "" unless the loop killed it (timeout,
// watchdog).
func OnExit(svc unit.Service, st ExitStatus, ran time.Duration, failures int, result string) Decision {
	success := st.Signal == "" && containsInt(svc.SuccessExitStatus, st.Code) && result == ""
	if svc.Type == unit.TypeOneshot && success {
		return Decision{Result: "success"}
	}
	if result == "" {
		switch {
		case success:
			result = "success"
		case st.Signal != "":
			result = "signal"
		default:
			result = "exit-code"
		}
	}
	if svc.RestartDelayMax > 0 && ran > svc.RestartDelayMax {
		failures = 0 // a long, healthy run resets the backoff
	}
	restart := svc.Restart == unit.RestartAlways || (svc.Restart == unit.RestartOnFailure && !success)
	if !restart {
		return Decision{Result: result, Failed: !success, Failures: failures}
	}
	if success {
		// restart = "always" after a clean exit: the plain delay, no backoff.
		return Decision{Restart: true, Delay: svc.RestartDelay, Result: result}
	}
	failures++
	return Decision{Restart: true, Delay: Backoff(svc.RestartDelay, svc.RestartDelayMax, failures), Failures: failures, Result: result}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

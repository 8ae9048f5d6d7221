package api

import (
	"encoding/json"
	"fmt"
)

// Event types. Every event the daemon publishes has one of these types, or
// TypeWorkerPrefix followed by the name a worker gave its event.
const (
	TypeUnitStarting      = "unit.starting"
	TypeUnitStarted       = "unit.started"
	TypeUnitReady         = "unit.ready"
	TypeUnitStopping      = "unit.stopping"
	TypeUnitStopped       = "unit.stopped"
	TypeUnitExited        = "unit.exited"
	TypeUnitRestarting    = "unit.restarting"
	TypeUnitFailed        = "unit.failed"
	TypeUnitKilled        = "unit.killed"
	TypeUnitWatchdog      = "unit.watchdog"
	TypeUnitError         = "unit.error"
	TypeUnitStatus        = "unit.status"
	TypeUnitIPCError      = "unit.ipc_error"
	TypeUnitIPCClosed     = "unit.ipc_closed"
	TypeUnitNotifyRefused = "unit.notify_refused"

	TypeConfigLoaded   = "config.loaded"
	TypeConfigInvalid  = "config.invalid"
	TypeConfigSettings = "config.settings"

	TypeDaemonReady    = "daemon.ready"
	TypeDaemonStopping = "daemon.stopping"

	TypeAPIDenied      = "api.denied"
	TypeAPIStart       = "api.start"
	TypeAPIStop        = "api.stop"
	TypeAPIRestart     = "api.restart"
	TypeAPICommand     = "api.command"
	TypeAPIKill        = "api.kill"
	TypeAPIResetFailed = "api.reset-failed"
	TypeAPIEnable      = "api.enable"
	TypeAPIDisable     = "api.disable"

	TypeChainCreated     = "chain.created"
	TypeChainResumed     = "chain.resumed"
	TypeChainCompleted   = "chain.completed"
	TypeChainFailed      = "chain.failed"
	TypeChainInterrupted = "chain.interrupted"

	TypeSessionStarted  = "session.started"
	TypeSessionFinished = "session.finished"
	TypeSessionLease    = "session.lease"

	// TypeWorkerEvent is the type of a worker's event that has no name.
	TypeWorkerEvent = "worker.event"

	// TypeBusLagged ends the feed of a subscriber that fell behind. It is
	// never stored and has seq 0.
	TypeBusLagged       = "bus.lagged"
	TypeBusSuppressed   = "bus.suppressed"
	TypeDaemonDegraded  = "daemon.degraded"
	TypeDaemonRecovered = "daemon.recovered"
)

// TypeWorkerPrefix starts the type of an event a worker published:
// worker.NAME, NAME being the worker's name for it.
const TypeWorkerPrefix = "worker."

// EventData is the data of one event type.
type EventData interface {
	// EventType is the type of the events that carry this data.
	EventType() string
}

// Keys the bus may add to the data of any event whose data was too large:
// the data was cut to fit.
const (
	KeyTruncated     = "truncated"      // int: the size in bytes of the data before it was cut
	KeyTruncatedKeys = "truncated_keys" // []string: keys left out
)

// Map returns d as the JSON object an event carries in its data field (the
// form the bus stores). Data with no fields gives nil.
func Map(d EventData) map[string]any {
	b, err := json.Marshal(d)
	if err != nil {
		// Every EventData in this package marshals; a type from elsewhere
		// that does not is shown, not lost.
		return map[string]any{"error": fmt.Sprintf("event data %T: %v", d, err)}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || len(m) == 0 {
		return nil
	}
	return m
}

// Decode reads an event's data into d, a pointer to the type of its event.
func Decode(data map[string]any, d EventData) error {
	if len(data) == 0 {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("decode %T: %w", d, err)
	}
	if err := json.Unmarshal(b, d); err != nil {
		return fmt.Errorf("decode %T: %w", d, err)
	}
	return nil
}

// Caller is the local process whose request caused an event (SO_PEERCRED of
// the control socket; on Windows, the named pipe's client process and the
// user SID of its token).
type Caller struct {
	UID int    `json:"uid"`           // user id of the caller (-1 on Windows)
	PID int    `json:"pid"`           // process id of the caller
	SID string `json:"sid,omitempty"` // Windows: user SID of the caller
}

// UnitStarting: the daemon is about to start a unit's process.
type UnitStarting struct {
	Reason string `json:"reason"` // why it starts, in words
}

// UnitStarted: the unit's main process is running (event pid).
type UnitStarted struct{}

// UnitReady: the unit became active (started for simple units, READY=1 for
// notify, {"type":"ready"} for ipc, exited with success for oneshot).
type UnitReady struct {
	Result string `json:"result,omitempty"` // "success" for a oneshot that exited with success
}

// UnitStopping: the daemon asked the unit to stop.
type UnitStopping struct {
	Reason string `json:"reason"` // why, in words: "not wanted", "restart requested", "definition changed", …
}

// UnitStopped: a stop that was asked for has ended; the unit is inactive.
type UnitStopped struct {
	Code   int    `json:"code"`   // exit code, or 128+N when killed by signal N
	Signal string `json:"signal"` // the signal that ended it ("SIGKILL"), or ""
	Reason string `json:"reason"` // "stop", "restart", "definition changed" or "dependency stopped"
}

// UnitExited: the main process ended on its own (nobody asked it to stop).
type UnitExited struct {
	Code   int    `json:"code"`   // exit code, or 128+N when killed by signal N
	Signal string `json:"signal"` // the signal that ended it, or ""
}

// UnitRestarting: the unit will be started again after a delay.
type UnitRestarting struct {
	DelayMS int64  `json:"delay_ms"` // delay before the next start, in milliseconds
	Result  string `json:"result"`   // how the last run ended: "exit-code", "signal", "timeout", "watchdog", …
}

// UnitFailed: the unit entered the failed state.
type UnitFailed struct {
	Result string `json:"result"`           // why: "exit-code", "signal", "start-limit-hit", "timeout", …
	Code   int    `json:"code,omitempty"`   // exit code of the last run, when it exited
	Signal string `json:"signal,omitempty"` // signal of the last run, when killed
}

// UnitKilled: the daemon sent SIGKILL to the unit's process group.
type UnitKilled struct {
	Reason string `json:"reason"` // "stop timeout", "start timeout", "ipc channel closed"
}

// UnitWatchdog: the unit missed its heartbeat deadline.
type UnitWatchdog struct {
	Reason string `json:"reason"` // what was missed
}

// UnitError: the daemon could not do something for the unit (start it,
// signal it, …).
type UnitError struct {
	Error string `json:"error"` // what failed and why
}

// UnitStatusText: the unit reported a status line (sd_notify STATUS= or an
// IPC status message).
type UnitStatusText struct {
	Text string `json:"text"` // the status text, as shown by opsvc status
}

// UnitIPCError: a worker sent something on its IPC channel that is not a
// valid message.
type UnitIPCError struct {
	Error string `json:"error"` // what was wrong with it
	Coalesced
}

// UnitIPCClosed: a worker closed its IPC channel while running; it must
// exit, or it is killed.
type UnitIPCClosed struct{}

// UnitNotifyRefused: an sd_notify datagram for the unit was refused (event
// pid: the sender). Refusals are coalesced: one event per interval stands
// for the others.
type UnitNotifyRefused struct {
	Reason string `json:"reason"` // why it was refused
	Coalesced
}

// Coalesced is part of the data of the event types anyone can cause at will
// (unit.notify_refused, unit.ipc_error, api.denied): within an interval, the
// first is published and the last stands for the rest.
type Coalesced struct {
	Repeated int    `json:"repeated,omitempty"` // how many like it came after the first of the interval, this one included
	Interval string `json:"interval,omitempty"` // the interval, e.g. "10s"
}

// ConfigLoaded: the unit files were read (at start, on a change, on reload).
type ConfigLoaded struct {
	Reason  string   `json:"reason"`  // what caused the load: "start", "watch" (a file changed) or "request" (reload, SIGHUP)
	Changed []string `json:"changed"` // units whose effective definition changed
	Added   []string `json:"added"`   // new units
	Removed []string `json:"removed"` // units no longer defined
	Invalid int      `json:"invalid"` // how many units have an invalid definition
}

// ConfigInvalid: unit files could not be loaded. With a unit: that unit's
// file has problems (the last good definition stays); without one: the
// units directory itself could not be read.
type ConfigInvalid struct {
	Error    string   `json:"error,omitempty"`    // the directory's load error
	Problems []string `json:"problems,omitempty"` // the unit's problems, each FILE:LINE:COL: message
}

// ConfigSettings: the daemon settings were changed (PUT /v1/settings).
type ConfigSettings struct {
	Caller
}

// DaemonReady: the daemon finished its first reconcile.
type DaemonReady struct {
	Units int `json:"units"` // how many units it knows
}

// DaemonStopping: the daemon is shutting down and stopping every unit.
type DaemonStopping struct{}

// APIDenied: a request was refused before it reached a route.
type APIDenied struct {
	UID      int    `json:"uid,omitempty"`      // unix socket: the caller's uid
	PID      int    `json:"pid,omitempty"`      // unix socket: the caller's pid
	Remote   string `json:"remote,omitempty"`   // TCP: the peer's host:port
	Method   string `json:"method,omitempty"`   // the request's method
	Path     string `json:"path"`               // the request's path
	Status   int    `json:"status,omitempty"`   // the status answered: 401, 403, 503
	Reason   string `json:"reason,omitempty"`   // why: "uid not allowed", "no token", "bad token", "read-only", "cross-origin", …
	Repeated int    `json:"repeated,omitempty"` // refusals like it not reported since the last event
	Interval string `json:"interval,omitempty"` // unix socket: the interval over which they were counted
}

// APIStart: a client asked to start the unit.
type APIStart struct{ Caller }

// APIStop: a client asked to stop the unit.
type APIStop struct{ Caller }

// APIRestart: a client asked to restart the unit.
type APIRestart struct{ Caller }

// APICommand: a client sent a command to the unit's worker (opsvc send).
type APICommand struct {
	Command string `json:"command"` // the command's name
	Caller
}

// APIKill: a client sent a signal to the unit's processes (opsvc kill).
type APIKill struct {
	Signal string `json:"signal"` // its name, e.g. "SIGHUP"
	Main   bool   `json:"main"`   // to the main process only, not the whole group
	Caller
}

// APIResetFailed: a client made a failed unit inactive (opsvc reset-failed).
type APIResetFailed struct{ Caller }

// APIEnable: a client made the unit start with the daemon (opsvc enable).
type APIEnable struct{ Caller }

// APIDisable: a client made the unit no longer start with the daemon
// (opsvc disable).
type APIDisable struct{ Caller }

// ChainCreated: an orchestrator began a new chain.
type ChainCreated struct {
	ChainID string `json:"chain_id"` // the chain's id
	Task    string `json:"task,omitempty"`
}

// ChainResumed: an orchestrator continued an interrupted chain as a new one.
type ChainResumed struct {
	ChainID       string `json:"chain_id"`       // the new chain's id
	RestartedFrom string `json:"restarted_from"` // the chain it continues
}

// ChainEnd is the data of the events that end a chain.
type ChainEnd struct {
	ChainID string `json:"chain_id"`
	Status  string `json:"status"`           // the chain's final status: complete, failed, interrupted, exhausted, budget_exceeded
	Reason  string `json:"reason,omitempty"` // why it ended
}

// ChainCompleted: a chain ended (done, out of continuations, out of budget).
type ChainCompleted struct{ ChainEnd }

// ChainFailed: a chain ended failed (too many consecutive errors, …).
type ChainFailed struct{ ChainEnd }

// ChainInterrupted: a chain was cut off (its worker was stopped).
type ChainInterrupted struct{ ChainEnd }

// SessionStarted: an orchestrator started a session of a chain.
type SessionStarted struct {
	ChainID string `json:"chain_id"`
	Index   int    `json:"index"` // 0 for a chain's first session
}

// SessionFinished: a session ended and was recorded.
type SessionFinished struct {
	ChainID string  `json:"chain_id"`
	Index   int     `json:"index"`
	Status  string  `json:"status"`   // complete, error, interrupted
	Turns   int     `json:"turns"`    // agent turns used
	CostUSD float64 `json:"cost_usd"` // cost of the session
	Error   string  `json:"error"`    // what went wrong, or ""
}

// SessionLease: the daemon granted an orchestrator a session lease.
type SessionLease struct {
	LeaseID string `json:"lease_id"`
	ChainID string `json:"chain_id"`
}

// WorkerEvent: a worker published an event on its IPC channel; its type is
// worker.NAME (worker.event when it gave no name).
type WorkerEvent struct {
	Name string `json:"name"`           // the worker's name for the event
	Data any    `json:"data,omitempty"` // the worker's data, as it sent it
}

// BusSuppressed: one source (a unit, or the type of events of no unit) sent
// more events than the bus keeps; they were counted, not stored.
type BusSuppressed struct {
	Source   string `json:"source"`   // the unit, or the type of events of no unit
	Count    uint64 `json:"count"`    // events kept out in the interval
	Interval string `json:"interval"` // e.g. "10s"
	Hint     string `json:"hint"`
}

// DaemonDegraded: a part of the daemon cannot write to disk; the daemon
// keeps running. Sent even when it cannot be stored (then with seq 0).
type DaemonDegraded struct {
	Component string `json:"component"` // "events", "registry" or "logs"
	Error     string `json:"error"`     // the write error
	Hint      string `json:"hint"`
}

// DaemonRecovered: a part that could not write to disk can again.
type DaemonRecovered struct {
	Component string `json:"component"` // as in daemon.degraded
	Since     string `json:"since"`     // when the failure began, RFC 3339
}

// BusLagged: the subscriber fell behind and its feed ends here.
type BusLagged struct {
	DroppedAfter uint64 `json:"dropped_after"` // the last seq delivered: resume with since=DroppedAfter
}

func (UnitStarting) EventType() string      { return TypeUnitStarting }
func (UnitStarted) EventType() string       { return TypeUnitStarted }
func (UnitReady) EventType() string         { return TypeUnitReady }
func (UnitStopping) EventType() string      { return TypeUnitStopping }
func (UnitStopped) EventType() string       { return TypeUnitStopped }
func (UnitExited) EventType() string        { return TypeUnitExited }
func (UnitRestarting) EventType() string    { return TypeUnitRestarting }
func (UnitFailed) EventType() string        { return TypeUnitFailed }
func (UnitKilled) EventType() string        { return TypeUnitKilled }
func (UnitWatchdog) EventType() string      { return TypeUnitWatchdog }
func (UnitError) EventType() string         { return TypeUnitError }
func (UnitStatusText) EventType() string    { return TypeUnitStatus }
func (UnitIPCError) EventType() string      { return TypeUnitIPCError }
func (UnitIPCClosed) EventType() string     { return TypeUnitIPCClosed }
func (UnitNotifyRefused) EventType() string { return TypeUnitNotifyRefused }
func (ConfigLoaded) EventType() string      { return TypeConfigLoaded }
func (ConfigInvalid) EventType() string     { return TypeConfigInvalid }
func (ConfigSettings) EventType() string    { return TypeConfigSettings }
func (DaemonReady) EventType() string       { return TypeDaemonReady }
func (DaemonStopping) EventType() string    { return TypeDaemonStopping }
func (APIDenied) EventType() string         { return TypeAPIDenied }
func (APIStart) EventType() string          { return TypeAPIStart }
func (APIStop) EventType() string           { return TypeAPIStop }
func (APIRestart) EventType() string        { return TypeAPIRestart }
func (APICommand) EventType() string        { return TypeAPICommand }
func (APIKill) EventType() string           { return TypeAPIKill }
func (APIResetFailed) EventType() string    { return TypeAPIResetFailed }
func (APIEnable) EventType() string         { return TypeAPIEnable }
func (APIDisable) EventType() string        { return TypeAPIDisable }
func (ChainCreated) EventType() string      { return TypeChainCreated }
func (ChainResumed) EventType() string      { return TypeChainResumed }
func (ChainCompleted) EventType() string    { return TypeChainCompleted }
func (ChainFailed) EventType() string       { return TypeChainFailed }
func (ChainInterrupted) EventType() string  { return TypeChainInterrupted }
func (SessionStarted) EventType() string    { return TypeSessionStarted }
func (SessionFinished) EventType() string   { return TypeSessionFinished }
func (SessionLease) EventType() string      { return TypeSessionLease }
func (BusLagged) EventType() string         { return TypeBusLagged }
func (BusSuppressed) EventType() string     { return TypeBusSuppressed }
func (DaemonDegraded) EventType() string    { return TypeDaemonDegraded }
func (DaemonRecovered) EventType() string   { return TypeDaemonRecovered }

// EventType is worker.NAME, or worker.event for an event without a name.
func (e WorkerEvent) EventType() string {
	if e.Name == "" {
		return TypeWorkerEvent
	}
	return TypeWorkerPrefix + e.Name
}

// ForType returns a pointer to new, empty data of event type typ (for
// Decode), or nil for a type this package does not know.
func ForType(typ string) EventData {
	switch typ {
	case TypeUnitStarting:
		return &UnitStarting{}
	case TypeUnitStarted:
		return &UnitStarted{}
	case TypeUnitReady:
		return &UnitReady{}
	case TypeUnitStopping:
		return &UnitStopping{}
	case TypeUnitStopped:
		return &UnitStopped{}
	case TypeUnitExited:
		return &UnitExited{}
	case TypeUnitRestarting:
		return &UnitRestarting{}
	case TypeUnitFailed:
		return &UnitFailed{}
	case TypeUnitKilled:
		return &UnitKilled{}
	case TypeUnitWatchdog:
		return &UnitWatchdog{}
	case TypeUnitError:
		return &UnitError{}
	case TypeUnitStatus:
		return &UnitStatusText{}
	case TypeUnitIPCError:
		return &UnitIPCError{}
	case TypeUnitIPCClosed:
		return &UnitIPCClosed{}
	case TypeUnitNotifyRefused:
		return &UnitNotifyRefused{}
	case TypeConfigLoaded:
		return &ConfigLoaded{}
	case TypeConfigInvalid:
		return &ConfigInvalid{}
	case TypeConfigSettings:
		return &ConfigSettings{}
	case TypeDaemonReady:
		return &DaemonReady{}
	case TypeDaemonStopping:
		return &DaemonStopping{}
	case TypeAPIDenied:
		return &APIDenied{}
	case TypeAPIStart:
		return &APIStart{}
	case TypeAPIStop:
		return &APIStop{}
	case TypeAPIRestart:
		return &APIRestart{}
	case TypeAPICommand:
		return &APICommand{}
	case TypeAPIKill:
		return &APIKill{}
	case TypeAPIResetFailed:
		return &APIResetFailed{}
	case TypeAPIEnable:
		return &APIEnable{}
	case TypeAPIDisable:
		return &APIDisable{}
	case TypeAPIMove:
		return &APIMove{}
	case TypeChainCreated:
		return &ChainCreated{}
	case TypeChainResumed:
		return &ChainResumed{}
	case TypeChainCompleted:
		return &ChainCompleted{}
	case TypeChainFailed:
		return &ChainFailed{}
	case TypeChainInterrupted:
		return &ChainInterrupted{}
	case TypeSessionStarted:
		return &SessionStarted{}
	case TypeSessionFinished:
		return &SessionFinished{}
	case TypeSessionLease:
		return &SessionLease{}
	case TypeSessionProgress:
		return &SessionProgress{}
	case TypeBusLagged:
		return &BusLagged{}
	case TypeBusSuppressed:
		return &BusSuppressed{}
	case TypeDaemonDegraded:
		return &DaemonDegraded{}
	case TypeDaemonRecovered:
		return &DaemonRecovered{}
	case TypeDaemonReexec:
		return &DaemonReexec{}
	case TypeDaemonReexecRefused:
		return &DaemonReexecRefused{}
	case TypeDaemonResumed:
		return &DaemonResumed{}
	case TypeUnitAdoptFailed:
		return &UnitAdoptFailed{}
	}
	if len(typ) > len(TypeWorkerPrefix) && typ[:len(TypeWorkerPrefix)] == TypeWorkerPrefix {
		return &WorkerEvent{}
	}
	return nil
}

package api

import (
	"encoding/json"
	"time"

	"github.com/opsvc/opsvc/config"
)

// Error is the body of every answer that is not 2xx.
type Error struct {
	Message string `json:"error"` // what failed and why
	Hint    string `json:"hint"`  // what to do about it ("" when there is nothing to do)
	// Unit is the unit's status when a waiting start, stop or restart ended
	// without reaching its goal (409).
	Unit *UnitStatus `json:"unit,omitempty"`
}

// Error returns the message and, in parentheses, the hint.
func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Message
	}
	return e.Message + " (" + e.Hint + ")"
}

// ExitStatus is how a unit's last process ended.
type ExitStatus struct {
	Code   int    `json:"code"`   // exit code, or 128+N when killed by signal N
	Signal string `json:"signal"` // "SIGKILL" when killed by a signal, else ""
}

// UnitStatus is one unit: GET /v1/units/{name}, and the answer of start,
// stop and restart.
type UnitStatus struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Type        string      `json:"type,omitempty"` // simple, notify, ipc, oneshot, orchestrator
	State       State       `json:"state"`
	Sub         string      `json:"sub"`              // running, auto-restart, exited, dead, timeout, …
	PID         int         `json:"pid"`              // main process, 0 when none
	Since       time.Time   `json:"since"`            // when the state last changed
	Restarts    int         `json:"restarts"`         // automatic restarts so far
	Exit        *ExitStatus `json:"exit"`             // the last run's end, null before the first
	Result      string      `json:"result,omitempty"` // how the last run ended: success, exit-code, signal, …
	StatusText  string      `json:"status_text"`      // the unit's own status line
	Error       string      `json:"error"`            // the current load error of the unit's file, if any
	LastError   string      `json:"last_error,omitempty"`
	Blocked     string      `json:"blocked,omitempty"` // why it is not started: waiting for a dependency, …
	Wanted      bool        `json:"wanted"`            // whether the daemon means to run it
	Sources     []string    `json:"sources"`           // the unit's file and drop-ins, in order applied

	// Placement is "fleet" for a unit that runs on one host of the fleet;
	// Host is that host (where it runs, or is being started).
	Placement string `json:"placement,omitempty"`
	Host      string `json:"host,omitempty"`
}

// UnitList is GET /v1/units.
type UnitList struct {
	Units []UnitStatus `json:"units"`
	// Degraded says which parts of the daemon cannot write to disk (the
	// event log, the registry, the log files); empty when all can.
	Degraded string `json:"degraded,omitempty"`
}

// DefinitionEntry is one effective key of a unit and the file that set it.
type DefinitionEntry struct {
	Table  string `json:"table"` // "unit", "service", "orchestrator"
	Key    string `json:"key"`
	Value  string `json:"value"`  // the value as TOML
	Source string `json:"source"` // the file that set it, or "(default)"
}

// Definition is GET /v1/units/{name}/definition (opsvc cat).
type Definition struct {
	Name       string            `json:"name"`
	Definition []DefinitionEntry `json:"definition"`
}

// CommandRequest is the body of POST /v1/units/{name}/command (opsvc send).
type CommandRequest struct {
	Name string          `json:"name"`           // the command's name
	Args json.RawMessage `json:"args,omitempty"` // any JSON, passed to the worker as it is
}

// CommandResult is the answer of POST /v1/units/{name}/command.
type CommandResult struct {
	OK   bool            `json:"ok"`   // always true: an error reply is an Error with 502
	Data json.RawMessage `json:"data"` // the worker's reply data, null when it gave none
}

// OKResult is the answer of POST /v1/units/{name}/kill, POST /v1/units/{name}/reset-failed
// and POST /v1/reset-failed.
type OKResult struct {
	OK bool `json:"ok"` // always true: a refusal is an Error with a 4xx/5xx
}

// EnableResult is the answer of POST /v1/units/{name}/enable and POST /v1/units/{name}/disable.
type EnableResult struct {
	OK      bool `json:"ok"`      // always true
	Enabled bool `json:"enabled"` // the choice now kept: true after enable, false after disable
}

// EnabledResult is the answer of GET /v1/units/{name}/enabled.
type EnabledResult struct {
	Enabled bool   `json:"enabled"` // the unit starts with the daemon
	From    string `json:"from"`    // "choice" (enable/disable kept in the state directory) or "file" ([unit] enabled)
}

// LastSeqResult is the answer of GET /v1/events/last.
type LastSeqResult struct {
	Seq uint64 `json:"seq"` // the newest event's seq, 0 when none was ever stored
}

// ReloadResult is the answer of POST /v1/reload.
type ReloadResult struct {
	Changed []string `json:"changed"` // units whose effective definition changed (they restart)
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Message string   `json:"message"` // one line for people: "reloaded: 1 changed (web), …"
}

// Event is one line of GET /v1/events (NDJSON, or SSE data).
type Event struct {
	Seq  uint64         `json:"seq"`            // increases without gaps for the life of the state directory; 0 for bus.lagged
	Time time.Time      `json:"time"`           // RFC3339Nano
	Type string         `json:"type"`           // one of the Type constants, or worker.NAME
	Unit string         `json:"unit,omitempty"` // the unit it is about, if any
	PID  int            `json:"pid,omitempty"`  // the process it is about, if any
	Data map[string]any `json:"data,omitempty"` // the type's data (ForType, Decode)
}

// LogLine is one line of GET /v1/units/{name}/logs (NDJSON).
type LogLine struct {
	Time   time.Time         `json:"time"`
	Unit   string            `json:"unit"`   // "" for the daemon's own lines
	Stream string            `json:"stream"` // stdout, stderr or daemon
	Text   string            `json:"text"`
	PID    int               `json:"pid,omitempty"`
	Fields map[string]string `json:"fields,omitempty"` // extra journald fields, e.g. OPSVC_CHAIN_ID
}

// Settings is GET /v1/settings, and the body of PUT /v1/settings (only the
// fields to change need to be there) and of its answer.
type Settings = config.Settings

// Route is one route of the control API.
type Route struct {
	Method   string // GET, POST, PUT
	Path     string // with {name} or {id} for the variable part
	Request  string // the body's type in this package, "" for none
	Response string // the answer's type (NDJSON: one per line), as in docs/api.md
}

// Routes lists the control API's routes over the unix socket (the TCP
// listener serves the same ones).
func Routes() []Route {
	return []Route{
		{"GET", "/v1/units", "", "UnitList"},
		{"GET", "/v1/units/{name}", "", "UnitStatus"},
		{"GET", "/v1/units/{name}/definition", "", "Definition"},
		{"POST", "/v1/units/{name}/start", "", "UnitStatus"},
		{"POST", "/v1/units/{name}/stop", "", "UnitStatus"},
		{"POST", "/v1/units/{name}/restart", "", "UnitStatus"},
		{"POST", "/v1/units/{name}/command", "CommandRequest", "CommandResult"},
		{"POST", "/v1/units/{name}/move", "", "UnitStatus"},
		{"GET", "/v1/units/{name}/logs", "", "LogLine"},
		{"POST", "/v1/reload", "", "ReloadResult"},
		{"POST", "/v1/daemon/reexec", "", "ReexecReply"},
		{"POST", "/v1/daemon/handover", "HandoverRequest", "101 Switching Protocols, then the handover"},
		{"GET", "/v1/events", "", "Event"},
		{"GET", "/v1/chains", "", "{chains: [registry.ChainSummary]}"},
		{"GET", "/v1/chains/{id}", "", "registry.Chain"},
		{"GET", "/v1/chains/{id}/lineage", "", "{lineage: [registry.LineageEntry]}"},
		{"GET", "/v1/settings", "", "Settings"},
		{"PUT", "/v1/settings", "Settings", "Settings"},
	}
}

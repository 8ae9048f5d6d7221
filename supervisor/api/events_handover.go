package api

// Event types of a handover: a re-exec of the daemon, or a new daemon taking
// over from a running one, with the workers kept running.
const (
	TypeDaemonReexec        = "daemon.reexec"
	TypeDaemonReexecRefused = "daemon.reexec_refused"
	TypeDaemonResumed       = "daemon.resumed"
	TypeUnitAdoptFailed     = "unit.adopt_failed"
)

// DaemonReexec: the daemon hands its workers over to the binary at
// Executable, in place (same pid), or to a new daemon (Takeover).
type DaemonReexec struct {
	Executable string `json:"executable,omitempty"`
	Units      int    `json:"units"`
	Takeover   bool   `json:"takeover,omitempty"`
}

// DaemonReexecRefused: a handover did not happen; the daemon runs on as it
// was.
type DaemonReexecRefused struct {
	Executable string `json:"executable,omitempty"`
	Reason     string `json:"reason"`
}

// DaemonResumed: the daemon took over from the one before it (From, its
// pid; Seq, the last event it published). Adopted workers run on; Lost
// ones could not be taken over, each reported by unit.adopt_failed.
type DaemonResumed struct {
	From    int    `json:"from"`
	Seq     uint64 `json:"seq"`
	Adopted int    `json:"adopted"`
	Lost    int    `json:"lost"`
}

// UnitAdoptFailed: the unit's worker could not be taken over after a
// handover; its run ends, and the restart policy decides.
type UnitAdoptFailed struct {
	Reason string `json:"reason"`
}

func (DaemonReexec) EventType() string        { return TypeDaemonReexec }
func (DaemonReexecRefused) EventType() string { return TypeDaemonReexecRefused }
func (DaemonResumed) EventType() string       { return TypeDaemonResumed }
func (UnitAdoptFailed) EventType() string     { return TypeUnitAdoptFailed }

// ReexecReply is the answer to POST /v1/daemon/reexec once the new binary
// has accepted the state: the exec follows. Seq is the daemon.reexec event;
// the daemon.resumed event after it says the new process took over.
type ReexecReply struct {
	Message    string `json:"message"`
	Executable string `json:"executable"`
	Seq        uint64 `json:"seq"`
}

// HandoverRequest is the body of POST /v1/daemon/handover: a new daemon
// (opsvc daemon --replace) asks the running one to hand its workers over
// and exit. Version is the state record version the new daemon reads;
// State its state directory, which must be the running daemon's.
type HandoverRequest struct {
	Version    int    `json:"version"`
	State      string `json:"state"`
	Executable string `json:"executable,omitempty"`
}

// HandoverUpgrade is the protocol of the 101 Switching Protocols answer to
// POST /v1/daemon/handover: the state record and the files follow on the
// same connection (package handover's Send).
const HandoverUpgrade = "opsvc-handover"

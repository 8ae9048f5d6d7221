// Package handover carries a running daemon's state and open files over to
// the daemon that takes its place, so that its workers keep running: the
// same processes, read through the same pipes and sockets.
//
// A handover is two things:
//
//   - a Record: versioned JSON with the units, their lifecycle states,
//     desired state, restart counters and deadlines (absolute times), each
//     running worker's pid and process start time, what its output pipes and
//     IPC channel held unread, the leases and the day's spend, and the
//     counters that must go on (notify socket numbers, tracking runs);
//   - Files: open descriptors by name. A worker's are named FDName(UNIT,
//     KIND) with KIND one of KindStdout, KindStderr (the read ends of its
//     output pipes), KindIPC (the daemon's end of its channel) and
//     KindNotify (its notify socket); the daemon's own are NameControl (the
//     control socket listener), NameControlTCP (the console's listener).
//
// The new daemon gets them from one of two sources:
//
//   - re-exec (opsvc daemon-reexec, SIGUSR2): the old process writes the
//     record into an anonymous memory file (WriteMemfd), clears close-on-exec
//     on every file and records its number in Record.FDs (Inherit), puts
//     EnvFD=N in its environment and execs. The new process calls FromEnv,
//     which reads the record and gives back the files, close-on-exec again.
//   - a service manager's file descriptor store: the files come back as
//     LISTEN_FDS / LISTEN_FDNAMES (names as above) and the record from a
//     file (Read, Decode); the caller builds Files from them.
//
// Either way, the daemon passes the record and the files to
// supervisor.Options.Handover; the supervisor re-adopts each recorded worker
// that is still the same process (pid and start time), and ends what it
// cannot re-adopt. Files left unused are closed with Files.Close.
//
// A binary that cannot read a record refuses it with an error from Decode
// (Version says which version this binary writes and reads); `opsvc daemon
// --check-state FILE` runs exactly that check.
package handover

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Version is the record version this binary writes; Decode reads it and no
// other.
const Version = 1

// MaxRecordBytes bounds a record read back.
const MaxRecordBytes = 256 << 20

// EnvFD names the environment variable that holds the descriptor number of
// the memory file with the record, on a re-exec.
const EnvFD = "OPSVC_HANDOVER_FD"

// Kinds of a worker's files.
const (
	KindStdout = "stdout"
	KindStderr = "stderr"
	KindIPC    = "ipc"
	KindNotify = "notify"
)

// Names of the daemon's own files.
const (
	NameControl    = "control"
	NameControlTCP = "control-tcp"
)

// FDName names a worker's file: "UNIT:KIND".
func FDName(unit, kind string) string { return unit + ":" + kind }

// SplitFDName is the inverse of FDName; ok is false for the daemon's own
// names.
func SplitFDName(name string) (unit, kind string, ok bool) {
	i := strings.LastIndexByte(name, ':')
	if i <= 0 {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}

// Record is the state handed over.
type Record struct {
	Version int       `json:"version"`
	Written time.Time `json:"written"`
	PID     int       `json:"pid"` // the daemon that wrote it
	// Seq is the last event seq published before the handover.
	Seq uint64 `json:"seq"`
	// NotifyN numbers the per-unit notify sockets made so far.
	NotifyN int `json:"notify_n"`
	// TrackSeq numbers the tracked runs so far.
	TrackSeq uint64 `json:"track_seq"`
	// Instances are template instances started by name.
	Instances []string `json:"instances,omitempty"`
	Leases    Leases   `json:"leases"`
	Units     []Unit   `json:"units"`
	// FDs maps a file's name to its descriptor number in the process that
	// reads the record (re-exec only).
	FDs map[string]int `json:"fds,omitempty"`
	// Lifecycles, when set, holds the lifecycles of the units that are
	// Observed, in their order, in one block of the supervisor's binary
	// form: a record written by EncodeBinary for a re-exec or a --replace.
	Lifecycles []byte `json:"lifecycles,omitempty"`
}

// Unit is one unit's desired and observed state.
type Unit struct {
	Name       string `json:"name"`
	Want       bool   `json:"want"`
	StartGen   uint64 `json:"start_gen"`
	RestartGen uint64 `json:"restart_gen"`
	Drain      bool   `json:"drain,omitempty"`
	// Lifecycle is the unit's lifecycle as the supervisor keeps it (states,
	// flags, counters, deadlines as absolute times), in JSON. In a record
	// with Record.Lifecycles it is empty and Observed says whether the unit
	// has one there.
	Lifecycle json.RawMessage `json:"lifecycle,omitempty"`
	Observed  bool            `json:"observed,omitempty"`
	// Proc is the unit's running process, nil when none runs.
	Proc *Proc `json:"proc,omitempty"`
}

// Proc is a running worker.
type Proc struct {
	PID int `json:"pid"`
	// Start is the process start time (clock ticks after boot, field 22 of
	// /proc/PID/stat): with PID, it tells the same process from a later
	// one with a reused pid.
	Start  uint64 `json:"start"`
	Marker string `json:"marker,omitempty"` // the tracking marker of its run
	// Child is set for a child of the daemon that wrote the record (not a
	// worker it took over from a daemon that ended, which it watched
	// through a pidfd).
	Child  bool   `json:"child,omitempty"`
	Cgroup string `json:"cgroup,omitempty"` // the run's cgroup, "" = none
	// Stdout and Stderr are a started line read from each pipe but not
	// yet ended; Cut counts bytes of it dropped past the line limit.
	Stdout    Pending `json:"stdout"`
	Stderr    Pending `json:"stderr"`
	IPC       bool    `json:"ipc,omitempty"`
	IPCUnread []byte  `json:"ipc_unread,omitempty"` // read from the channel, not yet a whole message
	Notify    string  `json:"notify,omitempty"`     // the NOTIFY_SOCKET address it was given
	// Fields are the extra journal fields of its output (a session).
	Fields map[string]string `json:"fields,omitempty"`
}

// Pending is a partial output line.
type Pending struct {
	Data []byte `json:"data,omitempty"`
	Cut  int    `json:"cut,omitempty"`
}

// Leases are the orchestrators' leases and the day's spend.
type Leases struct {
	Active  []Lease            `json:"active,omitempty"`
	Starts  []time.Time        `json:"starts,omitempty"`
	Day     string             `json:"day,omitempty"`
	Spent   float64            `json:"spent,omitempty"`
	ByUnit  map[string]float64 `json:"by_unit,omitempty"`
	NextID  int                `json:"next_id,omitempty"`
	Waiting []string           `json:"waiting,omitempty"`
}

// Lease is one granted session lease.
type Lease struct {
	ID      string    `json:"id"`
	Unit    string    `json:"unit"`
	ChainID string    `json:"chain_id,omitempty"`
	Granted time.Time `json:"granted"`
}

// Encode returns the record as JSON, with Version set.
func Encode(r *Record) ([]byte, error) {
	r.Version = Version
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("handover: encode the state record: %w", err)
	}
	return b, nil
}

// binaryMagic begins a record in binary form.
const binaryMagic = "opsvc state record, gob\n"

// EncodeBinary returns the record in binary form (gob after a short
// header), with Version set: what a re-exec or a --replace hands over,
// several times quicker to write and to read than JSON at a thousand units.
// Decode reads either form. The binary form is read only from the daemon
// before (over the control socket, or in this very process); the file a
// service manager's restart reads is JSON.
func EncodeBinary(r *Record) ([]byte, error) {
	r.Version = Version
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	buf.WriteString(binaryMagic)
	if err := gob.NewEncoder(&buf).Encode(r); err != nil {
		return nil, fmt.Errorf("handover: encode the state record: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode reads a record of this binary's Version, in either form (Encode,
// EncodeBinary). A record of this version is read in one pass; the version
// is looked at on its own only when that fails or shows another version.
func Decode(b []byte) (*Record, error) {
	if rest, ok := bytes.CutPrefix(b, []byte(binaryMagic)); ok {
		return decodeBinary(rest)
	}
	var r Record
	err := json.Unmarshal(b, &r)
	if err == nil && r.Version == Version {
		return &r, nil
	}
	var head struct {
		Version *int `json:"version"`
	}
	if herr := json.Unmarshal(b, &head); herr != nil {
		return nil, fmt.Errorf("handover: the state record is not JSON: %v (the daemon that wrote it is broken; restart it with opsvc daemon)", herr)
	}
	switch {
	case head.Version == nil:
		return nil, errors.New("handover: the state record has no version (it was not written by opsvc)")
	case *head.Version != Version:
		return nil, fmt.Errorf("handover: the state record is version %d, this binary reads version %d (install a binary that reads it, or stop and start the daemon instead)", *head.Version, Version)
	}
	return nil, fmt.Errorf("handover: decode the state record: %v", err)
}

func decodeBinary(b []byte) (*Record, error) {
	var r Record
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		return nil, fmt.Errorf("handover: the state record is damaged: %v (the daemon that wrote it is broken; restart it with opsvc daemon)", err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("handover: the state record is version %d, this binary reads version %d (install a binary that reads it, or stop and start the daemon instead)", r.Version, Version)
	}
	if r.Units == nil {
		r.Units = []Unit{}
	}
	return &r, nil
}

// Read reads and decodes a record from r, at most MaxRecordBytes of it.
func Read(r io.Reader) (*Record, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("handover: read the state record: %w", err)
	}
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("handover: the state record is over %d bytes", MaxRecordBytes)
	}
	return Decode(b)
}

// Check reads the record in the file at path: what `opsvc daemon
// --check-state` does.
func Check(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Files are open files by name.
type Files map[string]*os.File

// Take removes the file named name and returns it, nil if there is none.
func (fs Files) Take(name string) *os.File {
	f := fs[name]
	delete(fs, name)
	return f
}

// Names lists the names, sorted.
func (fs Files) Names() []string {
	out := make([]string, 0, len(fs))
	for n := range fs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Close closes every file left and empties fs.
func (fs Files) Close() {
	for n, f := range fs {
		f.Close()
		delete(fs, n)
	}
}

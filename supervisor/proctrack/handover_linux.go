package proctrack

import (
	"os"
	"strconv"
	"strings"
)

// Keep is a run handed over by the daemon before this one on the same state
// directory (a re-exec or a takeover): its processes keep running.
type Keep struct {
	Unit   string
	Marker string
	PID    int
	Start  uint64 // the main process's start time, as StartTime reads it
	Cgroup string // "" = none
	// Child is set when the main process is this process's child (a
	// re-exec): until this process reaps it, its pid is not another
	// process's, and the check for leftovers does not read it.
	Child bool
}

// keep tracks the handed-over runs, before Sweep.
func (t *Tracker) keep(ks []Keep) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range ks {
		if k.Marker == "" || !strings.HasPrefix(k.Marker, t.key+":") {
			continue
		}
		if i := strings.LastIndexByte(k.Marker, ':'); i >= 0 {
			if n, err := strconv.ParseUint(k.Marker[i+1:], 10, 64); err == nil && n > t.seq {
				t.seq = n
			}
		}
		t.runs[k.Marker] = &Run{t: t, unit: k.Unit, marker: k.Marker, dir: k.Cgroup, fd: -1, pid: k.PID, start: k.Start}
	}
}

func (t *Tracker) kept(marker string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[marker] != nil
}

// Adopted returns the handed-over run with this marker (Options.Keep), nil
// if there is none. A main process that is this process's child (a re-exec
// keeps them) is reaped by it like one it started, so from here on it is
// known by its pid; call Exited when it is reaped. With child set the caller
// knows the main process is its child and not reaped yet (no reaper runs
// until it is registered), so it is that process and /proc is not read;
// otherwise /proc says whether it is.
func (t *Tracker) Adopted(marker string, child bool) *Run {
	t.mu.Lock()
	r := t.runs[marker]
	t.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	pid, start := r.pid, r.start
	r.mu.Unlock()
	if pid <= 0 {
		return r
	}
	if child {
		t.knowMain(marker, r, pid)
	} else if st, ok := statOf(pid); ok && st.ppid == os.Getpid() && st.start == start && st.state != 'Z' && st.state != 'X' {
		t.knowMain(marker, r, pid)
	}
	return r
}

// knowMain makes pid known as the run's main process.
func (t *Tracker) knowMain(marker string, r *Run, pid int) {
	t.mu.Lock()
	r.mu.Lock()
	if t.runs[marker] == r && !r.exited && !r.ended {
		t.mains[pid] = r
	}
	r.mu.Unlock()
	t.mu.Unlock()
}

// Marker is the run's marker.
func (r *Run) Marker() string { return r.marker }

// Start is the main process's start time.
func (r *Run) Start() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.start
}

// StartTime reads a process's start time (clock ticks after boot) and its
// parent's pid from /proc; a zombie still has them. ok is false for a
// process that is gone.
func StartTime(pid int) (start uint64, ppid int, ok bool) {
	st, ok := statOf(pid)
	if !ok {
		return 0, 0, false
	}
	return st.start, st.ppid, true
}

// Zombie reports whether pid has ended and waits to be reaped (state Z in
// /proc/PID/stat); false when it runs or cannot be read.
func Zombie(pid int) bool {
	st, ok := statOf(pid)
	return ok && st.state == 'Z'
}

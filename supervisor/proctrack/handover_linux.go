package proctrack

import (
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
// if there is none.
func (t *Tracker) Adopted(marker string) *Run {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[marker]
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
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return 0, 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, false
	}
	pp, err1 := strconv.Atoi(f[1])
	st, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return st, pp, true
}

// Zombie reports whether pid has ended and waits to be reaped (state Z in
// /proc/PID/stat); false when it runs or cannot be read.
func Zombie(pid int) bool {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] == "Z"
}

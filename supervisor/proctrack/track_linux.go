package proctrack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor/api"
)

// MarkerVar is set in every worker's environment to "KEY:UNIT:RUN", where
// KEY names the state directory; children inherit it.
const MarkerVar = "OPSVC_TRACK"

// RecordName is the record of running units' processes in the state
// directory.
const RecordName = "procs.json"

// killWait bounds how long ending a unit's leftovers waits for them to go.
const killWait = 5 * time.Second

// Options configure a Tracker.
type Options struct {
	// StateDir holds the record; its path also names the cgroup sub-tree.
	StateDir string
	// Publish reports unit.escaped and daemon.leftovers; nil = none.
	Publish func(unit string, data api.EventData)
	// Logf reports problems; nil = none.
	Logf func(format string, args ...any)
	// NoCgroup uses process groups and the record even where a cgroup
	// could be created.
	NoCgroup bool
	// Keep are runs handed over by the daemon before this one: tracked
	// again as they are, and left alone by Sweep (see Adopted).
	Keep []Keep
}

// Tracker tracks the processes of every run of every unit.
type Tracker struct {
	opts   Options
	key    string
	base   string // this state directory's cgroup; "" = process groups only
	reason string // why base is ""
	path   string

	mu      sync.Mutex
	runs    map[string]*Run // by marker
	mains   map[int]*Run    // by main pid, of runs whose main process is this process's unreaped child
	changes []recordLine    // to the record since its last write
	seq     uint64
	closed  bool

	saveMu sync.Mutex
	file   recordFile

	dirty chan struct{}
	stop  chan struct{}
	done  chan struct{}
	bg    sync.WaitGroup

	scanMu   sync.Mutex
	pending  []scanReq
	scanWake chan struct{}
	scanDone chan struct{}
}

// Open starts tracking for a state directory. Call Sweep before starting
// anything.
func Open(opts Options) (*Tracker, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	dir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(dir))
	t := &Tracker{
		opts:     opts,
		key:      hex.EncodeToString(sum[:6]),
		path:     filepath.Join(dir, RecordName),
		runs:     make(map[string]*Run),
		mains:    make(map[int]*Run),
		dirty:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		scanWake: make(chan struct{}, 1),
		scanDone: make(chan struct{}),
	}
	if opts.NoCgroup {
		t.reason = "cgroups turned off"
	} else if base, err := t.makeBase(); err != nil {
		t.reason = err.Error()
	} else {
		t.base = base
	}
	t.keep(opts.Keep)
	go t.flusher()
	go t.scanner()
	return t, nil
}

// makeBase creates the cgroup for this state directory below the daemon's
// own, and checks that processes can be moved into it.
func (t *Tracker) makeBase() (string, error) {
	own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	base := filepath.Join(own, "opsvc-"+t.key)
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("create cgroup %s: %w", base, err)
	}
	if err := unix.Access(filepath.Join(base, "cgroup.procs"), unix.W_OK); err != nil {
		return "", fmt.Errorf("cgroup %s is not writable: %w", base, err)
	}
	return base, nil
}

// Cgroup is the cgroup that holds the units' cgroups, or "" with the reason
// when processes are tracked by process group and record only.
func (t *Tracker) Cgroup() (dir, reason string) { return t.base, t.reason }

// Run is one run of a unit: its main process and everything it starts.
type Run struct {
	t      *Tracker
	unit   string
	marker string
	dir    string // the run's cgroup, "" = none
	fd     int

	mu       sync.Mutex
	pid      int
	start    uint64
	exited   bool
	ended    bool
	reported map[int]bool // escaped pids already reported
}

// Begin prepares a run of a unit before its fork: Env is added to the
// worker's environment, and CgroupFD (when not -1) is the cgroup to fork
// into.
func (t *Tracker) Begin(unitName string) *Run {
	t.mu.Lock()
	t.seq++
	seq := t.seq
	t.mu.Unlock()
	r := &Run{t: t, unit: unitName, marker: t.key + ":" + unitName + ":" + strconv.FormatUint(seq, 10), fd: -1}
	if t.base != "" {
		dir := filepath.Join(t.base, "u-"+strings.ReplaceAll(unitName, "/", "_")+"."+strconv.FormatUint(seq, 10))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			t.opts.Logf("%s: create cgroup %s: %v (tracking this run by process group)", unitName, dir, err)
			return r
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.opts.Logf("%s: open cgroup %s: %v (tracking this run by process group)", unitName, dir, err)
			unix.Rmdir(dir)
			return r
		}
		r.dir, r.fd = dir, fd
	}
	return r
}

// Env is the marker variable for the worker's environment.
func (r *Run) Env() string { return MarkerVar + "=" + r.marker }

// CgroupFD is the cgroup directory to fork into, or -1.
func (r *Run) CgroupFD() int { return r.fd }

// Cgroup is the run's cgroup directory, "" if it has none.
func (r *Run) Cgroup() string { return r.dir }

// Moved records that the process was put into the run's cgroup after the
// fork, not by it (a kernel without clone into a cgroup).
func (r *Run) Moved(pid int) error {
	if r.dir == "" {
		return nil
	}
	return os.WriteFile(filepath.Join(r.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// Started records the forked main process.
func (r *Run) Started(pid int) {
	r.closeFD()
	info, _ := readStat(pid)
	r.mu.Lock()
	r.pid, r.start = pid, info.start
	r.mu.Unlock()
	t := r.t
	t.mu.Lock()
	if !t.closed {
		t.runs[r.marker] = r
		t.mains[pid] = r
		rec := r.record()
		t.changes = append(t.changes, recordLine{Add: &rec})
	}
	t.mu.Unlock()
	t.markDirty()
}

// Failed undoes Begin after a failed fork.
func (r *Run) Failed() {
	r.closeFD()
	if r.dir != "" {
		unix.Rmdir(r.dir)
	}
}

func (r *Run) closeFD() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// Exited records that the main process was reaped; the next SIGKILL ends
// the run.
func (r *Run) Exited() {
	r.mu.Lock()
	r.exited = true
	pid := r.pid
	r.mu.Unlock()
	r.t.forgetMain(pid, r)
}

// forgetMain drops a main process that was reaped: its pid may be reused.
func (t *Tracker) forgetMain(pid int, r *Run) {
	t.mu.Lock()
	if t.mains[pid] == r {
		delete(t.mains, pid)
	}
	t.mu.Unlock()
}

// Signal sends sig to every process of the run: the cgroup's members, or the
// process group and any process that left it. SIGKILL after the main
// process exited ends the run: it is dropped from the record and its cgroup
// removed, and processes that had left the group are reported.
func (r *Run) Signal(sig syscall.Signal) {
	r.mu.Lock()
	pid, exited, ended := r.pid, r.exited, r.ended
	if sig == syscall.SIGKILL && exited {
		r.ended = true
	}
	r.mu.Unlock()
	if ended || pid <= 0 {
		return
	}
	end := sig == syscall.SIGKILL && exited
	if r.dir != "" {
		escaped := r.outsideGroup(allCgroupProcs(r.dir))
		if sig == syscall.SIGKILL {
			killCgroup(r.dir)
		} else {
			signalCgroup(r.dir, sig)
		}
		r.reportEscaped(escaped, "cgroup")
		if sig == syscall.SIGKILL {
			// A privileged worker can move itself out of its cgroup; its
			// marker still names the run.
			r.t.queueScan(scanReq{run: r, sig: sig, end: end})
		} else if end {
			r.finish()
		}
		return
	}
	kill(-pid, sig)
	// Processes that left the group are found by their marker, reading
	// /proc: off the caller's goroutine, one pass for every run asking.
	r.t.queueScan(scanReq{run: r, sig: sig, end: end})
}

// scanReq asks the scanner to signal a run's processes outside its group.
type scanReq struct {
	run   *Run
	sig   syscall.Signal
	end   bool
	round int
}

// scanRounds bounds how often a SIGKILL scan is repeated while it still
// finds processes (forks in flight).
const scanRounds = 5

func (t *Tracker) queueScan(q scanReq) {
	t.bg.Add(1)
	t.scanMu.Lock()
	t.pending = append(t.pending, q)
	t.scanMu.Unlock()
	select {
	case t.scanWake <- struct{}{}:
	default:
	}
}

// scanPace spaces passes over /proc: after a pass that took d, the next
// begins no sooner than scanPace×d later, and the requests queued meanwhile
// share it. A pass reads every process's environment, so with thousands of
// processes and units restarting all the time, back-to-back passes would
// take a CPU; paced, they take at most 1/(1+scanPace) of one.
const scanPace = 9

// scanner serves queued scans, all of a burst in one pass over /proc.
func (t *Tracker) scanner() {
	defer close(t.scanDone)
	var next time.Time // the earliest start of the next pass
	var pr procReader
	for {
		select {
		case <-t.scanWake:
		case <-t.stop:
			return
		}
		for {
			if d := time.Until(next); d > 0 {
				pause := time.NewTimer(d)
				select {
				case <-pause.C:
				case <-t.stop:
					pause.Stop()
					return
				}
			}
			t.scanMu.Lock()
			batch := t.pending
			t.pending = nil
			t.scanMu.Unlock()
			if len(batch) == 0 {
				break
			}
			began := time.Now()
			want := make(map[string]bool, len(batch))
			for _, q := range batch {
				want[q.run.marker] = true
			}
			found := make(map[string][]procInfo)
			for _, p := range t.scanMarker(&pr, want) {
				found[p.marker] = append(found[p.marker], p.procInfo)
			}
			next = time.Now().Add(scanPace * time.Since(began))
			for _, q := range batch {
				t.serveScan(q, found[q.run.marker])
			}
		}
	}
}

func (t *Tracker) serveScan(q scanReq, procs []procInfo) {
	defer t.bg.Done()
	r := q.run
	var escaped []int
	for _, p := range procs {
		if p.pgid == r.pid {
			continue // the group was signalled as a whole
		}
		kill(p.pid, q.sig)
		escaped = append(escaped, p.pid)
	}
	r.reportEscaped(escaped, "environment")
	if q.sig == syscall.SIGKILL && len(escaped) > 0 && q.round < scanRounds {
		q.round++
		t.queueScan(q)
		return
	}
	if q.end {
		r.finish()
	}
}

// outsideGroup picks the pids not in the run's process group.
func (r *Run) outsideGroup(pids []int) []int {
	var out []int
	for _, p := range pids {
		if info, ok := readStat(p); ok && info.pgid != r.pid {
			out = append(out, p)
		}
	}
	return out
}

// reportEscaped publishes unit.escaped for pids not reported before.
func (r *Run) reportEscaped(found []int, how string) {
	r.mu.Lock()
	var pids []int
	for _, p := range found {
		if !r.reported[p] {
			if r.reported == nil {
				r.reported = make(map[int]bool)
			}
			r.reported[p] = true
			pids = append(pids, p)
		}
	}
	r.mu.Unlock()
	if len(pids) == 0 || r.t.opts.Publish == nil {
		return
	}
	slices.Sort(pids)
	r.t.opts.Publish(r.unit, api.UnitEscaped{
		PIDs: capPIDs(pids), Count: len(pids), FoundBy: how,
		Reason: "processes had left the unit's process group; they are signalled and ended with it",
	})
}

// finish drops an ended run from the record and removes its cgroup.
func (r *Run) finish() {
	t := r.t
	r.mu.Lock()
	pid := r.pid
	r.mu.Unlock()
	t.mu.Lock()
	if t.mains[pid] == r {
		delete(t.mains, pid)
	}
	if t.runs[r.marker] == r {
		delete(t.runs, r.marker)
		t.changes = append(t.changes, recordLine{End: r.marker})
	}
	t.mu.Unlock()
	t.markDirty()
	if r.dir == "" {
		return
	}
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		if err := removeCgroup(r.dir, time.Now().Add(killWait)); err != nil {
			t.opts.Logf("%s: %v", r.unit, err)
		}
	}()
}

type markedProc struct {
	procInfo
	marker string
}

// scanMarker lists the running processes whose marker is wanted.
//
// The main process of a run that is neither reaped nor wanted is known
// without reading anything: it carries its own run's marker, and its pid
// cannot be reused before the reaper waits for it. A pid whose run was
// reaped while the pass went on is read after all, at the end.
func (t *Tracker) scanMarker(pr *procReader, want map[string]bool) []markedProc {
	var out []markedProc
	look := func(pid int) {
		m := pr.marker(pid)
		if m == nil || !want[string(m)] {
			return
		}
		if info, ok := readStat(pid); ok {
			out = append(out, markedProc{info, string(m)})
		}
	}
	pr.known = pr.known[:0]
	for i, pid := range pr.list() {
		if i%yieldEvery == yieldEvery-1 {
			// A pass is background work: with thousands of processes
			// it would hold a CPU of the Go scheduler for many
			// milliseconds, and an exit or a fork waiting for one would
			// wait for its preemption.
			runtime.Gosched()
		}
		t.mu.Lock()
		r := t.mains[pid]
		known := r != nil && !want[r.marker]
		t.mu.Unlock()
		if known {
			pr.known = append(pr.known, knownPID{pid, r})
			continue
		}
		look(pid)
	}
	for i, k := range pr.known {
		t.mu.Lock()
		still := t.mains[k.pid] == k.run
		t.mu.Unlock()
		if !still {
			look(k.pid)
		}
		pr.known[i].run = nil
	}
	return out
}

// yieldEvery is how many processes a pass over /proc looks at between
// yields to other goroutines.
const yieldEvery = 256

func (t *Tracker) markDirty() {
	select {
	case t.dirty <- struct{}{}:
	default:
	}
}

// saveEvery spaces writes of the record: a burst of starts is one write. A
// run started within it and missing from the record when the daemon dies is
// still found by its cgroup or its marker.
const saveEvery = 100 * time.Millisecond

// flusher writes the record whenever it changed, at most every saveEvery.
func (t *Tracker) flusher() {
	defer close(t.done)
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-t.dirty:
		case <-t.stop:
			return
		}
		t.save()
		pause.Reset(saveEvery)
		select {
		case <-pause.C:
		case <-t.stop:
			return
		}
	}
}

// Close ends every run still tracked, removes the cgroups and writes the
// record one last time.
func (t *Tracker) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	runs := make([]*Run, 0, len(t.runs))
	for _, r := range t.runs {
		runs = append(runs, r)
	}
	t.mu.Unlock()
	for _, r := range runs {
		r.Exited()
		r.Signal(syscall.SIGKILL)
	}
	t.bg.Wait()
	close(t.stop)
	<-t.done
	<-t.scanDone
	t.saveMu.Lock()
	t.file.reset() // the last write is a whole record, without changes after it
	t.saveMu.Unlock()
	t.save()
	t.saveMu.Lock()
	t.file.reset()
	t.saveMu.Unlock()
	if t.base != "" {
		removeCgroup(t.base, time.Now().Add(killWait))
	}
	return nil
}

// Leftover is what a previous daemon on the state directory left running
// of one unit, and was ended.
type Leftover struct {
	Unit string
	PIDs []int
}

// Sweep ends every process that a previous daemon on this state directory
// left behind: the members of its cgroups, processes carrying its marker,
// and the process groups in its record whose leader's start time matches.
// It waits (boundedly) for them to be gone and publishes daemon.leftovers
// for each unit that had some.
func (t *Tracker) Sweep() []Leftover {
	rec := t.readRecord()
	byUnit := make(map[string][]int)
	add := func(unitName string, pid int) {
		if !containsInt(byUnit[unitName], pid) {
			byUnit[unitName] = append(byUnit[unitName], pid)
		}
	}
	unitOfMarker := func(m string) string {
		parts := strings.Split(m, ":")
		if len(parts) >= 3 {
			return strings.Join(parts[1:len(parts)-1], ":")
		}
		return "?"
	}
	// Cgroups: the ones recorded, and every unit cgroup below this state
	// directory's cgroup, wherever the previous daemon had it.
	var groups []string
	for _, base := range []string{rec.Cgroup, t.base} {
		if base == "" || !strings.Contains(filepath.Base(base), "opsvc-"+t.key) {
			continue
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "u-") {
				groups = append(groups, filepath.Join(base, e.Name()))
			}
		}
	}
	cgUnit := make(map[string]string)
	for _, run := range rec.Runs {
		if run.Cgroup != "" {
			cgUnit[run.Cgroup] = run.Unit
			if !slices.Contains(groups, run.Cgroup) {
				groups = append(groups, run.Cgroup)
			}
		}
	}
	// The handed-over runs, looked up once: their main processes are known
	// by pid and start time, so their environments are not read; a child
	// of this process (Keep.Child) is not read at all.
	keptPID, keptDir, keptChild := make(map[int]uint64), make(map[string]bool), make(map[int]bool)
	for _, k := range t.opts.Keep {
		if k.Child && k.PID > 0 && strings.HasPrefix(k.Marker, t.key+":") {
			keptChild[k.PID] = true
		}
	}
	t.mu.Lock()
	for _, r := range t.runs {
		if r.pid > 0 {
			keptPID[r.pid] = r.start
		}
		if r.dir != "" {
			keptDir[r.dir] = true
		}
	}
	t.mu.Unlock()
	for _, g := range groups {
		if keptDir[g] {
			continue
		}
		name := cgUnit[g]
		if name == "" {
			name = strings.TrimPrefix(filepath.Base(g), "u-")
			if i := strings.LastIndexByte(name, '.'); i > 0 {
				name = name[:i]
			}
		}
		for _, pid := range killCgroup(g) {
			add(name, pid)
		}
	}
	// Processes by marker and by recorded process group, until none is found.
	prefix := []byte(t.key + ":")
	var pr procReader
	for range 10 {
		found := 0
		for _, pid := range pr.list() {
			if keptChild[pid] {
				continue
			}
			info, ok := readStat(pid)
			if !ok {
				continue
			}
			if start, k := keptPID[pid]; k && start == info.start {
				continue
			}
			name := ""
			if m := pr.marker(pid); bytes.HasPrefix(m, prefix) {
				if t.kept(string(m)) {
					continue
				}
				name = unitOfMarker(string(m))
			} else {
				for _, run := range rec.Runs {
					if run.PID <= 0 || info.pgid != run.PID || t.kept(run.Marker) {
						continue
					}
					// The leader itself must be the recorded process; a member
					// keeps the group's id from being reused, so it is ours if
					// it started no earlier than the leader did.
					if (pid == run.PID && info.start == run.Start) || (pid != run.PID && info.start >= run.Start) {
						name = run.Unit
						break
					}
				}
			}
			if name == "" {
				continue
			}
			kill(pid, syscall.SIGKILL)
			add(name, pid)
			found++
		}
		if found == 0 {
			break
		}
	}
	// Wait for them to be gone, then remove the cgroups.
	deadline := time.Now().Add(killWait)
	for _, pids := range byUnit {
		for _, pid := range pids {
			waitGone(pid, deadline)
		}
	}
	for _, g := range groups {
		if keptDir[g] {
			continue
		}
		if err := removeCgroup(g, deadline); err != nil {
			t.opts.Logf("leftovers: %v", err)
		}
	}
	var out []Leftover
	for name, pids := range byUnit {
		slices.Sort(pids)
		out = append(out, Leftover{Unit: name, PIDs: pids})
	}
	slices.SortFunc(out, func(a, b Leftover) int { return strings.Compare(a.Unit, b.Unit) })
	for _, l := range out {
		if t.opts.Publish != nil {
			t.opts.Publish(l.Unit, api.DaemonLeftovers{
				PIDs: capPIDs(l.PIDs), Count: len(l.PIDs),
				Reason: "left running by a daemon that did not stop cleanly; ended before starting units",
			})
		}
	}
	t.markDirty()
	return out
}

// waitGone polls until pid is gone or a zombie, or the deadline passes.
func waitGone(pid int, deadline time.Time) {
	delay := time.Millisecond
	for {
		if _, ok := readStat(pid); !ok || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay) // another parent reaps it; bounded by deadline
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// capPIDs keeps events small: at most 64 pids are listed (count has all).
func capPIDs(pids []int) []int {
	if len(pids) > 64 {
		return pids[:64]
	}
	return pids
}

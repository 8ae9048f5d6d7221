package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/proctrack"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
)

// StateRecordName is the state record kept in the state directory while
// the daemon runs under a service manager with a file descriptor store: what
// a daemon started after a crash needs, with the files the manager hands
// back, to take the workers over.
const StateRecordName = "handover.json"

// recordEvery spaces writes of the state record: a burst of starts is one
// write.
const recordEvery = 100 * time.Millisecond

// FDStore pushes every worker's files into the service manager's file
// descriptor store as it starts (and removes them when it ends), and keeps
// the state record in the state directory current. Pushes and writes run on
// one goroutine of their own, in order, never on the reconcile loop.
type FDStore struct {
	path  string
	logf  func(string, ...any)
	store func(name string, files ...*os.File) (bool, error)
	drop  func(name string) (bool, error)

	mu     sync.Mutex
	ops    []storeOp
	dirty  bool
	closed bool
	wake   chan struct{}
	done   chan struct{}

	snapshot func() (*handover.Record, bool) // asks the loop; false once it has ended
}

type storeOp struct {
	name   string
	file   *os.File // nil: remove
	remove bool
}

// NewFDStore returns a store that keeps stateDir/handover.json, pushing with
// sdnotify.Store to $NOTIFY_SOCKET. Give it to Options.FDStore.
func NewFDStore(stateDir string, logf func(string, ...any)) *FDStore {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &FDStore{
		path:  filepath.Join(stateDir, StateRecordName),
		logf:  logf,
		store: sdnotify.Store,
		drop:  sdnotify.Unstore,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// start runs the store's goroutine; snapshot builds the record on the loop.
// A first record is written at once.
func (f *FDStore) start(snapshot func() (*handover.Record, bool)) {
	f.snapshot = snapshot
	f.mu.Lock()
	f.dirty = true
	f.mu.Unlock()
	f.poke()
	go f.run()
}

// startFDStore starts Options.FDStore, if any; the returned func stops it,
// once the loop has ended.
func (s *Supervisor) startFDStore() func() {
	fs := s.opts.FDStore
	if fs == nil {
		return func() {}
	}
	fs.start(s.snapshotRecord)
	return fs.stop
}

// stop ends the goroutine after what is queued; the record is removed (a
// clean stop leaves nothing to take over).
func (f *FDStore) stop() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	f.poke()
	<-f.done
	os.Remove(f.path)
}

func (f *FDStore) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// started queues a worker's files (taken over: closed once pushed).
func (f *FDStore) started(unit string, files map[string]*os.File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kinds := make([]string, 0, len(files))
	for k := range files {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		name := sdnotify.StoreName(unit, k)
		if f.closed {
			files[k].Close()
			continue
		}
		// A name holds one file: what a run before stored goes first.
		f.ops = append(f.ops, storeOp{name: name, remove: true}, storeOp{name: name, file: files[k]})
	}
	f.dirty = true
	f.poke()
}

// ended queues the removal of a worker's files.
func (f *FDStore) ended(unit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	for _, k := range []string{handover.KindStdout, handover.KindStderr, handover.KindIPC, handover.KindNotify} {
		f.ops = append(f.ops, storeOp{name: sdnotify.StoreName(unit, k), remove: true})
	}
	f.dirty = true
	f.poke()
}

func (f *FDStore) run() {
	defer close(f.done)
	var last time.Time
	for {
		<-f.wake
		f.mu.Lock()
		ops, dirty, closed := f.ops, f.dirty, f.closed
		f.ops, f.dirty = nil, false
		f.mu.Unlock()
		for _, op := range ops {
			var err error
			if op.remove {
				_, err = f.drop(op.name)
			} else {
				_, err = f.store(op.name, op.file)
				op.file.Close()
			}
			if err != nil {
				f.logf("file store: %s: %v", op.name, err)
			}
		}
		if closed {
			return
		}
		if !dirty {
			continue
		}
		if wait := recordEvery - time.Since(last); wait > 0 {
			time.Sleep(wait) // spaces the writes; this goroutine is the store's own
		}
		rec, ok := f.snapshot()
		if !ok {
			return
		}
		last = time.Now()
		b, err := handover.Encode(rec)
		if err == nil {
			err = atomicfile.Write(f.path, append(b, '\n'), 0o600)
		}
		if err != nil {
			f.logf("state record %s: %v (a restart after a crash may not take the workers over)", f.path, err)
		}
	}
}

// fdStarted is called on the loop when a unit's worker has started: its
// files are duplicated here (they stay the supervisor's) and pushed by the
// store's goroutine.
func (s *Supervisor) fdStarted(name string, rec *unitRecord) {
	fs := s.opts.FDStore
	if fs == nil || rec.proc == nil {
		return
	}
	files := make(map[string]*os.File)
	if ep, ok := rec.proc.(*execProc); ok {
		r, _ := s.opts.Runner.(*ExecRunner)
		for kind, op := range map[string]*outPipe{handover.KindStdout: ep.stdout, handover.KindStderr: ep.stderr} {
			if op == nil || r == nil {
				continue
			}
			if f := r.out.dupFile(op); f != nil {
				files[kind] = f
			}
		}
	}
	if rec.channel != nil {
		if f, err := rec.channel.DupFile(); err == nil {
			files[handover.KindIPC] = f
		}
	}
	if rec.notify != nil {
		if f, err := rec.notify.DupFile(); err == nil {
			files[handover.KindNotify] = f
		}
	}
	fs.started(name, files)
}

// fdChanged is called on the loop when a unit's state changed: the record
// is written again.
func (s *Supervisor) fdChanged() {
	fs := s.opts.FDStore
	if fs == nil {
		return
	}
	fs.mu.Lock()
	fs.dirty = true
	fs.mu.Unlock()
	fs.poke()
}

// fdEnded is called on the loop when a unit's worker is released.
func (s *Supervisor) fdEnded(name string) {
	if fs := s.opts.FDStore; fs != nil {
		fs.ended(name)
	}
}

// dupFile duplicates a pipe's read end while the poller still holds it.
func (o *outputPoller) dupFile(p *outPipe) *os.File {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pipes[p.fd] != p {
		return nil // it ended
	}
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "opsvc-output")
}

// stateRecord builds the state record on the loop, without stopping any
// reader: the units, their lifecycles and running workers (pid, start time,
// tracking run, channel, notify socket). Nothing read but not yet handled
// is in it: a crash loses that anyway.
func (s *Supervisor) stateRecord() *handover.Record {
	rec := &handover.Record{
		Written: time.Now(),
		PID:     os.Getpid(),
		NotifyN: s.notifyN,
		Leases:  s.leases.export(),
		Units:   []handover.Unit{},
	}
	if s.opts.Bus != nil {
		rec.Seq = s.opts.Bus.LastSeq()
	}
	for name := range s.instances {
		rec.Instances = append(rec.Instances, name)
	}
	sort.Strings(rec.Instances)
	names := make([]string, 0, len(s.units))
	for name := range s.units {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ur := s.units[name]
		d := s.desired[name]
		u := handover.Unit{Name: name, Want: d.Want, StartGen: d.StartGen, RestartGen: d.RestartGen, Drain: d.Drain}
		b, err := json.Marshal(ur.Lifecycle)
		if err != nil {
			continue
		}
		u.Lifecycle = b
		if ep, ok := ur.proc.(*execProc); ok && ur.Running {
			hp := handover.Proc{PID: ep.pid, IPC: ur.channel != nil}
			if ep.run != nil {
				hp.Marker, hp.Cgroup, hp.Start = ep.run.Marker(), ep.run.Cgroup(), ep.run.Start()
			}
			if hp.Start == 0 {
				hp.Start, _, _ = proctrack.StartTime(ep.pid)
			}
			if ur.notify != nil {
				hp.Notify = ur.notify.Addr()
			}
			if fp := ur.fields.Load(); fp != nil {
				hp.Fields = *fp
			}
			u.Proc = &hp
		}
		rec.Units = append(rec.Units, u)
	}
	return rec
}

// snapshotRecord asks the loop for the state record.
func (s *Supervisor) snapshotRecord() (*handover.Record, bool) {
	out := make(chan *handover.Record, 1)
	select {
	case s.reqs <- func() { out <- s.stateRecord() }:
		return <-out, true
	case <-s.loopCh:
		return nil, false
	}
}

// FromFDStore reads a handover left by a daemon that died under a service
// manager: the files the manager passed back (LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES, fd 3 onwards, names as sdnotify.StoreName makes them) and
// the state record in stateDir. Each recorded worker whose pid still runs
// with the recorded start time is kept in the record (to be taken over);
// the others are dropped from it, so that their leftovers are ended and
// their units started again. It returns a nil record when the manager passed
// no worker's files or there is no record; the files are always made
// close-on-exec and the LISTEN_* variables unset first.
func FromFDStore(stateDir string) (*handover.Record, handover.Files, error) {
	files := listenFiles()
	if len(files) == 0 {
		return nil, nil, nil
	}
	path := filepath.Join(stateDir, StateRecordName)
	rec, err := handover.Check(path)
	if errors.Is(err, os.ErrNotExist) {
		files.Close()
		return nil, nil, nil
	}
	if err != nil {
		files.Close()
		return nil, nil, fmt.Errorf("supervisor: take over after a crash: %w", err)
	}
	named := make(handover.Files, len(files))
	for name, f := range files {
		unitName, kind, ok := sdnotify.SplitStoreName(name)
		if !ok {
			f.Close()
			continue
		}
		named[handover.FDName(unitName, kind)] = f
	}
	for i := range rec.Units {
		p := rec.Units[i].Proc
		if p == nil {
			continue
		}
		// Not this daemon's child: one that has ended but is not reaped yet
		// (a zombie) is gone too.
		start, _, ok := proctrack.StartTime(p.PID)
		if !ok || start != p.Start || p.Start == 0 || proctrack.Zombie(p.PID) {
			rec.Units[i].Proc = nil
		}
	}
	rec.FDs = nil
	return rec, named, nil
}

// listenFiles takes the files passed by a service manager (sd_listen_fds):
// fd 3 onwards, LISTEN_FDS of them, named by LISTEN_FDNAMES, if LISTEN_PID
// is this process. They become close-on-exec; the variables are unset.
func listenFiles() handover.Files {
	defer os.Unsetenv("LISTEN_PID")
	defer os.Unsetenv("LISTEN_FDS")
	defer os.Unsetenv("LISTEN_FDNAMES")
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 || n > 1<<16 {
		return nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	out := make(handover.Files, n)
	for i := range n {
		fd := 3 + i
		unix.CloseOnExec(fd)
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		if old := out[name]; old != nil {
			old.Close() // one file per name
		}
		out[name] = f
	}
	return out
}

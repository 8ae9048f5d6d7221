package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/internal/parallel"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/proctrack"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
	"github.com/opsvc/opsvc/worker"
)

// Frozen is a supervisor paused for a handover: its loop waits, no worker is
// read or reaped, and Record and Files hold everything the next process
// needs to take over its workers (see package handover). Either the process
// ends (exec, exit) with the loop still paused, or Thaw takes the workers
// back and the loop goes on.
type Frozen struct {
	Record *handover.Record
	Files  handover.Files

	s     *Supervisor
	thaw  chan struct{}
	after chan struct{}
}

// Freeze pauses the supervisor between two steps of its loop for a
// handover: it stops reaping and reading output, stops reading every IPC
// channel and notify socket once what they had read whole has been handled,
// and writes the state record. Worker output, messages and exits that come
// meanwhile wait in the pipes, sockets and process table for the process
// that takes over. The daemon's own files (control socket…) are the
// caller's to add to Files.
func (s *Supervisor) Freeze(ctx context.Context) (*Frozen, error) {
	r, ok := s.opts.Runner.(*ExecRunner)
	if !ok {
		return nil, errors.New("supervisor: handover: the runner does not start real processes")
	}
	f := &Frozen{s: s, thaw: make(chan struct{}), after: make(chan struct{})}
	built := make(chan error, 1)
	fn := func() {
		rec, files, thawRunner, err := s.freeze(r)
		if err != nil {
			built <- err
			return
		}
		f.Record, f.Files = rec, files
		built <- nil
		<-f.thaw
		if err := s.resume(r, f.Record, f.Files, thawRunner); err != nil {
			s.logf("handover: %v", err)
		}
		close(f.after)
	}
	select {
	case s.reqs <- fn:
	case <-s.loopCh:
		return nil, errors.New("supervisor: handover: the daemon is shutting down")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := <-built; err != nil {
		return nil, err
	}
	return f, nil
}

// Thaw gives up the handover: the workers are taken back from Record and
// Files as the next process would, and the loop goes on.
func (f *Frozen) Thaw() {
	close(f.thaw)
	<-f.after
}

// detachPerWorker is how many workers make one more goroutine worth its
// start, detaching them for a handover.
const detachPerWorker = 128

// freeze runs on the loop.
func (s *Supervisor) freeze(r *ExecRunner) (*handover.Record, handover.Files, func(), error) {
	if s.shutdown {
		return nil, nil, nil, errors.New("supervisor: handover: the daemon is stopping")
	}
	// Forks in flight end first: they need the runner, which freezing
	// stops.
	s.waitForks()
	thawRunner := r.freeze()
	// Exits reaped before the freeze.
	s.drainProcs()
	// Stop every reader; handle what they still deliver.
	type det struct {
		name string
		rec  *unitRecord
	}
	var chans, socks []det
	pumping := make(map[Process]bool) // their pump sends one eof once the reader stops
	for name, rec := range s.units {
		if rec.channel != nil {
			chans = append(chans, det{name, rec})
			select {
			case <-rec.channel.Done():
			default:
				pumping[rec.proc] = true
			}
		}
		if rec.notify != nil {
			socks = append(socks, det{name, rec})
		}
	}
	stopped := make(chan struct{})
	notifyFiles := make(map[*unitRecord]*os.File)
	go func() {
		defer close(stopped)
		for _, d := range chans {
			d.rec.channel.StopReading()
		}
		for _, d := range socks {
			if nf, err := d.rec.notify.Detach(); err == nil {
				notifyFiles[d.rec] = nf
			} else {
				s.logf("%s: %v", d.name, err)
			}
		}
	}()
	for done := false; !done || len(pumping) > 0; {
		select {
		case m := <-s.msgs:
			if m.eof && pumping[m.proc] {
				delete(pumping, m.proc)
				continue
			}
			s.handleMsg(m)
		case <-stopped:
			stopped = nil
			done = true
		}
	}
	for {
		select {
		case m := <-s.msgs:
			s.handleMsg(m)
			continue
		default:
		}
		break
	}

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
	files := make(handover.Files)
	names := make(map[string]bool)
	for name := range s.desired {
		names[name] = true
	}
	for name := range s.units {
		names[name] = true
	}
	sorted := make([]string, 0, len(names))
	for name := range names {
		sorted = append(sorted, name)
	}
	sort.Strings(sorted)
	// Each running worker is detached with a few system calls: a thousand
	// of them are most of the pause, and they are spread over the CPUs (the
	// loop waits meanwhile; each unit's record is touched by one goroutine).
	type detached struct {
		u      handover.Unit
		files  [4]*os.File // stdout, stderr, IPC, notify
		notify bool        // its notify socket is in files
	}
	kinds := [4]string{handover.KindStdout, handover.KindStderr, handover.KindIPC, handover.KindNotify}
	out := make([]detached, len(sorted))
	parallel.For(len(sorted), detachPerWorker, func(i int) {
		name := sorted[i]
		d := s.desired[name]
		o := &out[i]
		o.u = handover.Unit{Name: name, Want: d.Want, StartGen: d.StartGen, RestartGen: d.RestartGen, Drain: d.Drain}
		ur := s.units[name]
		if ur == nil || ur.proc == nil {
			return
		}
		hp, outF, errF, err := r.detach(ur.proc)
		if err != nil {
			// Not to be left running unknown to the next process.
			s.logf("%s: handover: %v; it is ended", name, err)
			ur.proc.Signal(syscall.SIGKILL)
			return
		}
		o.files[0], o.files[1] = outF, errF
		if ur.channel != nil {
			cf, unread, err := ur.channel.Detach()
			if err != nil {
				s.logf("%s: %v", name, err)
			} else {
				hp.IPC, hp.IPCUnread = true, unread
				o.files[2] = cf
			}
		}
		if nf := notifyFiles[ur]; nf != nil {
			hp.Notify = ur.notify.Addr()
			o.files[3], o.notify = nf, true
		}
		if fp := ur.fields.Load(); fp != nil {
			hp.Fields = *fp
		}
		o.u.Proc = &hp
	})
	lcs := make([]Lifecycle, 0, len(s.units))
	for i, name := range sorted {
		o := &out[i]
		if ur := s.units[name]; ur != nil {
			lcs = append(lcs, ur.Lifecycle)
			o.u.Observed = true
			if o.notify {
				delete(notifyFiles, ur)
			}
		}
		for k, f := range o.files {
			if f != nil {
				files[handover.FDName(name, kinds[k])] = f
			}
		}
		rec.Units = append(rec.Units, o.u)
	}
	for _, nf := range notifyFiles {
		nf.Close()
	}
	b, err := encodeLifecycles(lcs)
	if err != nil {
		// Not reached: a Lifecycle always encodes. The workers are detached
		// already; they are taken back as after a handover that did not
		// happen.
		return nil, nil, nil, errors.Join(err, s.resume(r, rec, files, thawRunner))
	}
	rec.Lifecycles = b
	return rec, files, thawRunner, nil
}

// resume takes the workers back after a handover that did not happen, on
// the loop: the same adoption as a new process's.
func (s *Supervisor) resume(r *ExecRunner, rec *handover.Record, files handover.Files, thawRunner func()) error {
	r.mu.Lock()
	r.adopting = true
	r.mu.Unlock()
	// The output pipes are still in the poller's epoll set (see
	// outputPoller.detach): out, before it polls them again.
	for name, f := range files {
		if _, kind, ok := handover.SplitFDName(name); ok && (kind == handover.KindStdout || kind == handover.KindStderr) {
			r.out.unregister(int(f.Fd()))
		}
	}
	thawRunner()
	for _, u := range rec.Units {
		ur := s.units[u.Name]
		if ur == nil || u.Proc == nil {
			continue
		}
		ur.proc, ur.channel, ur.notify = nil, nil, nil
		s.adoptProc(r, u.Name, ur, *u.Proc, files, u.Proc.Child)
	}
	r.adoptDone()
	files.Close()
	return nil
}

// restoreHandover takes over from the daemon before this one: each running
// worker adopted (or ended, and reported) while the unit files are read
// again (see Preload), then desired and observed state from the record. It
// runs on the loop, before the first plan.
func (s *Supervisor) restoreHandover(rec *handover.Record, files handover.Files) {
	defer files.Close()
	r, _ := s.opts.Runner.(*ExecRunner)
	if rec.NotifyN > s.notifyN {
		s.notifyN = rec.NotifyN
	}
	s.leases.restore(rec.Leases)
	for _, name := range rec.Instances {
		s.instances[name] = true
	}
	s.restoreInstances()
	// The workers first: that needs only the record, and their output,
	// messages and exits are read again the sooner.
	now := s.now()
	taken := make([]bool, len(rec.Units)) // running, and this daemon's again
	// After a re-exec (same pid, files inherited) the workers the process
	// before had forked are this process's children: see adoptSpec.Child.
	reexec := rec.PID == os.Getpid() && rec.FDs != nil
	lcs := recordLifecycles(rec, s.logf)
	for i, u := range rec.Units {
		if lcs[i] == nil {
			continue
		}
		ur := s.record(u.Name)
		l := *lcs[i]
		// The deadlines a worker must meet (ready, heartbeat, exit) do not
		// run while nobody could hear it: the handover's pause is added.
		if pause := now.Sub(rec.Written); pause > 0 {
			for _, t := range []*time.Time{&l.StartDeadline, &l.StopDeadline, &l.WatchdogDeadline, &l.EOFDeadline} {
				if !t.IsZero() {
					*t = t.Add(pause)
				}
			}
		}
		ur.Lifecycle = l
		s.observed[u.Name] = l
		if l.Running && u.Proc != nil && r != nil {
			taken[i] = s.adoptProc(r, u.Name, ur, *u.Proc, files, reexec && u.Proc.Child)
		}
	}
	s.applyLoad(s.firstLoad(), "handover")
	if r != nil {
		r.adoptDone() // and the check for leftovers begins
	}
	adopted, lost := 0, 0
	for i, u := range rec.Units {
		d, ok := s.desired[u.Name]
		if ok {
			d.Want, d.StartGen, d.RestartGen, d.Drain = u.Want && d.Unit != nil, u.StartGen, u.RestartGen, u.Drain
			s.desired[u.Name] = d
		}
		ur := s.units[u.Name]
		if lcs[i] == nil || ur == nil || !ur.Running {
			continue
		}
		if !taken[i] {
			lost++
			// Its process cannot be waited for: the run is over for this
			// daemon, and its restart policy decides.
			s.emit(u.Name, ur.PID, api.UnitAdoptFailed{Reason: "its process could not be taken over"})
			s.step(u.Name, ur, Event{Kind: EvExited, Exit: ExitStatus{Code: 255}, Ran: now.Sub(ur.StartedAt)})
			continue
		}
		adopted++
		// The worker could not reach this daemon while it took over: one
		// full watchdog interval from now.
		if w := d.Unit; ok && w != nil && w.Service.Watchdog > 0 && !ur.WatchdogDeadline.IsZero() {
			if dl := now.Add(w.Service.Watchdog); dl.After(ur.WatchdogDeadline) {
				ur.WatchdogDeadline = dl
				s.observed[u.Name] = ur.Lifecycle
			}
		}
	}
	s.emit("", os.Getpid(), api.DaemonResumed{From: rec.PID, Seq: rec.Seq, Adopted: adopted, Lost: lost})
}

// adoptProc takes over one worker: its process, output, channel and notify
// socket. A worker that can be waited for but not fully taken over is
// killed, and its exit handled as any other. It reports whether the
// process is this daemon's again.
func (s *Supervisor) adoptProc(r *ExecRunner, name string, ur *unitRecord, hp handover.Proc, files handover.Files, child bool) bool {
	holder := &procHolder{launched: true}
	onExit := func() {
		s.exitMu.Lock()
		s.exitQ = append(s.exitQ, exitEvent{unit: name, holder: holder})
		s.exitMu.Unlock()
		select {
		case s.exitSig <- struct{}{}:
		default:
		}
	}
	a := adoptSpec{
		Unit:       name,
		Proc:       hp,
		StdoutFile: files.Take(handover.FDName(name, handover.KindStdout)),
		StderrFile: files.Take(handover.FDName(name, handover.KindStderr)),
		OnExit:     onExit,
		Child:      child,
	}
	if hp.Fields != nil {
		f := hp.Fields
		ur.fields.Store(&f)
	} else {
		ur.fields.Store(nil)
	}
	if s.opts.Logs != nil {
		a.Stdout = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stdout", fields: &ur.fields, now: s.now}
		a.Stderr = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stderr", fields: &ur.fields, now: s.now}
	}
	ipcF := files.Take(handover.FDName(name, handover.KindIPC))
	notifyF := files.Take(handover.FDName(name, handover.KindNotify))
	closeRest := func() {
		if ipcF != nil {
			ipcF.Close()
		}
		if notifyF != nil {
			notifyF.Close()
		}
	}
	proc, err := r.adopt(a)
	if err != nil {
		closeRest()
		s.logf("%s: take over process %d: %v", name, hp.PID, err)
		return false
	}
	holder.proc = proc
	ur.proc = proc
	var problem error
	if hp.IPC {
		if ipcF == nil {
			problem = errors.New("its IPC channel was not handed over")
		} else {
			ch, err := worker.AdoptChannel(ipcF, hp.IPCUnread)
			ipcF = nil
			if err != nil {
				problem = err
			} else {
				ur.channel = ch
				go s.pumpIPC(name, proc, ch)
			}
		}
	}
	if hp.Notify != "" && problem == nil {
		if notifyF == nil {
			problem = errors.New("its notify socket was not handed over")
		} else {
			srv, err := sdnotify.Adopt(notifyF, hp.Notify, func(m sdnotify.Message) {
				s.send(unitMsg{unit: name, notify: &m})
			})
			notifyF = nil
			if err != nil {
				problem = err
			} else {
				ur.notify = srv
			}
		}
	}
	closeRest()
	if problem != nil {
		s.logf("%s: take over process %d: %v; it is ended", name, hp.PID, problem)
		s.emit(name, hp.PID, api.UnitAdoptFailed{Reason: problem.Error() + "; it is ended"})
		proc.Signal(syscall.SIGKILL)
	}
	return true
}

// KeepRuns are the tracked runs of a record's workers, for the tracker to
// leave running (proctrack.Options.Keep).
func KeepRuns(rec *handover.Record) []proctrack.Keep {
	if rec == nil {
		return nil
	}
	var out []proctrack.Keep
	reexec := rec.PID == os.Getpid() && rec.FDs != nil
	for _, u := range rec.Units {
		if p := u.Proc; p != nil && p.Marker != "" {
			out = append(out, proctrack.Keep{Unit: u.Name, Marker: p.Marker, PID: p.PID, Start: p.Start, Cgroup: p.Cgroup, Child: reexec && p.Child})
		}
	}
	return out
}

// TrackKeeping is Track for a daemon that takes over: the runs of rec's
// workers are tracked as they are, not ended as leftovers. The check for
// leftovers, which reads every process of the machine, waits for the
// workers to be adopted, and starts wait for it (see adoptDone); without
// rec, it is Track.
func (r *ExecRunner) TrackKeeping(stateDir string, rec *handover.Record, publish func(unit string, data api.EventData), logf func(string, ...any)) (string, error) {
	opts := proctrack.Options{StateDir: stateDir, Publish: publish, Logf: logf, Keep: KeepRuns(rec)}
	if rec == nil {
		return r.trackWith(opts)
	}
	if r.track != nil {
		return "", errors.New("supervisor: track: already tracking")
	}
	t, err := proctrack.Open(opts)
	if err != nil {
		return "", fmt.Errorf("supervisor: track processes: %w", err)
	}
	r.track = t
	r.leftovers = func() {
		n := 0
		for _, l := range t.Sweep() {
			n += len(l.PIDs)
		}
		if n > 0 && logf != nil {
			logf("ended %d process(es) left by the daemon before", n)
		}
	}
	if dir, _ := t.Cgroup(); dir != "" {
		return "in cgroup " + dir, nil
	}
	_, why := t.Cgroup()
	return "by process group and a record of pids (no cgroup v2: " + why + ")", nil
}

// adoptNone ends a start without a handover.
func (s *Supervisor) adoptNone() {
	if r, ok := s.opts.Runner.(*ExecRunner); ok {
		r.adoptDone()
	}
}

// waitForks waits for every fork in flight and records it, with the exits
// reaped meanwhile.
func (s *Supervisor) waitForks() {
	s.forking.Wait()
	s.drainProcs()
}

// Package supervisor is the opsvc daemon: the reconcile loop, each unit's
// state machine, the restart policy, the sd_notify server and the control
// API. It never parses TOML itself: units come from package unit.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
)

// Options are the supervisor's dependencies and settings.
type Options struct {
	Paths    config.Paths
	Settings config.Settings
	Runner   Runner
	Bus      *bus.Bus
	Logs     *logs.Logs
	Registry registry.Backend
	// Fleet, if set, grants session leases for the whole fleet instead of this daemon alone.
	Fleet FleetLeases
	Now   func() time.Time
	Logf  func(format string, args ...any)
	// Environ is the environment workers inherit (before scrubbing); nil = os.Environ().
	Environ []string
	// Executable is the opsvc binary, re-executed for orchestrator units.
	Executable string
	// Notify sends a state to the daemon's own systemd; nil = none.
	Notify func(state string) error
	// WatchdogInterval is how often to send WATCHDOG=1 from the loop; 0 = off.
	WatchdogInterval time.Duration
	// NoNotifySockets skips the per-unit sd_notify sockets: only for runners
	// whose processes are not real (their reader would keep a synctest
	// bubble from advancing time).
	NoNotifySockets bool
	// Watch enables the fsnotify watcher on the units directory.
	Watch    bool
	Debounce time.Duration
	// Handover, when set, is the state of the daemon this one takes over
	// from, and HandoverFiles its files (see package handover): Run takes
	// over its workers instead of starting afresh, and closes the files it
	// does not use.
	Handover      *handover.Record
	HandoverFiles handover.Files
	// Preload, when set, has read the unit files ahead of Run; its cache
	// and watcher become the supervisor's (see StartPreload).
	Preload *Preload
	// FDStore, when set, keeps every worker's files in the service
	// manager's file descriptor store and the state record current (see
	// NewFDStore).
	FDStore *FDStore
	// Reexec serves POST /v1/daemon/reexec; nil = not offered.
	Reexec ReexecFunc
	// Replace serves POST /v1/daemon/handover, a new daemon taking over
	// from this one (opsvc daemon --replace); nil = not offered.
	Replace ReplaceFunc
	// Placer places fleet units ([cluster] in opsvc.toml); nil = no fleet.
	Placer Placer
	// FleetEvents follows every host's events ([cluster]); nil = no fleet.
	FleetEvents FleetEvents
}

// Supervisor runs units. Its state is owned by the goroutine in Run; every
// other goroutine talks to it through requests.
type Supervisor struct {
	opts    Options
	now     func() time.Time
	logf    func(string, ...any)
	env     []string
	reqs    chan func()
	exitMu  sync.Mutex
	exitQ   []exitEvent
	startQ  []*launch      // forks done, for the loop to record; under exitMu
	exitSig chan struct{}  // a value when exitQ or startQ has events
	forking sync.WaitGroup // forks in flight
	msgs    chan unitMsg
	ready   chan struct{} // closed once the first plan ran and its forks are recorded
	loopCh  chan struct{} // closed when Run returns

	control controlSnapshot // [control] settings for the access check, read off the loop

	loadGen    atomic.Uint64   // numbers unit loads in the order they began
	preloadGen uint64          // the number of Options.Preload's load
	loaded     chan loadResult // a load done off the loop, for the loop to apply
	parsed     *unit.Cache     // parses of unit files, reused by loads for files that did not change
	bg         sync.WaitGroup  // shutdown messages sent off the loop; Run waits for them

	// watcher watches the units directory and stopSettings ends the watch
	// of the settings file; on the loop (see Unwatch). runCtx is Run's.
	watcher      *unit.Watcher
	stopSettings func()
	runCtx       context.Context

	// Loop-owned state.
	desired   map[string]Desired
	units     map[string]*unitRecord
	observed  map[string]Lifecycle // each record's lifecycle, kept by record, step and forget, for Plan
	set       *unit.Set
	base      *unit.Set                 // the set a load of changed files only may start from; nil: load all
	dirty     dirtyPlan                 // the units the next pass plans
	errors    map[string][]unit.Problem // current load problems by unit
	instances map[string]bool           // template instances started by name, not by a file
	waiters   []*waiter
	launches  []*launch // starts prepared by the current reconcile pass
	// firstForks counts the forks of the first pass not yet recorded:
	// the daemon is ready once they are.
	firstForks int
	leases     *Leases
	shutdown   bool
	applied    uint64   // loadGen of the last load applied
	loadErr    string   // the error of the last load applied, "" if it was read
	kept       []string // instances started by name, as last written (keepInstances)
	notifyN    int
	lastStat   string
	stats      loopStats // metrics: the snapshot scrapes read
	order      planOrder // the sorted names Plan walks

	// Fleet placement ([cluster]), on the loop too.
	fleet     []string                   // the fleet units, as of the last placeUnits
	holds     map[string]placement.Hold  // where fleet units run, as the placer last said
	fleetSent map[string]placement.Local // what the placer was last told
}

// unitRecord is the loop's record of one unit: its lifecycle, and the
// handles of its running process. Only Step changes the lifecycle.
type unitRecord struct {
	Lifecycle
	proc    Process
	channel *worker.Channel
	notify  *sdnotify.Server
	// launch is the start being forked off the loop, nil when none: the
	// unit is not planned meanwhile, and the messages of its notify socket
	// wait in held until the fork is recorded.
	launch *launch
	held   []unitMsg
	// fields are extra journald fields for output lines (the running session
	// of an orchestrator); written by the loop, read by output goroutines.
	fields atomic.Pointer[map[string]string]
}

// exitEvent names a process that was reaped. holder.proc is set by the loop
// when it records the fork (startFinish), which the loop always handles
// before the exit: an exit reaped before the fork is queued waits for it.
type exitEvent struct {
	unit   string
	holder *procHolder
}

// busy is true while the unit has a process, or one is being forked.
func (r *unitRecord) busy() bool { return r.Running || r.launch != nil }

type procHolder struct {
	proc Process
	// Under Supervisor.exitMu: the fork is queued for the loop; the process
	// exited before that.
	launched, exitEarly bool
}

type unitMsg struct {
	unit    string
	proc    Process
	ipc     *worker.Message
	notify  *sdnotify.Message
	problem error
	eof     bool
}

// waiter is an API request waiting for a unit to reach the end of a start,
// stop or restart.
type waiter struct {
	ctx   context.Context
	unit  string
	verb  string // start, stop or restart
	check func(*unitRecord, Desired) (done bool, err error)
	reply chan error
}

// New returns a supervisor; Run starts it.
func New(opts Options) (*Supervisor, error) {
	if opts.Runner == nil {
		return nil, errors.New("supervisor: new: no runner")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Debounce == 0 {
		opts.Debounce = defaultDebounce
	}
	parsed := unit.NewCache()
	if opts.Preload != nil {
		parsed = opts.Preload.parsed
	}
	parsed.SetValidModels(opts.Settings.Orchestrator.ValidModels)
	s := &Supervisor{
		opts:      opts,
		now:       opts.Now,
		logf:      opts.Logf,
		env:       BaseEnv(opts.Environ),
		reqs:      make(chan func()),
		exitSig:   make(chan struct{}, 1),
		msgs:      make(chan unitMsg, 256),
		ready:     make(chan struct{}),
		loopCh:    make(chan struct{}),
		loaded:    make(chan loadResult, 1),
		parsed:    parsed,
		desired:   make(map[string]Desired),
		units:     make(map[string]*unitRecord),
		observed:  make(map[string]Lifecycle),
		errors:    make(map[string][]unit.Problem),
		instances: make(map[string]bool),
		leases:    NewLeases(),
	}
	if opts.Preload != nil {
		s.preloadGen = s.loadGen.Add(1) // it began before any other
	}
	return s, nil
}

// defaultDebounce is Options.Debounce when not set.
const defaultDebounce = 100 * time.Millisecond

// Ready is closed once the first plan has run and the processes it
// started are forked.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

// publish puts an event on the bus.
func (s *Supervisor) publish(typ, unitName string, pid int, data map[string]any) {
	if s.opts.Bus == nil {
		return
	}
	s.opts.Bus.Publish(bus.Event{Type: typ, Unit: unitName, PID: pid, Data: data})
}

func (s *Supervisor) notify(state string) {
	if s.opts.Notify != nil {
		if err := s.opts.Notify(state); err != nil {
			s.logf("sd_notify: %v", err)
		}
	}
}

// Run loads the units, then reconciles until ctx ends; then it stops every
// unit (reverse dependency order, each with its own stop timeout) and returns
// once no worker is left.
func (s *Supervisor) Run(ctx context.Context) error {
	defer s.startFDStore()()
	defer close(s.loopCh)
	defer s.bg.Wait()
	if p := s.opts.Preload; p != nil {
		defer p.Close()
	}
	s.runCtx = ctx
	if s.opts.Watch {
		var w *unit.Watcher
		var err error
		if p := s.opts.Preload; p != nil && (p.watcher != nil || p.werr != nil) {
			w, err = p.watcher, p.werr // watching since before the load
		} else {
			w, err = unit.NewWatcher(s.opts.Paths.Units, s.opts.Debounce)
		}
		if err != nil {
			s.logf("watch %s: %v (live reload off; use opsvc reload)", s.opts.Paths.Units, err)
		} else {
			s.watcher = w
		}
	}
	s.stopSettings = s.watchSettings(ctx)
	defer func() {
		if s.watcher != nil {
			s.watcher.Close()
		}
		s.stopSettings()
	}()
	if s.opts.Handover != nil {
		s.restoreHandover(s.opts.Handover, s.opts.HandoverFiles)
	} else {
		s.loadSpend()
		s.restoreInstances()
		s.applyLoad(s.firstLoad(), "start")
		s.adoptNone()
	}
	// Unit files changed on disk are parsed off the loop, one load at a time;
	// changes seen during a load start one more when it is done.
	loading, again := false, false
	load := func() {
		if loading {
			again = true
			return
		}
		if s.watcher == nil {
			return // unwatched for a handover
		}
		entries, all := s.watcher.Take()
		if !all && len(entries) == 0 {
			return // taken by the load before
		}
		loading = true
		base := s.base
		go func() { s.loaded <- s.loadChanged(base, entries, all) }()
	}
	defer func() {
		if loading {
			<-s.loaded
		}
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var watchdog <-chan time.Time
	if s.opts.WatchdogInterval > 0 {
		t := time.NewTicker(s.opts.WatchdogInterval)
		defer t.Stop()
		watchdog = t.C
	}
	var extend <-chan time.Time
	var placed <-chan struct{}
	if s.opts.Placer != nil {
		placed = s.opts.Placer.Changed()
	}
	first, readyDone := true, false
	done := ctx.Done()
	woke := time.Now()
	for {
		wake := s.reconcile()
		if first {
			first = false
			for _, rec := range s.units {
				if rec.launch != nil {
					rec.launch.first = true
					s.firstForks++
				}
			}
		}
		if !readyDone && s.firstForks == 0 {
			readyDone = true
			s.statsNow() // the counts READY carries are of now
			close(s.ready)
			s.emit("", os.Getpid(), api.DaemonReady{Units: len(s.desired)})
			s.notify("READY=1\nSTATUS=" + s.statusLine())
		}
		s.updateStatus()
		s.syncPlacement()
		s.keepInstances()
		s.stepDone(woke)
		if s.shutdown && s.idle() {
			s.notify("STATUS=stopped")
			return nil
		}
		if due := s.statsDue(); !due.IsZero() && (wake.IsZero() || due.Before(wake)) {
			wake = due
		}
		var changes <-chan struct{}
		if s.watcher != nil {
			changes = s.watcher.Changes()
		}
		var timerC <-chan time.Time
		if !wake.IsZero() {
			d := wake.Sub(s.now())
			if d < 0 {
				d = 0
			}
			resetTimer(timer, d)
			timerC = timer.C
		}
		select {
		case f := <-s.reqs:
			f()
		case <-s.exitSig:
			s.drainProcs()
		case m := <-s.msgs:
			s.handleMsg(m)
		case <-timerC:
		case <-changes:
			load()
		case r := <-s.loaded:
			loading = false
			s.applyLoad(r, "watch")
			if again {
				again = false
				load()
			}
		case <-placed:
			s.takeHolds()
		case <-watchdog:
			s.notify("WATCHDOG=1")
		case <-extend:
			s.notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(int64(s.maxStopTimeout()/time.Microsecond)+5e6, 10))
		case <-done:
			done = nil
			s.shutdown = true
			s.emit("", os.Getpid(), api.DaemonStopping{})
			s.notify("STOPPING=1")
			s.notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(int64(s.maxStopTimeout()/time.Microsecond)+5e6, 10))
			t := time.NewTicker(time.Second)
			defer t.Stop()
			extend = t.C
			for name, d := range s.desired {
				d.Want = false
				s.desired[name] = d
			}
			s.touchAll()
		}
		woke = time.Now()
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

func (s *Supervisor) maxStopTimeout() time.Duration {
	var m time.Duration
	for _, d := range s.desired {
		if d.Unit != nil && d.Unit.Service.StopTimeout > m {
			m = d.Unit.Service.StopTimeout
		}
	}
	return m
}

// idle is true when no process of any unit is alive.
func (s *Supervisor) idle() bool {
	for _, rec := range s.units {
		if rec.Running || rec.launch != nil {
			return false
		}
	}
	return true
}

// reconcile plans and applies until the plan is empty of process actions,
// then returns when to look again.
func (s *Supervisor) reconcile() time.Time {
	for i := 0; ; i++ {
		// s.observed is kept in step with the records: no copy of every
		// lifecycle per pass; only the units whose plan may have changed
		// are planned.
		acts, _ := s.planPass(s.now())
		changed := false
		for _, a := range acts {
			if s.apply(a) {
				changed = true
			}
		}
		if ls := s.launches; len(ls) > 0 {
			s.launches = nil
			s.dispatch(ls)
		}
		s.checkWaiters()
		if !changed || i >= 8 {
			return s.nextDue()
		}
	}
}

func (s *Supervisor) record(name string) *unitRecord {
	rec := s.units[name]
	if rec == nil {
		rec = &unitRecord{Lifecycle: Lifecycle{State: Inactive, Sub: "dead", Since: s.now()}}
		s.units[name] = rec
		s.observed[name] = rec.Lifecycle
		s.order.invalidate()
		s.touch(name)
	}
	return rec
}

// apply turns one action of the plan into an event for the unit; it reports
// whether state changed in a way that deserves another plan.
func (s *Supervisor) apply(a Action) bool {
	if a.Kind == ActForget {
		delete(s.units, a.Unit)
		delete(s.observed, a.Unit)
		s.order.invalidate()
		s.touch(a.Unit)
		if s.opts.Logs != nil {
			s.opts.Logs.Forget(a.Unit)
		}
		return false
	}
	rec := s.record(a.Unit)
	d := s.desired[a.Unit]
	ev := Event{Reason: a.Reason}
	switch a.Kind {
	case ActStart:
		ev.Kind, ev.Gen, ev.RestartGen, ev.Hash = EvStart, d.StartGen, d.RestartGen, d.Unit.Hash
	case ActStop:
		ev.Kind, ev.Stop, ev.Drain, ev.StopBy = EvStop, a.Stop, d.Drain, d.StopBy
	case ActKill:
		switch {
		case rec.Stopping:
			ev.Kind = EvStopTimeout
		case a.Reason == ReasonChannelClosed:
			ev.Kind = EvChannelTimeout
		default:
			ev.Kind = EvStartTimeout
		}
	case ActWatchdog:
		ev.Kind = EvWatchdogTimeout
	case ActFail:
		ev.Kind, ev.Gen, ev.RestartGen = EvStartLimit, d.StartGen, d.RestartGen
	case ActBlock:
		ev.Kind = EvBlocked
	default:
		return false
	}
	s.step(a.Unit, rec, ev)
	switch a.Kind {
	case ActStart, ActStop, ActFail:
		return true
	}
	return false
}

// step feeds one event to a unit's lifecycle and carries out the effects. It
// is the only place a unit's lifecycle changes.
func (s *Supervisor) step(name string, rec *unitRecord, ev Event) {
	d := s.desired[name]
	ev.Svc = unit.DefaultService()
	if d.Unit != nil {
		ev.Svc, ev.Defined = d.Unit.Service, true
	}
	ev.Wanted = d.Want && !s.shutdown
	if ev.Kind == EvExited {
		ev.RestartGen = d.RestartGen
	}
	next, effs := rec.Lifecycle.Step(ev, s.now())
	if next.State != rec.State || next.Sub != rec.Sub || next.PID != rec.PID {
		s.fdChanged()
	}
	rec.Lifecycle = next
	s.observed[name] = next
	s.touch(name)
	for _, e := range effs {
		switch e.Kind {
		case EffStartProcess:
			s.launches = append(s.launches, s.startPrepare(name, rec, d.Unit))
		case EffSendStop:
			s.sendStop(name, rec, ev.Svc, e.Drain)
		case EffKill:
			if rec.proc != nil {
				rec.proc.Signal(syscall.SIGKILL)
			}
		case EffRelease:
			s.release(name, rec)
		case EffPublish:
			s.emit(name, e.PID, e.Data)
		case EffIllegal:
			s.logf("%s: %s", name, e.Text)
			s.emit(name, rec.PID, api.UnitError{Error: e.Text})
		}
	}
}

// startPrepare prepares a unit's process; forkAll and startFinish start it.
func (s *Supervisor) startPrepare(name string, rec *unitRecord, u *unit.Unit) *launch {
	// The exit callback lives as long as the process: it holds the holder only, not the
	// launch with its environment and argv.
	holder := &procHolder{}
	l := &launch{name: name, rec: rec, holder: holder}
	l.spec, l.ch, l.ns, l.cleanup, l.err = s.prepareSpawn(name, u, rec, func() {
		s.exitMu.Lock()
		if !holder.launched {
			holder.exitEarly = true // queued with the fork
			s.exitMu.Unlock()
			return
		}
		s.exitQ = append(s.exitQ, exitEvent{unit: name, holder: holder})
		s.exitMu.Unlock()
		select {
		case s.exitSig <- struct{}{}:
		default:
		}
	})
	return l
}

// dispatch forks prepared starts off the loop; each is recorded by the loop
// when its fork is done (drainProcs), so that no request, exit or message
// waits for forks. Starts whose preparation failed are recorded at once.
func (s *Supervisor) dispatch(ls []*launch) {
	var todo []*launch
	for _, l := range ls {
		if l.err != nil {
			s.startFinish(l)
			continue
		}
		l.rec.launch = l
		todo = append(todo, l)
	}
	if len(todo) == 0 {
		return
	}
	s.forking.Add(len(todo))
	go s.forkAll(todo)
	// The forks begin now, not once the rest of the step is done: with a
	// CPU busy elsewhere, the new goroutine would wait for this one.
	goruntime.Gosched()
}

// forkAll forks prepared starts, several at once (a fork waits for its
// child's exec), and queues them for the loop as they are done, in their
// order: the loop records a pass's starts in the order it planned them.
func (s *Supervisor) forkAll(ls []*launch) {
	var (
		mu   sync.Mutex
		done = make([]bool, len(ls))
		next int // the first not queued
	)
	fork := func(i int) {
		l := ls[i]
		l.proc, l.err = s.opts.Runner.Start(l.spec)
		mu.Lock()
		defer mu.Unlock()
		done[i] = true
		for ; next < len(ls) && done[next]; next++ {
			s.queueStart(ls[next])
		}
	}
	if len(ls) == 1 {
		fork(0)
		return
	}
	idx := make(chan int)
	var wg sync.WaitGroup
	for range min(len(ls), forkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				fork(i)
			}
		}()
	}
	for i := range ls {
		idx <- i
	}
	close(idx)
	wg.Wait()
}

// queueStart hands a fork done to the loop, with the exit of its process if
// it was reaped already.
func (s *Supervisor) queueStart(l *launch) {
	s.exitMu.Lock()
	s.startQ = append(s.startQ, l)
	l.holder.launched = true
	if l.holder.exitEarly {
		s.exitQ = append(s.exitQ, exitEvent{unit: l.name, holder: l.holder})
	}
	s.exitMu.Unlock()
	s.forking.Done()
	select {
	case s.exitSig <- struct{}{}:
	default:
	}
}

// drainProcs records the forks done and handles the exits reaped, forks
// first: a process's exit is never handled before its start.
func (s *Supervisor) drainProcs() {
	s.exitMu.Lock()
	ls, q := s.startQ, s.exitQ
	s.startQ, s.exitQ = nil, nil
	s.exitMu.Unlock()
	for _, l := range ls {
		s.startFinish(l)
	}
	if len(ls) > 0 {
		// A start or restart waited for is done once its process is forked
		// (and, for a simple unit, active), even if it exits right after.
		s.checkWaiters()
	}
	for _, ev := range q {
		s.handleExit(ev)
	}
}

// forkers is how many forks run at once.
const forkers = 4

// startFinish records the outcome of a fork.
func (s *Supervisor) startFinish(l *launch) {
	name, rec := l.name, l.rec
	held := rec.held
	rec.launch, rec.held = nil, nil
	if l.first {
		s.firstForks--
	}
	if l.err != nil {
		if l.cleanup != nil {
			l.cleanup()
		}
		s.logf("%s: %v", name, l.err)
		s.step(name, rec, Event{Kind: EvStartFailed, Text: l.err.Error()})
		return
	}
	l.holder.proc = l.proc
	rec.proc, rec.channel, rec.notify = l.proc, l.ch, l.ns
	s.fdStarted(name, rec)
	s.step(name, rec, Event{Kind: EvStarted, PID: l.proc.PID()})
	if l.ch != nil {
		go s.pumpIPC(name, l.proc, l.ch)
	}
	for _, m := range held {
		s.handleMsg(m)
	}
}

// maxHeld bounds the messages a unit's notify socket may send before the
// loop has recorded its fork; more are dropped.
const maxHeld = 64

// sendStop asks a unit's process to stop: the IPC shutdown message for
// workers with a channel, else the stop signal.
func (s *Supervisor) sendStop(name string, rec *unitRecord, svc unit.Service, drain bool) {
	if rec.channel != nil && (svc.Type == unit.TypeIPC || svc.Type == unit.TypeOrchestrator) {
		// Sent off the loop: a worker that does not read its channel may hold
		// a write for up to a second. If it cannot be told, the stop
		// deadline's SIGKILL ends it (ipc workers get no signal).
		ch, msg := rec.channel, worker.Message{Type: "shutdown", DeadlineMS: svc.StopTimeout.Milliseconds(), Drain: drain}
		s.bg.Go(func() {
			if err := ch.Send(msg); err != nil {
				s.logf("%s: shutdown message: %v; it is killed at its stop deadline", name, err)
			}
		})
		return
	}
	sig, err := ParseSignal(svc.StopSignal)
	if err != nil {
		sig = syscall.SIGTERM
	}
	if rec.proc != nil {
		rec.proc.Signal(sig)
		if sig != syscall.SIGKILL {
			resume(rec.proc)
		}
	}
}

// release lets go of a process that was reaped: whatever it left in its
// group goes with it, its channel and socket close, its leases end.
func (s *Supervisor) release(name string, rec *unitRecord) {
	if rec.proc != nil {
		rec.proc.Signal(syscall.SIGKILL)
	}
	// Closing waits for reader goroutines that may be handing the loop a
	// message: close off the loop.
	if ch, ns := rec.channel, rec.notify; ch != nil || ns != nil {
		go func() {
			if ch != nil {
				ch.Close()
			}
			if ns != nil {
				ns.Close()
			}
		}()
	}
	s.leases.ReleaseUnit(name)
	s.fleetReleaseUnit(name)
	s.workerGone(name)
	s.fdEnded(name)
	rec.proc, rec.channel, rec.notify = nil, nil, nil
}

func (s *Supervisor) handleExit(ev exitEvent) {
	rec := s.units[ev.unit]
	proc := ev.holder.proc
	if rec == nil || proc == nil || rec.proc != proc {
		return // a stale process
	}
	s.step(ev.unit, rec, Event{Kind: EvExited, Exit: proc.Exit(), Ran: s.now().Sub(rec.StartedAt)})
}

// spawn starts a unit's process with its channel and notify socket.
// launch is a start prepared on the loop, forked by forkAll.
type launch struct {
	name    string
	rec     *unitRecord
	holder  *procHolder
	spec    Spec
	ch      *worker.Channel
	ns      *sdnotify.Server
	cleanup func() // undoes the preparation when the fork fails
	first   bool   // started by the first pass
	proc    Process
	err     error
}

// prepareSpawn makes everything a unit's process needs but the process: its
// channel, notify socket, environment and output writers.
func (s *Supervisor) prepareSpawn(name string, u *unit.Unit, rec *unitRecord, onExit func()) (Spec, *worker.Channel, *sdnotify.Server, func(), error) {
	svc := u.Service
	extra := map[string]string{
		"OPSVC_UNIT": name,
		"MANAGERPID": strconv.Itoa(os.Getpid()),
	}
	argv := svc.Exec
	var (
		ch    *worker.Channel
		files []*os.File
		ns    *sdnotify.Server
	)
	cleanup := func() {
		if ch != nil {
			ch.Close()
		}
		for _, f := range files {
			f.Close()
		}
		if ns != nil {
			ns.Close()
		}
	}
	if svc.Type == unit.TypeOrchestrator {
		cfg, err := json.Marshal(s.orchestratorConfig(u.Orchestrator))
		if err != nil {
			return Spec{}, nil, nil, nil, err
		}
		argv = []string{s.opts.Executable, "worker", "orchestrator"}
		extra["OPSVC_ORCHESTRATOR"] = string(cfg)
		extra["OPSVC_STATE"] = s.opts.Paths.State
	}
	if svc.Type == unit.TypeIPC || svc.Type == unit.TypeOrchestrator {
		c, child, err := worker.NewChannel()
		if err != nil {
			return Spec{}, nil, nil, nil, err
		}
		ch, files = c, []*os.File{child}
		for _, kv := range worker.ChildEnv(name, svc.Watchdog) {
			k, v, _ := strings.Cut(kv, "=")
			extra[k] = v
		}
	}
	if (svc.Type == unit.TypeNotify || svc.Watchdog > 0) && !s.opts.NoNotifySockets {
		// An abstract socket: no path to keep short, and reachable by a
		// worker running as another user; senders are told apart by their
		// credentials, not by file permissions.
		s.notifyN++
		addr := "@opsvc/" + strconv.Itoa(os.Getpid()) + "/" + strconv.Itoa(s.notifyN)
		srv, err := sdnotify.Listen(addr, func(m sdnotify.Message) {
			s.send(unitMsg{unit: name, notify: &m})
		})
		if err != nil {
			cleanup()
			return Spec{}, nil, nil, nil, err
		}
		ns = srv
		extra["NOTIFY_SOCKET"] = srv.Addr()
		if svc.Watchdog > 0 {
			extra["WATCHDOG_USEC"] = strconv.FormatInt(svc.Watchdog.Microseconds(), 10)
		}
	}
	env, err := unitEnv(s.env, svc, extra)
	if err != nil {
		cleanup()
		return Spec{}, nil, nil, nil, err
	}
	cred, err := credential(svc)
	if err != nil {
		cleanup()
		return Spec{}, nil, nil, nil, err
	}
	dir := svc.WorkingDirectory
	if dir == "" {
		dir = u.Dir
	}
	spec := Spec{Unit: name, Argv: argv, Env: env, Dir: dir, Credential: cred, ExtraFiles: files, OnExit: onExit}
	if s.opts.Logs != nil {
		rec.fields.Store(nil)
		spec.Stdout = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stdout", fields: &rec.fields, now: s.now}
		spec.Stderr = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stderr", fields: &rec.fields, now: s.now}
		if svc.StderrToStdout {
			spec.Stderr = spec.Stdout
		}
	}
	spec.StderrToStdout = svc.StderrToStdout
	// The runner closes the extra files whether or not the fork works.
	return spec, ch, ns, func() {
		if ch != nil {
			ch.Close()
		}
		if ns != nil {
			ns.Close()
		}
	}, nil
}

// pumpIPC forwards a worker's messages to the loop.
func (s *Supervisor) pumpIPC(name string, proc Process, ch *worker.Channel) {
	problems := ch.Problems()
	msgs := ch.Messages()
	for msgs != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			s.send(unitMsg{unit: name, proc: proc, ipc: &m})
		case err, ok := <-problems:
			if !ok {
				problems = nil
				continue
			}
			s.send(unitMsg{unit: name, proc: proc, problem: err})
		}
	}
	s.send(unitMsg{unit: name, proc: proc, eof: true})
}

// send hands a message to the loop, or drops it once the loop has ended.
func (s *Supervisor) send(m unitMsg) {
	select {
	case s.msgs <- m:
	case <-s.loopCh:
	}
}

func (s *Supervisor) handleMsg(m unitMsg) {
	rec := s.units[m.unit]
	if rec == nil {
		return
	}
	if rec.launch != nil {
		if len(rec.held) < maxHeld {
			rec.held = append(rec.held, m)
		}
		return
	}
	d := s.desired[m.unit]
	switch {
	case m.ipc != nil:
		if rec.proc != m.proc {
			// The process ended, and its end was handled, before the last
			// of its messages came through the channel (an orchestrator's
			// chain.completed, sent just before it exits): its events still
			// happened and are published; the rest was for a process that
			// no longer runs.
			if m.ipc.Type == "event" && m.proc != nil {
				s.workerEvent(m.unit, rec, d, m.proc.PID(), *m.ipc, false)
			}
			return
		}
		s.handleIPC(m.unit, rec, d, *m.ipc)
	case m.notify != nil:
		s.handleNotify(m.unit, rec, d, *m.notify)
	case m.problem != nil:
		s.emit(m.unit, rec.PID, api.UnitIPCError{Error: m.problem.Error()})
	case m.eof:
		// A worker that closes its channel must exit: one that lives on past
		// EOFGrace is killed and its exit counts as a failure (protocol).
		if rec.proc == m.proc && rec.Running && !rec.Stopping {
			s.step(m.unit, rec, Event{Kind: EvChannelClosed})
		}
	}
}

func (s *Supervisor) handleIPC(name string, rec *unitRecord, d Desired, m worker.Message) {
	switch m.Type {
	case "ready":
		s.step(name, rec, Event{Kind: EvReady})
	case "heartbeat":
		s.step(name, rec, Event{Kind: EvHeartbeat})
	case "status":
		s.step(name, rec, Event{Kind: EvStatus, Text: m.Text})
	case "event":
		s.workerEvent(name, rec, d, rec.PID, m, true)
	case "request":
		s.handleRequest(name, rec, m)
	}
}

// workerEvent publishes an event a unit's worker (pid) sent. Worker events
// are re-published under the unit's name as worker.NAME; the orchestrator's
// own chain.* and session.* events keep their types and data. current is
// false for a process that has ended already, whose events change nothing
// of the unit's running process.
func (s *Supervisor) workerEvent(name string, rec *unitRecord, d Desired, pid int, m worker.Message, current bool) {
	var data any
	if len(m.Data) > 0 {
		json.Unmarshal(m.Data, &data)
	}
	if d.Unit == nil || d.Unit.Service.Type != unit.TypeOrchestrator ||
		!(strings.HasPrefix(m.Name, "chain.") || strings.HasPrefix(m.Name, "session.")) {
		s.emit(name, pid, api.WorkerEvent{Name: m.Name, Data: data})
		return
	}
	ev := map[string]any{"name": m.Name}
	if dm, ok := data.(map[string]any); ok {
		ev = dm
	} else if data != nil {
		ev["data"] = data
	}
	if current {
		switch m.Name {
		case "session.started":
			f := map[string]string{"OPSVC_CHAIN_ID": fmt.Sprint(ev["chain_id"]), "OPSVC_SESSION": fmt.Sprint(ev["index"])}
			rec.fields.Store(&f)
		case "session.finished":
			rec.fields.Store(nil)
		}
	}
	s.publish(m.Name, name, pid, ev)
}

func (s *Supervisor) handleRequest(name string, rec *unitRecord, m worker.Message) {
	if rec.channel == nil || s.chainRequest(name, rec.channel, m) || s.fleetRequest(name, rec, m) {
		return
	}
	data, err := s.handleSessionRequest(name, rec, m.Method, m.Params)
	if err := rec.channel.Reply(m.ID, data, err); err != nil {
		s.logf("%s: reply to %s: %v", name, m.Method, err)
	}
}

func (s *Supervisor) handleNotify(name string, rec *unitRecord, d Desired, m sdnotify.Message) {
	if !rec.Running || d.Unit == nil {
		return
	}
	main := rec.PID
	allowed := m.PID == main
	if !allowed && d.Unit.Service.NotifyAccess == "all" {
		allowed = slices.Contains(m.Ancestors, main) || sdnotify.IsDescendant(m.PID, main)
	}
	if !allowed {
		s.emit(name, m.PID, api.UnitNotifyRefused{Reason: "sender is not the main process (notify_access = \"all\" accepts its descendants)"})
		return
	}
	if m.MainPID > 0 && m.MainPID != main && sdnotify.IsDescendant(m.MainPID, main) {
		// Only a pid inside the unit; the group stays the original one.
		s.step(name, rec, Event{Kind: EvMainPID, PID: m.MainPID})
	}
	if m.Status != nil {
		s.step(name, rec, Event{Kind: EvStatus, Text: *m.Status})
	}
	if m.Ready && d.Unit.Service.Type == unit.TypeNotify {
		s.step(name, rec, Event{Kind: EvReady})
	}
	if m.Watchdog {
		s.step(name, rec, Event{Kind: EvHeartbeat})
	}
	if m.WatchdogTrigger {
		s.step(name, rec, Event{Kind: EvWatchdogTrigger})
	}
	if m.ExtendTimeout > 0 {
		s.step(name, rec, Event{Kind: EvExtendTimeout, Delay: m.ExtendTimeout})
	}
	if m.Stopping {
		s.step(name, rec, Event{Kind: EvStoppingNotice})
	}
	if m.Errno != nil {
		s.step(name, rec, Event{Kind: EvError, Text: "errno " + strconv.Itoa(*m.Errno)})
	}
}

// loadResult is the units directory and the enable/disable choices as read
// by one load.
type loadResult struct {
	gen     uint64
	base    *unit.Set // the set a load of changed files only started from
	set     *unit.Set
	err     error
	choices map[string]bool
}

// loadUnits reads and parses the units directory. It may take as long as
// the loader's own time bound, so it runs off the loop; applyLoad takes its
// result on the loop.
func (s *Supervisor) loadUnits() loadResult {
	gen := s.loadGen.Add(1)
	set, err := unit.LoadCached(s.parsed, s.opts.Paths.Units, s.instancesDir())
	return loadResult{gen: gen, set: set, err: err, choices: s.choicesSnapshot()}
}

// reload re-reads the units directory and brings desired in line with it,
// on the loop (at start, before any unit runs).
func (s *Supervisor) reload(why string) ReloadResult {
	return s.applyLoad(s.loadUnits(), why)
}

// applyLoad brings desired in line with a load. A load that began before the
// last one applied is older than what is in force, and changes nothing.
func (s *Supervisor) applyLoad(r loadResult, why string) ReloadResult {
	var res ReloadResult
	if r.gen <= s.applied {
		// A newer load is in force (the watcher's, begun after this one):
		// its outcome is this reload's.
		res.Err = s.loadErr
		return res
	}
	s.loadErr = ""
	if r.err == nil && r.base != nil && r.base == s.base {
		if names, only := r.set.Changed(); only {
			return s.applyChanged(r, names, why)
		}
	}
	s.order.invalidate()
	s.touchAll()
	s.applied = r.gen
	set, err := r.set, r.err
	s.base = set
	if err != nil {
		s.logf("load units: %v", err)
		s.emit("", 0, api.ConfigInvalid{Error: err.Error()})
		res.Err = err.Error()
		s.loadErr = res.Err
		return res
	}
	s.set = set
	seen := make(map[string]bool)
	for name, u := range set.Units {
		seen[name] = true
		s.setUnit(name, u, r.choices, &res)
	}
	for name := range s.instances {
		if seen[name] {
			delete(s.instances, name)
			continue
		}
		if u, err := set.Instance(name); err == nil {
			seen[name] = true
			s.setUnit(name, u, r.choices, &res)
		}
	}
	s.errors = make(map[string][]unit.Problem)
	for name, probs := range set.Problems {
		seen[name] = true
		s.errors[name] = probs
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Error()
		}
		s.emit(name, 0, api.ConfigInvalid{Problems: msgs})
		if _, ok := s.desired[name]; !ok {
			s.desired[name] = Desired{} // shown with its error, never started
		}
	}
	for name := range s.desired {
		if !seen[name] {
			delete(s.desired, name)
			delete(s.instances, name)
			res.Removed = append(res.Removed, name)
		}
	}
	s.placeUnits()
	sort.Strings(res.Changed)
	sort.Strings(res.Added)
	sort.Strings(res.Removed)
	s.emit("", 0, api.ConfigLoaded{Reason: why, Changed: res.Changed, Added: res.Added, Removed: res.Removed, Invalid: len(set.Problems)})
	return res
}

func (s *Supervisor) setUnit(name string, u *unit.Unit, choices map[string]bool, res *ReloadResult) {
	defer s.touch(name)
	d, ok := s.desired[name]
	if !ok || d.Unit == nil {
		res.Added = append(res.Added, name)
		s.desired[name] = Desired{Unit: u, Want: (wantAtLoad(choices, name, u) || s.instances[name]) && !s.shutdown}
		return
	}
	if d.Unit.Hash != u.Hash {
		res.Changed = append(res.Changed, name)
		// A manual stop lasts until a start or a change of the unit's file
		// (while the daemon stops, nothing is wanted again).
		if !d.Want && !s.shutdown {
			d.Want = wantAtLoad(choices, name, u) || s.instances[name]
		}
	}
	d.Unit = u
	s.desired[name] = d
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Changed []string `json:"changed"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Err     string   `json:"error,omitempty"`
}

func (r ReloadResult) String() string {
	list := func(n []string) string {
		if len(n) == 0 {
			return ""
		}
		return " (" + strings.Join(n, ", ") + ")"
	}
	return fmt.Sprintf("reloaded: %d changed%s, %d added%s, %d removed%s",
		len(r.Changed), list(r.Changed), len(r.Added), list(r.Added), len(r.Removed), list(r.Removed))
}

func (s *Supervisor) statusLine() string {
	counts := s.stats.counts
	if !s.stats.built {
		s.buildUnitStats()
		counts = s.stats.counts
	}
	line := fmt.Sprintf("%d units: %d active, %d activating, %d failed, %d inactive",
		len(s.desired), counts[Active], counts[Activating], counts[Failed], counts[Inactive]+counts[Deactivating])
	if s.opts.Bus != nil {
		if t := s.opts.Bus.FaultText(); t != "" {
			line += "; " + t
		}
	}
	if t := s.fleetText(); t != "" {
		line += "; " + t
	}
	return line
}

func (s *Supervisor) updateStatus() {
	line := s.statusLine()
	if line != s.lastStat {
		s.lastStat = line
		s.notify("STATUS=" + line)
	}
}

// do runs f on the loop goroutine and waits for it.
func (s *Supervisor) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case s.reqs <- func() { f(); close(done) }:
	case <-s.loopCh:
		return errors.New("supervisor: daemon is shutting down")
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (s *Supervisor) checkWaiters() {
	if len(s.waiters) == 0 {
		return
	}
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if w.ctx.Err() != nil {
			continue
		}
		rec := s.units[w.unit]
		if rec == nil {
			rec = &unitRecord{Lifecycle: Lifecycle{State: Inactive}}
		}
		done, err := w.check(rec, s.desired[w.unit])
		if done {
			w.reply <- err
			continue
		}
		keep = append(keep, w)
	}
	clear(s.waiters[len(keep):])
	s.waiters = keep
}

// ask records an operator's start, stop or restart of a unit, on the loop.
// It answers an HTTP status and, for an error, a message ("" for a plain
// not found).
func (s *Supervisor) ask(name, verb string, drain bool, peer Peer) (int, string) {
	d, ok := s.desired[name]
	if !ok && verb != "stop" && strings.Contains(name, "@") && s.set != nil {
		u, err := s.set.Instance(name)
		if err != nil {
			return http.StatusNotFound, err.Error()
		}
		s.instances[name] = true
		d, ok = Desired{Unit: u}, true
	}
	if !ok {
		return http.StatusNotFound, ""
	}
	if d.Unit == nil && verb != "stop" {
		return http.StatusConflict, fmt.Sprintf("unit %q has no valid definition: %s", name, s.status(name).Error)
	}
	caller := peer.caller()
	switch verb {
	case "start":
		s.emit(name, 0, api.APIStart{Caller: caller})
	case "stop":
		s.emit(name, 0, api.APIStop{Caller: caller})
	case "restart":
		s.emit(name, 0, api.APIRestart{Caller: caller})
	}
	rec := s.units[name]
	switch verb {
	case "start":
		d.Want, d.Drain = true, false
		if rec == nil || !rec.busy() || rec.Stopping {
			d.StartGen++ // a new run (after the stop under way); a running unit is left as it is
		}
	case "stop":
		d.Want, d.Drain = false, drain
		if rec != nil && rec.Stopping && rec.Drain && !drain {
			s.step(name, rec, Event{Kind: EvStop, Stop: rec.StopReason, Reason: "stop without drain"})
		}
	case "restart":
		d.Want, d.Drain = true, false
		if rec != nil && rec.busy() {
			d.RestartGen++
		} else {
			d.StartGen++
		}
	}
	s.desired[name] = d
	s.order.invalidate()
	s.touch(name)
	s.supersede(name, verb)
	return http.StatusOK, ""
}

// await registers a request waiting for the end of a start, stop or restart.
func (s *Supervisor) await(ctx context.Context, name, verb string) *waiter {
	w := &waiter{ctx: ctx, unit: name, verb: verb, reply: make(chan error, 1)}
	switch verb {
	case "start":
		w.check = startDone
	case "stop":
		w.check = stopDone
	default:
		w.check = restartDone
	}
	s.waiters = append(s.waiters, w)
	return w
}

// supersede ends at once the waits on a unit that a later, opposite request
// overrides (a stop during a waiting start or restart, a start or restart
// during a waiting stop), as systemd cancels the older job.
func (s *Supervisor) supersede(name, verb string) {
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if w.unit == name && (w.verb == "stop") != (verb == "stop") {
			w.reply <- fmt.Errorf("canceled by a later %s", verb)
			continue
		}
		keep = append(keep, w)
	}
	clear(s.waiters[len(keep):])
	s.waiters = keep
}

func startDone(rec *unitRecord, d Desired) (bool, error) {
	if rec.Gen < d.StartGen {
		return false, nil
	}
	switch {
	case rec.State == Active:
		return true, nil
	case rec.State == Failed:
		return true, fmt.Errorf("unit failed (result: %s)", rec.Result)
	case rec.Settled && rec.State == Inactive:
		return true, nil
	case d.Away != "" && !rec.Running:
		return true, nil // a fleet unit another host runs
	case rec.Blocked != "" && !strings.HasPrefix(rec.Blocked, "waiting") && !strings.HasPrefix(rec.Blocked, "after"):
		return true, errors.New(rec.Blocked)
	}
	return false, nil
}

func stopDone(rec *unitRecord, d Desired) (bool, error) {
	return !rec.busy(), nil
}

func restartDone(rec *unitRecord, d Desired) (bool, error) {
	if rec.RestartGen < d.RestartGen {
		return false, nil
	}
	return startDone(rec, d)
}

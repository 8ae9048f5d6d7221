// Package supervisor is the opsvc daemon: the reconcile loop, each unit's
// state machine, the restart policy, the sd_notify server and the control
// API. It never parses TOML itself: units come from package unit.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/bus"
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
	Registry *registry.Store
	Now      func() time.Time
	Logf     func(format string, args ...any)
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
	exitSig chan struct{} // a value when exitQ has events
	msgs    chan unitMsg
	ready   chan struct{} // closed once the first plan ran
	loopCh  chan struct{} // closed when Run returns

	// Loop-owned state.
	desired  map[string]Desired
	units    map[string]*runtime
	set      *unit.Set
	errors   map[string][]unit.Problem // current load problems by unit
	runtimeI map[string]bool           // instances started by name, not by a file
	rtiSaver instancesWriter           // writes runtimeI to the state directory (instances.go)
	waiters  []*waiter
	leases   *Leases
	shutdown bool
	notifyN  int
	lastStat string
}

// runtime is the loop's record of one unit.
type runtime struct {
	Observed
	proc       Process
	channel    *worker.Channel
	notify     *sdnotify.Server
	startedAt  time.Time
	restarts   int
	exit       *ExitStatus
	result     string
	statusText string
	killResult string // "timeout" or "watchdog" when the loop killed it
	lastError  string // why the last start failed
	sources    []string
	drain      bool // stop lets an orchestrator finish its session
	// fields are extra journald fields for output lines (the running session
	// of an orchestrator); written by the loop, read by output goroutines.
	fields atomic.Pointer[map[string]string]
}

// exitEvent names a process that was reaped. holder.proc is set by the loop
// right after Start returns, so it is always set by the time the loop reads
// the event.
type exitEvent struct {
	unit   string
	holder *procHolder
}

type procHolder struct{ proc Process }

type unitMsg struct {
	unit    string
	proc    Process
	ipc     *worker.Message
	notify  *sdnotify.Message
	problem error
	eof     bool
}

type waiter struct {
	ctx   context.Context
	unit  string
	check func(*runtime, Desired) (done bool, err error)
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
		opts.Debounce = 100 * time.Millisecond
	}
	return &Supervisor{
		opts:     opts,
		now:      opts.Now,
		logf:     opts.Logf,
		env:      BaseEnv(opts.Environ),
		reqs:     make(chan func()),
		exitSig:  make(chan struct{}, 1),
		msgs:     make(chan unitMsg, 256),
		ready:    make(chan struct{}),
		loopCh:   make(chan struct{}),
		desired:  make(map[string]Desired),
		units:    make(map[string]*runtime),
		errors:   make(map[string][]unit.Problem),
		runtimeI: make(map[string]bool),
		leases:   NewLeases(),
	}, nil
}

// Ready is closed once the first plan has run.
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
	defer close(s.loopCh)
	var changes <-chan struct{}
	if s.opts.Watch {
		w, err := unit.NewWatcher(s.opts.Paths.Units, s.opts.Debounce)
		if err != nil {
			s.logf("watch %s: %v (live reload off; use opsvc reload)", s.opts.Paths.Units, err)
		} else {
			defer w.Close()
			changes = w.Changes()
		}
	}
	s.loadSpend()
	s.loadRuntimeInstances()
	s.reload("start")

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var watchdog <-chan time.Time
	if s.opts.WatchdogInterval > 0 {
		t := time.NewTicker(s.opts.WatchdogInterval)
		defer t.Stop()
		watchdog = t.C
	}
	var extend <-chan time.Time
	first := true
	done := ctx.Done()
	for {
		wake := s.reconcile()
		if first {
			first = false
			close(s.ready)
			s.publish("daemon.ready", "", os.Getpid(), map[string]any{"units": len(s.desired)})
			s.notify("READY=1\nSTATUS=" + s.statusLine())
		}
		s.updateStatus()
		if s.shutdown && s.idle() {
			s.notify("STATUS=stopped")
			return nil
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
			s.exitMu.Lock()
			q := s.exitQ
			s.exitQ = nil
			s.exitMu.Unlock()
			for _, ev := range q {
				s.handleExit(ev)
			}
		case m := <-s.msgs:
			s.handleMsg(m)
		case <-timerC:
		case <-changes:
			s.reload("watch")
		case <-watchdog:
			s.notify("WATCHDOG=1")
		case <-extend:
			s.notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(int64(s.maxStopTimeout()/time.Microsecond)+5e6, 10))
		case <-done:
			done = nil
			s.shutdown = true
			s.publish("daemon.stopping", "", os.Getpid(), nil)
			s.notify("STOPPING=1")
			s.notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(int64(s.maxStopTimeout()/time.Microsecond)+5e6, 10))
			t := time.NewTicker(time.Second)
			defer t.Stop()
			extend = t.C
			for name, d := range s.desired {
				d.Want = false
				s.desired[name] = d
			}
		}
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
	for _, rt := range s.units {
		if rt.Running {
			return false
		}
	}
	return true
}

// reconcile plans and applies until the plan is empty of process actions,
// then returns when to look again.
func (s *Supervisor) reconcile() time.Time {
	for i := 0; ; i++ {
		obs := make(map[string]Observed, len(s.units))
		for n, rt := range s.units {
			obs[n] = rt.Observed
		}
		now := s.now()
		acts, wake := Plan(s.desired, obs, now)
		changed := false
		var starts []*launch
		for _, a := range acts {
			if a.Kind == ActStart {
				starts = append(starts, s.startPrepare(a.Unit, s.rt(a.Unit), s.desired[a.Unit], now, a.Reason))
				changed = true
				continue
			}
			if s.apply(a, now) {
				changed = true
			}
		}
		if len(starts) > 0 {
			s.forkAll(starts)
			for _, l := range starts {
				s.startFinish(l)
			}
		}
		s.checkWaiters()
		if !changed || i >= 8 {
			return wake
		}
	}
}

func (s *Supervisor) rt(name string) *runtime {
	rt := s.units[name]
	if rt == nil {
		rt = &runtime{Observed: Observed{State: Inactive, Sub: "dead", Since: s.now()}}
		s.units[name] = rt
	}
	return rt
}

// setState moves a unit to a new state, refusing illegal transitions.
func (s *Supervisor) setState(name string, rt *runtime, st State, sub string) {
	if err := CheckTransition(rt.State, st); err != nil {
		s.logf("%s: %v (sub %s)", name, err, sub)
		s.publish("unit.error", name, rt.PID, map[string]any{"error": err.Error()})
		return
	}
	if rt.State != st {
		rt.Since = s.now()
	}
	rt.State, rt.Sub = st, sub
}

// apply carries out one action; it reports whether state changed in a way
// that deserves another plan.
func (s *Supervisor) apply(a Action, now time.Time) bool {
	rt := s.rt(a.Unit)
	d := s.desired[a.Unit]
	switch a.Kind {
	case ActStop:
		s.stop(a.Unit, rt, a.Stop, now, a.Reason)
		return true
	case ActKill:
		rt.Killed = true
		switch {
		case rt.Stopping:
		case a.Reason == ReasonChannelClosed:
			rt.killResult = "protocol"
		default:
			rt.killResult = "timeout"
		}
		s.publish("unit.killed", a.Unit, rt.PID, map[string]any{"reason": a.Reason})
		if rt.proc != nil {
			rt.proc.Signal(syscall.SIGKILL)
		}
		return false
	case ActWatchdog:
		rt.Killed = true
		rt.killResult = "watchdog"
		rt.WatchdogDeadline = time.Time{}
		s.publish("unit.watchdog", a.Unit, rt.PID, map[string]any{"reason": a.Reason})
		if rt.proc != nil {
			rt.proc.Signal(syscall.SIGKILL)
		}
		return false
	case ActFail:
		rt.Settled = true
		rt.Gen = d.StartGen
		rt.RestartGen = d.RestartGen
		rt.RestartAt = time.Time{}
		rt.result = a.Reason
		s.setState(a.Unit, rt, Failed, a.Reason)
		s.publish("unit.failed", a.Unit, 0, map[string]any{"result": a.Reason})
		return true
	case ActBlock:
		rt.Blocked = a.Reason
		return false
	case ActForget:
		delete(s.units, a.Unit)
		return false
	}
	return false
}

// startPrepare records a start and prepares its process; forkAll and
// startFinish complete it.
func (s *Supervisor) startPrepare(name string, rt *runtime, d Desired, now time.Time, reason string) *launch {
	u := d.Unit
	svc := u.Service
	if !rt.RestartAt.IsZero() && rt.Gen >= d.StartGen {
		rt.restarts++
	}
	if d.StartGen > rt.Gen {
		rt.Failures = 0
		rt.Starts = nil
	}
	rt.Gen, rt.RestartGen = d.StartGen, d.RestartGen
	rt.Settled, rt.Stopping, rt.Killed, rt.StopReason = false, false, false, StopNone
	rt.RestartAt, rt.StopDeadline, rt.WatchdogDeadline, rt.StartDeadline, rt.EOFDeadline = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	rt.Blocked, rt.killResult, rt.statusText = "", "", ""
	rt.drain = false
	rt.Starts = append(trimStarts(rt.Starts, now, svc.StartLimitInterval), now)
	rt.Hash = u.Hash
	rt.sources = u.Sources
	s.setState(name, rt, Activating, "start")
	s.publish("unit.starting", name, 0, map[string]any{"reason": reason})

	l := &launch{name: name, rt: rt, svc: svc, now: now, holder: &procHolder{}}
	l.spec, l.ch, l.ns, l.cleanup, l.err = s.prepareSpawn(name, u, rt, func() {
		s.exitMu.Lock()
		s.exitQ = append(s.exitQ, exitEvent{unit: name, holder: l.holder})
		s.exitMu.Unlock()
		select {
		case s.exitSig <- struct{}{}:
		default:
		}
	})
	return l
}

// forkAll forks prepared starts, several at once: a fork waits for its
// child's exec, and those waits overlap.
func (s *Supervisor) forkAll(ls []*launch) {
	var todo []*launch
	for _, l := range ls {
		if l.err == nil {
			todo = append(todo, l)
		}
	}
	fork := func(l *launch) {
		l.proc, l.err = s.opts.Runner.Start(l.spec)
	}
	if len(todo) == 1 {
		fork(todo[0])
		return
	}
	next := make(chan *launch)
	var wg sync.WaitGroup
	for i := 0; i < min(len(todo), forkers); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				fork(l)
			}
		}()
	}
	for _, l := range todo {
		next <- l
	}
	close(next)
	wg.Wait()
}

// forkers is how many forks run at once.
const forkers = 4

// startFinish records the outcome of a fork.
func (s *Supervisor) startFinish(l *launch) {
	name, rt, svc, now := l.name, l.rt, l.svc, l.now
	if l.err != nil {
		if l.cleanup != nil {
			l.cleanup()
		}
		rt.lastError = l.err.Error()
		s.logf("%s: %v", name, l.err)
		// An exec failure counts as a failed run (systemd's 203/EXEC).
		rt.Running = false
		s.afterExit(name, rt, ExitStatus{Code: 203}, 0, "")
		return
	}
	proc, ch := l.proc, l.ch
	rt.lastError = ""
	l.holder.proc = proc
	rt.proc, rt.channel, rt.notify = proc, ch, l.ns
	rt.PID = proc.PID()
	rt.Running = true
	rt.startedAt = now
	s.publish("unit.started", name, rt.PID, nil)
	if ch != nil {
		go s.pumpIPC(name, proc, ch)
	}
	switch svc.Type {
	case unit.TypeSimple:
		s.ready_(name, rt, now)
	default:
		if svc.StartTimeout > 0 {
			rt.StartDeadline = now.Add(svc.StartTimeout)
		}
	}
}

func trimStarts(starts []time.Time, now time.Time, interval time.Duration) []time.Time {
	out := starts[:0]
	for _, t := range starts {
		if now.Sub(t) < interval {
			out = append(out, t)
		}
	}
	return out
}

// ready_ marks a unit active (its readiness rule was met).
func (s *Supervisor) ready_(name string, rt *runtime, now time.Time) {
	if rt.State != Activating {
		return
	}
	rt.StartDeadline = time.Time{}
	s.setState(name, rt, Active, "running")
	if d := s.desired[name]; d.Unit != nil && d.Unit.Service.Watchdog > 0 {
		rt.WatchdogDeadline = now.Add(d.Unit.Service.Watchdog)
	}
	s.publish("unit.ready", name, rt.PID, nil)
}

func (s *Supervisor) stop(name string, rt *runtime, why StopReason, now time.Time, reason string) {
	d := s.desired[name]
	svc := unit.DefaultService()
	if d.Unit != nil {
		svc = d.Unit.Service
	}
	rt.Stopping = true
	rt.StopReason = why
	rt.StopDeadline = now.Add(svc.StopTimeout)
	drain := rt.drain && svc.Type == unit.TypeOrchestrator
	if drain {
		// The session finishes first; a plain stop cuts it short.
		rt.StopDeadline = time.Time{}
	}
	rt.WatchdogDeadline = time.Time{}
	s.setState(name, rt, Deactivating, "stop")
	s.publish("unit.stopping", name, rt.PID, map[string]any{"reason": reason})
	if rt.channel != nil && (svc.Type == unit.TypeIPC || svc.Type == unit.TypeOrchestrator) {
		// Sent off the loop: a worker that does not read its channel may hold
		// a write for up to a second. If it cannot be told, the stop
		// deadline's SIGKILL ends it (ipc workers get no signal).
		ch, msg := rt.channel, worker.Message{Type: "shutdown", DeadlineMS: svc.StopTimeout.Milliseconds(), Drain: drain}
		go func() {
			if err := ch.Send(msg); err != nil {
				s.logf("%s: shutdown message: %v; it is killed at its stop deadline", name, err)
			}
		}()
		return
	}
	sig, err := ParseSignal(svc.StopSignal)
	if err != nil {
		sig = syscall.SIGTERM
	}
	if rt.proc != nil {
		rt.proc.Signal(sig)
		if sig != syscall.SIGKILL {
			rt.proc.Signal(syscall.SIGCONT)
		}
	}
}

func (s *Supervisor) handleExit(ev exitEvent) {
	rt := s.units[ev.unit]
	proc := ev.holder.proc
	if rt == nil || proc == nil || rt.proc != proc {
		return // a stale process
	}
	st := proc.Exit()
	// Whatever the main process left in its group goes with it.
	proc.Signal(syscall.SIGKILL)
	// Closing waits for reader goroutines that may be handing the loop a
	// message: close off the loop.
	if ch, ns := rt.channel, rt.notify; ch != nil || ns != nil {
		go func() {
			if ch != nil {
				ch.Close()
			}
			if ns != nil {
				ns.Close()
			}
		}()
	}
	pid := rt.PID
	s.leases.ReleaseUnit(ev.unit)
	s.workerGone(ev.unit, st)
	rt.proc, rt.channel, rt.notify = nil, nil, nil
	rt.Running = false
	rt.PID = 0
	rt.exit = &st
	ran := s.now().Sub(rt.startedAt)
	data := map[string]any{"code": st.Code, "signal": st.Signal}
	if rt.Stopping {
		sub := "dead"
		if rt.Killed {
			sub = "timeout"
		}
		d := s.desired[ev.unit]
		rt.Stopping = false
		rt.Failures = 0
		rt.RestartAt = time.Time{}
		rt.StopDeadline, rt.EOFDeadline = time.Time{}, time.Time{}
		switch rt.StopReason {
		case StopRestart:
			rt.RestartGen = d.RestartGen
		}
		rt.result = "success"
		s.setState(ev.unit, rt, Inactive, sub)
		data["reason"] = rt.StopReason.String()
		s.publish("unit.stopped", ev.unit, pid, data)
		return
	}
	s.publish("unit.exited", ev.unit, pid, data)
	s.afterExit(ev.unit, rt, st, ran, rt.killResult)
}

// afterExit applies the restart policy to an exit nobody asked for.
func (s *Supervisor) afterExit(name string, rt *runtime, st ExitStatus, ran time.Duration, killResult string) {
	d := s.desired[name]
	if d.Unit == nil {
		s.setState(name, rt, Inactive, "dead")
		return
	}
	dec := OnExit(d.Unit.Service, st, ran, rt.Failures, killResult)
	rt.exit = &st
	rt.result = dec.Result
	rt.Failures = dec.Failures
	rt.killResult = ""
	rt.StartDeadline, rt.WatchdogDeadline, rt.EOFDeadline = time.Time{}, time.Time{}, time.Time{}
	switch {
	case d.Unit.Service.Type == unit.TypeOneshot && dec.Result == "success":
		rt.Settled = true
		s.setState(name, rt, Active, "exited")
		s.publish("unit.ready", name, 0, map[string]any{"result": "success"})
	case dec.Restart && !s.shutdown && d.Want:
		rt.RestartAt = s.now().Add(dec.Delay)
		s.setState(name, rt, Activating, "auto-restart")
		s.publish("unit.restarting", name, 0, map[string]any{"delay_ms": dec.Delay.Milliseconds(), "result": dec.Result})
	case dec.Failed || (dec.Restart && dec.Result != "success"):
		rt.Settled = true
		s.setState(name, rt, Failed, "failed")
		s.publish("unit.failed", name, 0, map[string]any{"result": dec.Result, "code": st.Code, "signal": st.Signal})
	default:
		rt.Settled = true
		s.setState(name, rt, Inactive, "dead")
	}
}

// spawn starts a unit's process with its channel and notify socket.
// launch is a start prepared on the loop, forked by forkAll.
type launch struct {
	name    string
	rt      *runtime
	svc     unit.Service
	now     time.Time
	holder  *procHolder
	spec    Spec
	ch      *worker.Channel
	ns      *sdnotify.Server
	cleanup func() // undoes the preparation when the fork fails
	proc    Process
	err     error
}

// prepareSpawn makes everything a unit's process needs but the process: its
// channel, notify socket, environment and output writers.
func (s *Supervisor) prepareSpawn(name string, u *unit.Unit, rt *runtime, onExit func()) (Spec, *worker.Channel, *sdnotify.Server, func(), error) {
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
		rt.fields.Store(nil)
		spec.Stdout = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stdout", fields: &rt.fields, now: s.now}
		spec.Stderr = &lineWriter{logs: s.opts.Logs, unit: name, stream: "stderr", fields: &rt.fields, now: s.now}
	}
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
	rt := s.units[m.unit]
	if rt == nil {
		return
	}
	now := s.now()
	d := s.desired[m.unit]
	switch {
	case m.ipc != nil:
		if rt.proc != m.proc {
			return
		}
		s.handleIPC(m.unit, rt, d, *m.ipc, now)
	case m.notify != nil:
		s.handleNotify(m.unit, rt, d, *m.notify, now)
	case m.problem != nil:
		s.publish("unit.ipc_error", m.unit, rt.PID, map[string]any{"error": m.problem.Error()})
	case m.eof:
		// A worker that closes its channel must exit: one that lives on past
		// EOFGrace is killed and its exit counts as a failure (protocol).
		if rt.proc == m.proc && rt.Running && !rt.Stopping {
			s.publish("unit.ipc_closed", m.unit, rt.PID, nil)
			rt.EOFDeadline = now.Add(EOFGrace)
		}
	}
}

func (s *Supervisor) handleIPC(name string, rt *runtime, d Desired, m worker.Message, now time.Time) {
	switch m.Type {
	case "ready":
		s.ready_(name, rt, now)
	case "heartbeat":
		if !rt.WatchdogDeadline.IsZero() && d.Unit != nil {
			rt.WatchdogDeadline = now.Add(d.Unit.Service.Watchdog)
		}
	case "status":
		rt.statusText = m.Text
		s.publish("unit.status", name, rt.PID, map[string]any{"text": m.Text})
	case "event":
		var data any
		if len(m.Data) > 0 {
			json.Unmarshal(m.Data, &data)
		}
		ev := map[string]any{"name": m.Name}
		if data != nil {
			ev["data"] = data
		}
		// Worker events are re-published under the unit's name as
		// worker.NAME; the orchestrator's own chain.* and session.* events
		// keep their types.
		typ := "worker." + m.Name
		switch {
		case m.Name == "":
			typ = "worker.event"
		case d.Unit != nil && d.Unit.Service.Type == unit.TypeOrchestrator &&
			(strings.HasPrefix(m.Name, "chain.") || strings.HasPrefix(m.Name, "session.")):
			typ = m.Name
			if dm, ok := data.(map[string]any); ok {
				ev = dm
			}
			switch typ {
			case "session.started":
				f := map[string]string{"OPSVC_CHAIN_ID": fmt.Sprint(ev["chain_id"]), "OPSVC_SESSION": fmt.Sprint(ev["index"])}
				rt.fields.Store(&f)
			case "session.finished":
				rt.fields.Store(nil)
			}
		}
		s.publish(typ, name, rt.PID, ev)
	case "request":
		s.handleRequest(name, rt, m)
	}
}

func (s *Supervisor) handleRequest(name string, rt *runtime, m worker.Message) {
	if rt.channel == nil || s.chainRequest(name, rt.channel, m) {
		return
	}
	data, err := s.handleSessionRequest(name, rt, m.Method, m.Params)
	if err := rt.channel.Reply(m.ID, data, err); err != nil {
		s.logf("%s: reply to %s: %v", name, m.Method, err)
	}
}

func (s *Supervisor) handleNotify(name string, rt *runtime, d Desired, m sdnotify.Message, now time.Time) {
	if !rt.Running || d.Unit == nil {
		return
	}
	main := rt.PID
	allowed := m.PID == main
	if !allowed && d.Unit.Service.NotifyAccess == "all" {
		allowed = sdnotify.IsDescendant(m.PID, main)
	}
	if !allowed {
		s.publish("unit.notify_refused", name, m.PID, map[string]any{"reason": "sender is not the main process (notify_access = \"all\" accepts its descendants)"})
		return
	}
	if m.MainPID > 0 && m.MainPID != main {
		if sdnotify.IsDescendant(m.MainPID, main) {
			// Only a pid inside the unit; the group stays the original one.
			rt.PID = m.MainPID
		}
	}
	if m.Status != nil {
		rt.statusText = *m.Status
	}
	if m.Ready && d.Unit.Service.Type == unit.TypeNotify {
		s.ready_(name, rt, now)
	}
	if m.Watchdog && !rt.WatchdogDeadline.IsZero() {
		rt.WatchdogDeadline = now.Add(d.Unit.Service.Watchdog)
	}
	if m.WatchdogTrigger && rt.State == Active {
		rt.WatchdogDeadline = now
	}
	if m.ExtendTimeout > 0 {
		switch {
		case rt.Stopping:
			rt.StopDeadline = now.Add(m.ExtendTimeout)
		case rt.State == Activating:
			rt.StartDeadline = now.Add(m.ExtendTimeout)
		}
	}
	if m.Stopping && rt.State == Active {
		s.setState(name, rt, Active, "stopping")
	}
	if m.Errno != nil {
		rt.lastError = "errno " + strconv.Itoa(*m.Errno)
	}
}

// reload re-reads the units directory and brings desired in line with it.
func (s *Supervisor) reload(why string) ReloadResult {
	var res ReloadResult
	set, err := unit.Load(s.opts.Paths.Units)
	if err != nil {
		s.logf("load units: %v", err)
		s.publish("config.invalid", "", 0, map[string]any{"error": err.Error()})
		res.Err = err.Error()
		return res
	}
	s.set = set
	seen := make(map[string]bool)
	for name, u := range set.Units {
		seen[name] = true
		s.setUnit(name, u, &res)
	}
	for name := range s.runtimeI {
		if seen[name] {
			delete(s.runtimeI, name)
			continue
		}
		if u, err := set.Instance(name); err == nil {
			seen[name] = true
			s.setUnit(name, u, &res)
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
		s.publish("config.invalid", name, 0, map[string]any{"problems": msgs})
		if _, ok := s.desired[name]; !ok {
			s.desired[name] = Desired{} // shown with its error, never started
		}
	}
	for name := range s.desired {
		if !seen[name] {
			delete(s.desired, name)
			delete(s.runtimeI, name)
			res.Removed = append(res.Removed, name)
		}
	}
	sort.Strings(res.Changed)
	sort.Strings(res.Added)
	sort.Strings(res.Removed)
	s.publish("config.loaded", "", 0, map[string]any{"reason": why, "changed": res.Changed, "added": res.Added, "removed": res.Removed, "invalid": len(set.Problems)})
	return res
}

func (s *Supervisor) setUnit(name string, u *unit.Unit, res *ReloadResult) {
	d, ok := s.desired[name]
	if !ok || d.Unit == nil {
		if !ok || d.Unit == nil {
			res.Added = append(res.Added, name)
		}
		s.desired[name] = Desired{Unit: u, Want: u.Enabled || s.runtimeI[name]}
		return
	}
	if d.Unit.Hash != u.Hash {
		res.Changed = append(res.Changed, name)
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
	counts := map[State]int{}
	for name := range s.desired {
		st := Inactive
		if rt := s.units[name]; rt != nil {
			st = rt.State
		}
		counts[st]++
	}
	return fmt.Sprintf("%d units: %d active, %d activating, %d failed, %d inactive",
		len(s.desired), counts[Active], counts[Activating], counts[Failed], counts[Inactive]+counts[Deactivating])
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
		rt := s.units[w.unit]
		if rt == nil {
			rt = &runtime{Observed: Observed{State: Inactive}}
		}
		done, err := w.check(rt, s.desired[w.unit])
		if done {
			w.reply <- err
			continue
		}
		keep = append(keep, w)
	}
	s.waiters = keep
}

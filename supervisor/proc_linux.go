package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/proctrack"
	"github.com/opsvc/opsvc/unit"
)

// ExecRunner forks real processes, each in its own process group. With
// ReapAll it is the process's only reaper: it sets PR_SET_CHILD_SUBREAPER and
// reaps every child, orphans included, on SIGCHLD. Without it, each process
// is waited for by pid, which leaves other children of the process alone
// (tests, libraries). After Track, every process a worker starts is tracked
// (a cgroup per run, or its process group and a record) and ended with it.
//
// Forks happen on OS threads locked for the runner's life. A runner that does
// not track gives its workers SIGKILL as their parent-death signal, which
// Linux ties to the thread that forked, not to the process: a thread that
// exited would kill its workers. A tracking runner gives none: its workers
// survive an execve of the daemon (which ends every thread but the caller)
// and a crash of it under systemd's fd store, and the tracker, the next
// daemon on the state directory or systemd ends what is left otherwise.
type ExecRunner struct {
	reapAll bool
	track   *proctrack.Tracker
	forks   chan func()
	// extra: with forks served on the main thread, the starts of tracked
	// runs may also go to these locked threads (maxForkThreads), so that
	// forks overlap; nil otherwise.
	extra   chan func()
	forkers sync.WaitGroup

	// forkMu: starts hold it shared around fork+register, and the exit
	// poller around its reaping by pid; a sweep (wait4(-1)) and a freeze
	// hold it exclusively, so no child is reaped before it is registered and
	// no pid is reused while its exit is being looked up.
	forkMu sync.RWMutex
	mu     sync.Mutex
	procs  map[int]*execProc
	exitp  *exitPoller       // nil without reapAll
	byFD   map[int]*execProc // children by pidfd; under mu
	// unpolled are the registered children without a pidfd, looked at
	// one by one at each SIGCHLD; pollDead: the exit poller failed, every
	// SIGCHLD sweeps. Under mu.
	unpolled map[*execProc]struct{}
	pollDead bool
	fdLimit  int // the open-files limit; 0 = unknown
	reapers  sync.WaitGroup
	// sweepOnly forks without pidfds, as on a kernel that has none.
	sweepOnly bool
	out       *outputPoller
	devnull   int // every worker's stdin
	stop      chan struct{}
	done      chan struct{}

	// Adopted processes that are not children, waited for by pidfd.
	pidfds   map[*os.File]bool // under mu
	watchers sync.WaitGroup

	// Exits of children reaped before they were adopted after a
	// handover, until adoption is over (adoptDone); under mu.
	adopting bool
	exits    map[int]unix.WaitStatus
	// leftovers is the check for leftovers of a daemon that handed over,
	// run once adoption is over (TrackKeeping, adoptDone).
	leftovers func()

	// Children run by RunChild, whose exits the reaper hands over; under
	// mu.
	waited map[int]chan unix.WaitStatus

	mainForks bool // forks run on the process's main thread (NewExecRunnerOnMain)

	// Starts go through a spawn helper once spawnFrom workers run (-1:
	// never); see spawn_linux.go.
	spawnFrom   int
	spawnMu     sync.Mutex
	spawner     *spawner // under spawnMu
	spawnStarts int      // helpers started; under spawnMu
}

// NewExecRunner returns a runner; Close stops its reaper.
func NewExecRunner(reapAll bool) (*ExecRunner, error) { return newExecRunner(reapAll, nil) }

// newExecRunner forks on its own locked threads, or, with forks set, by
// sending each fork to forks, whose reader runs it on its thread.
func newExecRunner(reapAll bool, forks chan func()) (*ExecRunner, error) {
	out, err := newOutputPoller()
	if err != nil {
		return nil, err
	}
	devnull, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("supervisor: open %s: %w", os.DevNull, err)
	}
	r := &ExecRunner{reapAll: reapAll, procs: make(map[int]*execProc), byFD: make(map[int]*execProc), unpolled: make(map[*execProc]struct{}), fdLimit: openFileLimit(), out: out, devnull: devnull, stop: make(chan struct{}), done: make(chan struct{}), forks: forks, adopting: true, mainForks: forks != nil, spawnFrom: spawnAbove}
	if forks == nil {
		r.forks = make(chan func())
		for range forkThreads {
			r.forkers.Add(1)
			go r.forker(r.forks)
		}
	} else if n := min(goruntime.GOMAXPROCS(0), maxForkThreads) - 1; n > 0 {
		r.extra = make(chan func())
		for range n {
			r.forkers.Add(1)
			go r.forker(r.extra)
		}
	}
	if !reapAll {
		close(r.done)
		return r, nil
	}
	fail := func(err error) (*ExecRunner, error) {
		close(r.stop)
		r.forkers.Wait()
		out.Close()
		unix.Close(devnull)
		return nil, err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("supervisor: set child subreaper: %w", err))
	}
	exitp, err := newExitPoller()
	if err != nil {
		return fail(err)
	}
	r.exitp = exitp
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	sig := make(chan struct{}, 1)
	r.reapers.Add(2)
	go r.pollExits()
	go func() {
		defer r.reapers.Done()
		for {
			select {
			case <-sigc:
				select {
				case sig <- struct{}{}:
				default:
				}
			case <-r.stop:
				signal.Stop(sigc)
				return
			}
		}
	}()
	go func() {
		defer close(r.done)
		r.reapSignals(sig)
	}()
	return r, nil
}

// forkThreads is how many locked threads fork; Start calls beyond that wait.
// Several, so that forks overlap: a tracked worker has no parent-death
// signal, so an execve (which ends every thread but the caller) keeps the
// workers every thread forked. An untracked runner's workers have one and
// do not survive an exec of the process.
const forkThreads = 4

// maxForkThreads bounds the threads a runner forking on the main thread
// forks on: the main one and, with as many CPUs, extra ones.
const maxForkThreads = 4

// forker runs forks sent to q on a thread locked until the runner closes.
func (r *ExecRunner) forker(q chan func()) {
	defer r.forkers.Done()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	for {
		select {
		case f := <-q:
			f()
		case <-r.stop:
			return
		}
	}
}

// RunOnForker runs f on one of the locked threads that fork workers, while no
// fork is in flight and no child is reaped; starts wait until f returns. It
// is for replacing the process image (execve) at a point where every started
// worker is registered and every exit not yet reaped stays with the kernel
// for the next image to collect. f must not start processes.
func (r *ExecRunner) RunOnForker(f func()) error {
	done := make(chan struct{})
	run := func() {
		defer close(done)
		r.forkMu.Lock()
		defer r.forkMu.Unlock()
		f()
	}
	select {
	case r.forks <- run:
		<-done
		return nil
	case <-r.stop:
		return errors.New("supervisor: run on the fork thread: the runner is closed")
	}
}

// Track makes the runner track every process each worker starts, keeping a
// record in stateDir, and first ends whatever a previous daemon on stateDir
// left running (each unit's leftovers are published as daemon.leftovers;
// processes found outside a unit's process group as unit.escaped). It must be
// called before the first Start. It returns how processes are tracked.
func (r *ExecRunner) Track(stateDir string, publish func(unit string, data api.EventData), logf func(string, ...any)) (string, error) {
	return r.trackWith(proctrack.Options{StateDir: stateDir, Publish: publish, Logf: logf})
}

func (r *ExecRunner) trackWith(opts proctrack.Options) (string, error) {
	if r.track != nil {
		return "", errors.New("supervisor: track: already tracking")
	}
	t, err := proctrack.Open(opts)
	if err != nil {
		return "", fmt.Errorf("supervisor: track processes: %w", err)
	}
	left := t.Sweep()
	r.track = t
	how := "by process group and a record of pids (no cgroup v2: %s)"
	dir, why := t.Cgroup()
	if dir != "" {
		how, why = "in cgroup %s", dir
	}
	how = fmt.Sprintf(how, why)
	n := 0
	for _, l := range left {
		n += len(l.PIDs)
	}
	if n > 0 {
		how += fmt.Sprintf("; ended %d process(es) left by a previous daemon", n)
	}
	return how, nil
}

// Close stops the reaper and the output reader; with tracking, it first ends
// every process of a run still tracked.
func (r *ExecRunner) Close() error {
	select {
	case <-r.stop:
		return nil
	default:
		close(r.stop)
	}
	if r.track != nil {
		r.track.Close()
	}
	r.forkers.Wait()
	r.closeSpawner()
	<-r.done
	if r.exitp != nil {
		r.stopPolling()
		r.reapers.Wait()
		r.mu.Lock()
		for fd := range r.byFD {
			unix.Close(fd)
		}
		r.byFD = nil
		r.mu.Unlock()
		r.exitp.close()
	}
	r.stopWatching()
	unix.Close(r.devnull)
	return r.out.Close()
}

// Start forks spec's process in a new process group.
func (r *ExecRunner) Start(spec Spec) (Process, error) {
	// The extra files are the child's; ours are closed however this ends.
	defer func() {
		for _, f := range spec.ExtraFiles {
			f.Close()
		}
	}()
	if len(spec.Argv) == 0 {
		return nil, errors.New("supervisor: start: empty exec")
	}
	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return nil, err
	}
	outR, outW, err := r.pipe(spec.Stdout)
	if err != nil {
		return nil, err
	}
	var errR *outPipe
	errW := outW
	if !spec.StderrToStdout {
		if errR, errW, err = r.pipe(spec.Stderr); err != nil {
			unix.Close(outW)
			return nil, err
		}
	}
	files := []uintptr{uintptr(r.devnull), uintptr(outW), uintptr(errW)}
	for _, f := range spec.ExtraFiles {
		files = append(files, f.Fd())
	}
	env := spec.Env
	var run *proctrack.Run
	if r.track != nil {
		run = r.track.Begin(spec.Unit)
		env = make([]string, 0, len(spec.Env)+1)
		for _, kv := range spec.Env {
			if !strings.HasPrefix(kv, proctrack.MarkerVar+"=") {
				env = append(env, kv)
			}
		}
		env = append(env, run.Env())
	}
	sys := &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: spec.Credential,
	}
	if run == nil {
		sys.Pdeathsig = syscall.SIGKILL
	}
	if run != nil && run.CgroupFD() >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, run.CgroupFD()
	}
	attr := &syscall.ProcAttr{Dir: spec.Dir, Env: env, Files: files, Sys: sys}
	p := &execProc{done: make(chan struct{}), onExit: spec.OnExit, run: run, stdout: outR, stderr: errR}
	var pid int
	pidfd := -1
	if r.reapAll && !r.sweepOnly {
		sys.PidFD = &pidfd
	}
	fork := func() {
		r.forkMu.RLock()
		defer r.forkMu.RUnlock()
		spawned := false
		if run != nil && run.CgroupFD() < 0 && r.useSpawner() {
			// Tracked without a cgroup, and with no parent-death signal,
			// which a worker forked by the helper could not have.
			pid, err = r.spawnVia(path, spec.Argv, attr)
			spawned = !errors.Is(err, errSpawnerGone) && !errors.Is(err, errSpawnSkip)
			if spawned && err == nil && sys.PidFD != nil {
				if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
					pidfd, err = -1, nil // watched by pid
				}
			}
		}
		if !spawned {
			pid, err = syscall.ForkExec(path, spec.Argv, attr)
		}
		if err != nil && !spawned && sys.PidFD != nil && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) {
			// A kernel without pidfds, or no file left for one: the
			// child is reaped without.
			sys.PidFD, pidfd = nil, -1
			pid, err = syscall.ForkExec(path, spec.Argv, attr)
		}
		if err != nil && !spawned && sys.UseCgroupFD && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
			// A kernel that cannot fork into a cgroup: fork, then move.
			sys.UseCgroupFD = false
			pid, err = syscall.ForkExec(path, spec.Argv, attr)
			if err == nil {
				if merr := run.Moved(pid); merr != nil {
					err = fmt.Errorf("move into %s: %w", run.Cgroup(), merr)
					syscall.Kill(-pid, syscall.SIGKILL)
				}
			}
		}
		if err == nil {
			p.pid = pid
			if run != nil {
				run.Started(pid)
			}
			if r.reapAll {
				r.mu.Lock()
				r.watch(p, pidfd)
				r.mu.Unlock()
			}
		} else if run != nil {
			run.Failed()
		}
	}
	forked := make(chan struct{})
	job := func() { fork(); close(forked) }
	var extra chan func()
	if run != nil {
		// No parent-death signal: any locked thread may fork it (see
		// ExecRunner). A worker with one is forked on the main thread.
		extra = r.extra
	}
	select {
	case r.forks <- job:
		<-forked
	case extra <- job:
		<-forked
	case <-r.stop:
		err = errors.New("the runner is closed")
	}
	// The read ends see EOF once the whole group has closed these.
	unix.Close(outW)
	if errW != outW {
		unix.Close(errW)
	}
	if err != nil {
		return nil, fmt.Errorf("supervisor: start %s: %w", spec.Argv[0], err)
	}
	if !r.reapAll {
		go p.wait()
	}
	return p, nil
}

// pipe makes an output pipe. Near the open-files limit it first gives up
// pidfds (shed), and once more when the pipe finds no file.
func (r *ExecRunner) pipe(w io.Writer) (*outPipe, int, error) {
	rd, wr, err := r.out.pipe(w)
	if err != nil && (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) && r.exitp != nil && r.shed(64) > 0 {
		rd, wr, err = r.out.pipe(w)
	}
	if err == nil && r.exitp != nil && r.nearLimit(wr) {
		r.shed(shedEach)
	}
	return rd, wr, err
}

// lookPath resolves a bare command name in the PATH the child will get.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	if p, err := unit.LookPath(name, path); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("supervisor: start %s: executable file not found in PATH (give an absolute path in exec, or fix PATH)", name)
}

type execProc struct {
	pid    int
	pidfd  int // watched by the runner's exit poller; -1 = none; under the runner's mu
	done   chan struct{}
	exit   ExitStatus
	onExit func()
	run    *proctrack.Run // nil = not tracked

	stdout, stderr *outPipe // read ends of its output, for a handover
}

func (p *execProc) PID() int              { return p.pid }
func (p *execProc) Done() <-chan struct{} { return p.done }
func (p *execProc) Exit() ExitStatus      { return p.exit }

func (p *execProc) Signal(sig syscall.Signal) error {
	if p.run != nil {
		p.run.Signal(sig)
		return nil
	}
	err := syscall.Kill(-p.pid, sig)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}

func (p *execProc) wait() {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			p.exit = ExitStatus{Code: 255}
			if p.run != nil {
				p.run.Exited()
			}
			close(p.done)
			if p.onExit != nil {
				p.onExit()
			}
			return
		}
		p.exited(ws)
		return
	}
}

func (p *execProc) exited(ws unix.WaitStatus) {
	switch {
	case ws.Signaled():
		p.exit = ExitStatus{Code: 128 + int(ws.Signal()), Signal: SignalName(ws.Signal())}
	default:
		p.exit = ExitStatus{Code: ws.ExitStatus()}
	}
	if p.run != nil {
		p.run.Exited()
	}
	close(p.done)
	if p.onExit != nil {
		p.onExit()
	}
}

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/unit"
)

// ExecRunner forks real processes, each in its own process group. With
// ReapAll it is the process's only reaper: it sets PR_SET_CHILD_SUBREAPER and
// reaps every child, orphans included, on SIGCHLD. Without it, each process
// is waited for by pid, which leaves other children of the process alone
// (tests, libraries).
type ExecRunner struct {
	reapAll bool

	// forkMu: starts hold it shared around fork+register, the reaper holds it
	// exclusively, so no child is reaped before it is registered.
	forkMu  sync.RWMutex
	mu      sync.Mutex
	procs   map[int]*execProc
	out     *outputPoller
	devnull int // every worker's stdin
	stop    chan struct{}
	done    chan struct{}
}

// NewExecRunner returns a runner; Close stops its reaper.
func NewExecRunner(reapAll bool) (*ExecRunner, error) {
	out, err := newOutputPoller()
	if err != nil {
		return nil, err
	}
	devnull, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("supervisor: open %s: %w", os.DevNull, err)
	}
	r := &ExecRunner{reapAll: reapAll, procs: make(map[int]*execProc), out: out, devnull: devnull, stop: make(chan struct{}), done: make(chan struct{})}
	if !reapAll {
		close(r.done)
		return r, nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		out.Close()
		unix.Close(devnull)
		return nil, fmt.Errorf("supervisor: set child subreaper: %w", err)
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	go func() {
		defer close(r.done)
		defer signal.Stop(sigc)
		for {
			select {
			case <-sigc:
				r.reap()
			case <-r.stop:
				r.reap()
				return
			}
		}
	}()
	return r, nil
}

// Close stops the reaper and the output reader.
func (r *ExecRunner) Close() error {
	select {
	case <-r.stop:
		return nil
	default:
		close(r.stop)
	}
	<-r.done
	unix.Close(r.devnull)
	return r.out.Close()
}

func (r *ExecRunner) reap() {
	r.forkMu.Lock()
	defer r.forkMu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		p := r.procs[pid]
		delete(r.procs, pid)
		r.mu.Unlock()
		if p != nil {
			p.exited(ws)
		}
	}
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
	outW, err := r.out.pipe(spec.Stdout)
	if err != nil {
		return nil, err
	}
	errW, err := r.out.pipe(spec.Stderr)
	if err != nil {
		unix.Close(outW)
		return nil, err
	}
	files := []uintptr{uintptr(r.devnull), uintptr(outW), uintptr(errW)}
	for _, f := range spec.ExtraFiles {
		files = append(files, f.Fd())
	}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: spec.Credential,
		},
	}
	p := &execProc{done: make(chan struct{}), onExit: spec.OnExit}
	r.forkMu.RLock()
	pid, err := syscall.ForkExec(path, spec.Argv, attr)
	if err == nil {
		p.pid = pid
		if r.reapAll {
			r.mu.Lock()
			r.procs[pid] = p
			r.mu.Unlock()
		}
	}
	r.forkMu.RUnlock()
	// The read ends see EOF once the whole group has closed these.
	unix.Close(outW)
	unix.Close(errW)
	if err != nil {
		return nil, fmt.Errorf("supervisor: start %s: %w", spec.Argv[0], err)
	}
	if !r.reapAll {
		go p.wait()
	}
	return p, nil
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
	done   chan struct{}
	exit   ExitStatus
	onExit func()
}

func (p *execProc) PID() int              { return p.pid }
func (p *execProc) Done() <-chan struct{} { return p.done }
func (p *execProc) Exit() ExitStatus      { return p.exit }

func (p *execProc) Signal(sig syscall.Signal) error {
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
	close(p.done)
	if p.onExit != nil {
		p.onExit()
	}
}

// SignalName is "SIGTERM" for syscall.SIGTERM.
func SignalName(sig syscall.Signal) string {
	n := unix.SignalName(sig)
	if n == "" {
		return fmt.Sprintf("SIG%d", int(sig))
	}
	return n
}

// ParseSignal reads "SIGTERM" or "TERM".
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	if s := unix.SignalNum(n); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("supervisor: unknown signal %q", name)
}

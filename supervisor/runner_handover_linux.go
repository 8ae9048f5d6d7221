package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/proctrack"
)

// maxUnclaimed bounds the exits kept for adoption.
const maxUnclaimed = 1 << 16

// unclaimed keeps the exit of a child nobody registered, while adoption may
// still claim it. Called under r.mu.
func (r *ExecRunner) unclaimed(pid int, ws unix.WaitStatus) {
	if !r.adopting || len(r.exits) >= maxUnclaimed {
		return
	}
	if r.exits == nil {
		r.exits = make(map[int]unix.WaitStatus)
	}
	r.exits[pid] = ws
}

// adoptDone ends adoption: exits of children nobody claimed are forgotten,
// and a worker that exited during the handover (a zombie whose SIGCHLD went
// to the process before) is reaped now.
//
// The check for leftovers of a daemon that handed over (TrackKeeping) then
// begins, in the background: no start and no reaping until it ends (it holds
// forkMu), so that a started worker can never be taken for a leftover, while
// the control socket answers and the adopted workers' output is read.
func (r *ExecRunner) adoptDone() {
	r.mu.Lock()
	r.adopting, r.exits = false, nil
	r.mu.Unlock()
	if r.reapAll {
		r.sweep()
	}
	if check := r.leftovers; check != nil {
		r.leftovers = nil
		r.forkMu.Lock()
		go func() {
			defer r.forkMu.Unlock()
			check()
		}()
	}
}

// freeze stops reaping and reading output, for a handover: a worker's exit
// stays for the next process to reap, its output in its pipe. thaw undoes
// it.
func (r *ExecRunner) freeze() (thaw func()) {
	r.forkMu.Lock()
	r.out.pause()
	return func() {
		r.out.resume()
		r.forkMu.Unlock()
		if r.reapAll {
			r.sweep()
		}
	}
}

// detach hands over a process after freeze: its identity, tracking and
// output pipes (nil where a pipe already ended). The process is forgotten
// here; thaw's caller adopts it again if the handover does not happen.
func (r *ExecRunner) detach(p Process) (handover.Proc, *os.File, *os.File, error) {
	ep, ok := p.(*execProc)
	if !ok {
		return handover.Proc{}, nil, nil, errors.New("not a process of this runner")
	}
	hp := handover.Proc{PID: ep.pid}
	if ep.run != nil {
		hp.Marker, hp.Cgroup, hp.Start = ep.run.Marker(), ep.run.Cgroup(), ep.run.Start()
	}
	if hp.Start == 0 {
		st, _, ok := proctrack.StartTime(ep.pid)
		if !ok {
			return handover.Proc{}, nil, nil, fmt.Errorf("process %d is gone", ep.pid)
		}
		hp.Start = st
	}
	var files [2]*os.File
	for i, op := range []*outPipe{ep.stdout, ep.stderr} {
		if op == nil {
			continue
		}
		f, pend, ok := r.out.detach(op)
		if !ok {
			continue
		}
		files[i] = f
		if i == 0 {
			hp.Stdout = pend
		} else {
			hp.Stderr = pend
		}
	}
	r.mu.Lock()
	if r.procs[ep.pid] == ep {
		hp.Child = true // reaped here
		r.forget(ep, true)
	}
	r.mu.Unlock()
	return hp, files[0], files[1], nil
}

// adoptSpec is a worker handed over to this runner.
type adoptSpec struct {
	Unit           string
	Proc           handover.Proc
	Stdout, Stderr io.Writer
	StdoutFile     *os.File // taken over; nil = none
	StderrFile     *os.File
	OnExit         func()
	// Child is set when the process is known to be this process's child
	// (forked by this process before a re-exec, or before a handover that
	// did not happen): until this runner reaps it, its pid cannot be
	// another process's, so its start time is not read from /proc again.
	Child bool
}

// adopt takes over a worker started by the process before this one (same
// pid after a re-exec): it checks it is the same process, still this
// process's child, reaps and tracks it, and reads its output again, starting
// with the line it had begun. The files are taken over whatever the outcome.
func (r *ExecRunner) adopt(a adoptSpec) (Process, error) {
	closeFiles := func() {
		for _, f := range []*os.File{a.StdoutFile, a.StderrFile} {
			if f != nil {
				f.Close()
			}
		}
	}
	pid := a.Proc.PID
	if pid <= 0 {
		closeFiles()
		return nil, errors.New("no pid recorded")
	}
	p := &execProc{pid: pid, done: make(chan struct{}), onExit: a.OnExit}
	r.forkMu.RLock()
	defer r.forkMu.RUnlock()
	r.mu.Lock()
	ws, reaped := r.exits[pid]
	delete(r.exits, pid)
	r.mu.Unlock()
	notChild := false
	if !reaped && !a.Child {
		start, ppid, ok := proctrack.StartTime(pid)
		switch {
		case !ok:
			closeFiles()
			return nil, fmt.Errorf("process %d is gone", pid)
		case start != a.Proc.Start:
			closeFiles()
			return nil, fmt.Errorf("pid %d is another process now (started at %d, not %d)", pid, start, a.Proc.Start)
		case ppid != os.Getpid():
			// Left by a daemon that died: its end is seen through a pidfd.
			notChild = true
		}
	}
	if r.track != nil && a.Proc.Marker != "" {
		p.run = r.track.Adopted(a.Proc.Marker, a.Child && !reaped) // under forkMu: still that child
	}
	for i, f := range []*os.File{a.StdoutFile, a.StderrFile} {
		if f == nil {
			continue
		}
		w, pend := a.Stdout, a.Proc.Stdout
		if i == 1 {
			w, pend = a.Stderr, a.Proc.Stderr
		}
		op, err := r.out.addFile(f, w, pend)
		if err != nil {
			continue
		}
		if i == 0 {
			p.stdout = op
		} else {
			p.stderr = op
		}
	}
	if reaped {
		go p.exited(ws)
		return p, nil
	}
	if notChild {
		if err := r.watchExit(p); err != nil {
			return nil, err
		}
		return p, nil
	}
	if r.reapAll {
		// Not reaped yet (forkMu is held): the pid is still this child.
		pidfd, err := unix.PidfdOpen(pid, 0) // close-on-exec, as every pidfd
		if err != nil {
			pidfd = -1
		}
		r.mu.Lock()
		r.watch(p, pidfd)
		r.mu.Unlock()
	} else {
		go p.wait()
	}
	return p, nil
}

// NewExecRunnerOnMain is NewExecRunner for a daemon that may re-exec
// itself: the exec, and every fork of a worker with a parent-death signal,
// is sent to forks, which the caller serves on the process's main thread
// (the main goroutine, locked to it from an init function) for as long as
// the runner lives. The parent-death signal a worker gets follows the
// thread that forked it, and execve ends every thread but the one that
// calls it, which becomes the new program's main thread: forking and
// exec'ing from that one thread keeps every such worker alive across any
// number of re-execs. Workers of tracked runs have no parent-death signal;
// with more than one CPU they are also forked on other locked threads, so
// that forks overlap: a worker whose forking thread ends becomes the child
// of another thread of the process, the exec's among them.
func NewExecRunnerOnMain(reapAll bool, forks chan func()) (*ExecRunner, error) {
	if forks == nil {
		return nil, errors.New("supervisor: new runner: no fork channel")
	}
	return newExecRunner(reapAll, forks)
}

// Exec replaces this process with path (a re-exec), from the main thread
// every worker was forked on (NewExecRunnerOnMain). It returns only on
// failure.
func (r *ExecRunner) Exec(path string, argv, env []string) error {
	if !r.mainForks {
		return errors.New("supervisor: exec: this runner does not fork on the main thread, its workers would not survive an exec")
	}
	errc := make(chan error, 1)
	select {
	case r.forks <- func() {
		// The new program starts with this thread's signal mask: none
		// blocked, as at a first start.
		var none, old unix.Sigset_t
		unix.PthreadSigmask(unix.SIG_SETMASK, &none, &old)
		err := syscall.Exec(path, argv, env)
		unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
		errc <- err
	}:
	case <-r.stop:
		return errors.New("supervisor: exec: the runner is closed")
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("supervisor: exec %s: %w", path, err)
	}
	return nil
}

// maxChildOutput bounds what RunChild keeps of a child's output.
const maxChildOutput = 64 << 10

// RunChild runs cmd (not started; its Stdout and Stderr are set here) to
// its end and returns its output, stdout and stderr together (at
// most 64 KiB), as exec.Cmd.CombinedOutput does. The daemon's reaper,
// which reaps every child, hands this one's exit over instead of taking it,
// so that starts and reaping go on while it runs. When ctx ends, the child
// is killed.
func (r *ExecRunner) RunChild(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	if !r.reapAll {
		return combinedOutput(ctx, cmd)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	exited := make(chan unix.WaitStatus, 1)
	r.forkMu.RLock() // no reaping between the fork and the registration
	err = cmd.Start()
	if err == nil {
		r.mu.Lock()
		if r.waited == nil {
			r.waited = make(map[int]chan unix.WaitStatus)
		}
		r.waited[cmd.Process.Pid] = exited
		r.mu.Unlock()
	}
	r.forkMu.RUnlock()
	pw.Close()
	if err != nil {
		return nil, err
	}
	defer cmd.Process.Release() // waited for by the reaper, not by os/exec
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(pr, maxChildOutput))
		io.Copy(io.Discard, pr) // to EOF, so that the child never blocks on a full pipe
		out <- b
	}()
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-ctx.Done():
		cmd.Process.Kill()
		select {
		case ws = <-exited:
		case <-r.done:
		}
	case <-r.done: // the runner closed: nobody reaps any more
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s: the daemon is stopping", cmd.Path)
	}
	var b []byte
	select {
	case b = <-out:
	case <-ctx.Done():
		// A process the child started holds the pipe open.
	}
	switch {
	case ctx.Err() != nil:
		return b, ctx.Err()
	case ws.Signaled():
		return b, fmt.Errorf("%s: killed by %v", cmd.Path, ws.Signal())
	case ws.ExitStatus() != 0:
		return b, fmt.Errorf("%s: exit status %d", cmd.Path, ws.ExitStatus())
	}
	return b, nil
}

// claimWaited hands a reaped child's exit to its RunChild; it reports
// whether one waited for it. Called under r.mu.
func (r *ExecRunner) claimWaited(pid int, ws unix.WaitStatus) bool {
	ch := r.waited[pid]
	if ch == nil {
		return false
	}
	delete(r.waited, pid)
	ch <- ws
	return true
}

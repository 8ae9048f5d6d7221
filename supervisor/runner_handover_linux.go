package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// adoptDone ends adoption: exits of children nobody claimed are forgotten.
func (r *ExecRunner) adoptDone() {
	r.mu.Lock()
	r.adopting, r.exits = false, nil
	r.mu.Unlock()
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
			r.reap()
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
		fd, pend, ok := r.out.detach(op)
		if !ok {
			continue
		}
		files[i] = os.NewFile(uintptr(fd), "opsvc-output")
		if i == 0 {
			hp.Stdout = pend
		} else {
			hp.Stderr = pend
		}
	}
	r.mu.Lock()
	delete(r.procs, ep.pid)
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
	if !reaped {
		start, ppid, ok := proctrack.StartTime(pid)
		switch {
		case !ok:
			closeFiles()
			return nil, fmt.Errorf("process %d is gone", pid)
		case start != a.Proc.Start:
			closeFiles()
			return nil, fmt.Errorf("pid %d is another process now (started at %d, not %d)", pid, start, a.Proc.Start)
		case ppid != os.Getpid() && r.reapAll:
			closeFiles()
			return nil, fmt.Errorf("process %d is not this daemon's child (its parent is %d)", pid, ppid)
		}
	}
	if r.track != nil && a.Proc.Marker != "" {
		p.run = r.track.Adopted(a.Proc.Marker)
	}
	for i, f := range []*os.File{a.StdoutFile, a.StderrFile} {
		if f == nil {
			continue
		}
		w, pend := a.Stdout, a.Proc.Stdout
		if i == 1 {
			w, pend = a.Stderr, a.Proc.Stderr
		}
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			continue
		}
		unix.CloseOnExec(fd)
		op, err := r.out.addPending(fd, w, pend)
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
	if r.reapAll {
		r.mu.Lock()
		r.procs[pid] = p
		r.mu.Unlock()
	} else {
		go p.wait()
	}
	return p, nil
}

// Exec replaces this process with path (a re-exec), from the thread every
// worker was forked on: execve ends every other thread, and the parent-death
// signal of a worker follows the thread that forked it. It returns only on
// failure.
func (r *ExecRunner) Exec(path string, argv, env []string) error {
	errc := make(chan error, 1)
	select {
	case r.forks <- func() { errc <- syscall.Exec(path, argv, env) }:
	case <-r.stop:
		return errors.New("supervisor: exec: the runner is closed")
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("supervisor: exec %s: %w", path, err)
	}
	return nil
}

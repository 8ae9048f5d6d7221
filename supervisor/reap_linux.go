package supervisor

import (
	"fmt"
	goruntime "runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a reaping runner learns of exits. Each worker it forks comes with a
// pidfd (clone's CLONE_PIDFD), watched in one epoll set: when a worker
// exits its pidfd becomes readable and that worker alone is reaped
// (wait4 on its pid). The kernel finds one child in O(1) that way, where
// wait4(-1) walks every child the process has: with 10,000 workers, each
// exit would cost a walk of 10,000.
//
// A pidfd is one more open file per worker, and it must never cost a
// worker its start: where the open-files limit is near (see pidfdReserve),
// a new worker goes without, and each start gives up some pidfds of
// running workers (shed) so that output pipes and sockets always find
// files. Workers without a pidfd are looked at one by one at each SIGCHLD
// (wait4 on each pid, no walk of every child), so their exits are not
// late, and the cost is what they number.
//
// Other children (orphans of workers, which the runner adopts as the
// process's subreaper) are reaped by a sweep with wait4(-1), at most every
// sweepEvery after a SIGCHLD, so that orphans do not stay zombies for long
// and the walk's cost stays bounded. A sweep first looks without reaping
// (waitid with WNOWAIT) and takes the lock forks wait for only when there
// is a child to reap. A child run by RunChild makes every
// SIGCHLD sweep at once while it runs.

// sweepEvery spaces the sweeps for orphans while every registered child has
// a pidfd.
const sweepEvery = time.Second

// pidfdReserve is how many open files, below the limit, pidfds leave to
// everything else (output pipes first): a pidfd whose number falls in it
// is closed, and that worker reaped without one. File numbers are given
// lowest first, so a new file numbered k means k files are open below it.
func pidfdReserve(limit int) int { return max(128, limit/64) }

// openFileLimit is the process's open-files limit (the Go runtime raised
// the soft limit to the hard one at start); 0 if unknown.
func openFileLimit() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

// exitPoller is the epoll set of the runner's pidfds, and an eventfd that
// ends its wait.
type exitPoller struct {
	ep   int
	wake int
}

func newExitPoller() (*exitPoller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("supervisor: exit poller: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("supervisor: exit poller: eventfd: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("supervisor: exit poller: %w", err)
	}
	return &exitPoller{ep: ep, wake: wake}, nil
}

// add watches a pidfd.
func (x *exitPoller) add(fd int) error {
	return unix.EpollCtl(x.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
}

// remove stops watching a pidfd and closes it.
func (x *exitPoller) remove(fd int) {
	unix.EpollCtl(x.ep, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
}

func (x *exitPoller) close() {
	unix.Close(x.ep)
	unix.Close(x.wake)
}

// watch registers a child just forked, with its pidfd or -1. Called under
// r.mu with forkMu held shared, so it is not reaped before.
func (r *ExecRunner) watch(p *execProc, pidfd int) {
	p.pidfd = -1
	r.procs[p.pid] = p
	if pidfd >= 0 && r.nearLimit(pidfd) {
		unix.Close(pidfd) // near the open-files limit: keep the file for output pipes
		pidfd = -1
	}
	if pidfd >= 0 && r.exitp != nil {
		if err := r.exitp.add(pidfd); err == nil {
			p.pidfd = pidfd
			r.byFD[pidfd] = p
			return
		}
		unix.Close(pidfd)
	}
	r.unpolled[p] = struct{}{}
}

// unwatch forgets a registered child: reaped, or handed over. Called under
// r.mu.
func (r *ExecRunner) unwatch(p *execProc) { r.forget(p, false) }

// forget is unwatch; closing, it closes the pidfd without taking it out of
// the epoll set first, which its close does when no other copy of it is
// open: for a handover, where no fork is in flight (the freeze holds the
// fork lock exclusively), one system call less per worker.
func (r *ExecRunner) forget(p *execProc, closing bool) {
	if r.procs[p.pid] == p {
		delete(r.procs, p.pid)
	}
	if p.pidfd >= 0 {
		delete(r.byFD, p.pidfd)
		if closing {
			unix.Close(p.pidfd)
		} else {
			r.exitp.remove(p.pidfd)
		}
		p.pidfd = -1
	} else {
		delete(r.unpolled, p)
	}
}

// pollExits reaps each child whose pidfd the epoll set reports, until the
// runner stops.
func (r *ExecRunner) pollExits() {
	defer r.reapers.Done()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(r.exitp.ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Exits are found by sweeps at every SIGCHLD from now on.
			r.mu.Lock()
			r.pollDead = true
			r.mu.Unlock()
			return
		}
		var ready []*execProc
		r.forkMu.RLock() // not while frozen for a handover, nor during a sweep
		r.mu.Lock()
		for _, ev := range events[:n] {
			if int(ev.Fd) == r.exitp.wake {
				r.mu.Unlock()
				r.forkMu.RUnlock()
				return
			}
			// The fd may have been reused since the event: wait4 below
			// reaps only a child that has exited.
			if p := r.byFD[int(ev.Fd)]; p != nil {
				ready = append(ready, p)
			}
		}
		r.mu.Unlock()
		r.reapEach(ready)
	}
}

// reapEach reaps, by pid, those of ps that have exited, and hands each its
// exit. Called with forkMu held shared (released here), so no sweep runs
// and no pid of ps is reused meanwhile.
func (r *ExecRunner) reapEach(ps []*execProc) {
	var exited, lost []*execProc
	var statuses []unix.WaitStatus
	for i, p := range ps {
		if i%64 == 63 {
			goruntime.Gosched() // many workers without a pidfd: let exits and forks waiting for a CPU run
		}
		var ws unix.WaitStatus
		pid, err := unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
		for err == unix.EINTR {
			pid, err = unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
		}
		switch {
		case err == unix.ECHILD:
			// Reaped by someone else (another reaper in this process):
			// its status is lost, its pidfd would stay readable.
			lost = append(lost, p)
		case err == nil && pid == p.pid:
			exited = append(exited, p)
			statuses = append(statuses, ws)
		}
	}
	r.mu.Lock()
	for _, p := range exited {
		r.unwatch(p)
	}
	for _, p := range lost {
		r.unwatch(p)
	}
	r.mu.Unlock()
	r.forkMu.RUnlock()
	for i, p := range exited {
		p.exited(statuses[i])
	}
	for _, p := range lost {
		p.gone()
	}
}

// reapUnpolled looks at each registered child without a pidfd.
func (r *ExecRunner) reapUnpolled() {
	r.forkMu.RLock()
	r.mu.Lock()
	ps := make([]*execProc, 0, len(r.unpolled))
	for p := range r.unpolled {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	r.reapEach(ps)
}

// shedEach is how many pidfds a start gives up near the limit: more than
// the files a start takes (output pipes, channel, notify socket).
const shedEach = 8

// nearLimit reports whether a file just numbered fd falls in the reserve
// below the open-files limit (files are numbered lowest first, so fd
// files are open below it).
func (r *ExecRunner) nearLimit(fd int) bool {
	return r.fdLimit > 0 && fd >= r.fdLimit-pidfdReserve(r.fdLimit)
}

// shed gives up to n pidfds back: their workers are looked at by pid from
// now on. It returns how many it closed.
func (r *ExecRunner) shed(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for fd, p := range r.byFD {
		if k == n {
			break
		}
		delete(r.byFD, fd)
		r.exitp.remove(fd)
		p.pidfd = -1
		r.unpolled[p] = struct{}{}
		k++
	}
	return k
}

// stopPolling ends pollExits.
func (r *ExecRunner) stopPolling() {
	var one = [8]byte{1}
	unix.Write(r.exitp.wake, one[:])
}

// reapSignals handles SIGCHLD: the children without a pidfd are looked at,
// and a sweep follows within sweepEvery (at once while RunChild waits, or
// when the exit poller failed).
func (r *ExecRunner) reapSignals(sigc <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	armed := false
	for {
		select {
		case <-sigc:
			r.mu.Lock()
			now := len(r.waited) > 0 || r.pollDead
			some := len(r.unpolled) > 0
			r.mu.Unlock()
			if now {
				r.sweep()
				continue
			}
			if some {
				r.reapUnpolled()
			}
			if !armed {
				armed = true
				t.Reset(sweepEvery)
			}
		case <-t.C:
			armed = false
			r.sweep()
		case <-r.stop:
			t.Stop()
			r.sweep()
			return
		}
	}
}

// sweep reaps every child that has exited, by wait4(-1): orphans, children
// without a pidfd, and any worker whose pidfd event is not handled yet.
func (r *ExecRunner) sweep() {
	if !zombieChild() {
		return
	}
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
		if p != nil {
			r.unwatch(p)
		} else if !r.claimWaited(pid, ws) {
			r.unclaimed(pid, ws)
		}
		r.mu.Unlock()
		if p != nil {
			p.exited(ws)
		}
	}
}

// zombieChild reports whether a child of the process has exited and waits
// to be reaped (or whether it cannot tell), without reaping it.
func zombieChild() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	for err == unix.EINTR {
		err = unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	}
	switch {
	case err == unix.ECHILD:
		return false
	case err != nil:
		return true
	}
	// si_pid follows si_signo, si_errno and si_code, aligned as a pointer;
	// it is 0 when no child has exited.
	off := 3 * 4
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return *(*int32)(unsafe.Add(unsafe.Pointer(&info), off)) != 0
}

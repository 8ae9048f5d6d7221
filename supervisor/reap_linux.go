package supervisor

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// How a reaping runner learns of exits. Each worker it forks comes with a
// pidfd (clone's CLONE_PIDFD), watched in one epoll set: when a worker
// exits its pidfd becomes readable and that worker alone is reaped
// (wait4 on its pid). The kernel finds one child in O(1) that way, where
// wait4(-1) walks every child the process has: with 10,000 workers, each
// exit would cost a walk of 10,000.
//
// Other children (orphans of workers, which the runner adopts as the
// process's subreaper; children started without a pidfd) are reaped by a
// sweep with wait4(-1): at once on SIGCHLD while a child without a pidfd is
// registered, else at most every sweepEvery after a SIGCHLD, so that
// orphans do not stay zombies for long and the walk's cost stays bounded.

// sweepEvery spaces the sweeps for orphans while every registered child has
// a pidfd.
const sweepEvery = 250 * time.Millisecond

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
	if pidfd >= 0 && r.exitp != nil {
		if err := r.exitp.add(pidfd); err == nil {
			p.pidfd = pidfd
			r.byFD[pidfd] = p
			return
		}
		unix.Close(pidfd)
	}
	r.unpolled++
}

// unwatch forgets a registered child: reaped, or handed over. Called under
// r.mu.
func (r *ExecRunner) unwatch(p *execProc) {
	if r.procs[p.pid] == p {
		delete(r.procs, p.pid)
	}
	if p.pidfd >= 0 {
		delete(r.byFD, p.pidfd)
		r.exitp.remove(p.pidfd)
		p.pidfd = -1
	} else {
		r.unpolled--
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
			r.unpolled++
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
		var exited []*execProc
		var statuses []unix.WaitStatus
		for _, p := range ready {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
			for err == unix.EINTR {
				pid, err = unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
			}
			if err != nil || pid != p.pid {
				continue
			}
			exited = append(exited, p)
			statuses = append(statuses, ws)
		}
		r.mu.Lock()
		for _, p := range exited {
			r.unwatch(p)
		}
		r.mu.Unlock()
		r.forkMu.RUnlock()
		for i, p := range exited {
			p.exited(statuses[i])
		}
	}
}

// stopPolling ends pollExits.
func (r *ExecRunner) stopPolling() {
	var one = [8]byte{1}
	unix.Write(r.exitp.wake, one[:])
}

// reapSignals sweeps on SIGCHLD: at once while a child without a pidfd is
// registered, else at most every sweepEvery.
func (r *ExecRunner) reapSignals(sigc <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	armed := false
	for {
		select {
		case <-sigc:
			r.mu.Lock()
			now := r.unpolled > 0 || len(r.waited) > 0
			r.mu.Unlock()
			if now {
				r.sweep()
			} else if !armed {
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

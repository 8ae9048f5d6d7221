package main

import (
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper learns of each child's exit through its pidfd, all of them watched
// in one epoll set by one goroutine, and reaps that child alone (wait4 on
// its pid: the kernel finds it directly, where wait4(-1) walks every child).
// A keeper blocked in cmd.Wait would hold an OS thread in the wait system
// call: 10,000 children would need 10,000 threads, past the Go runtime's
// limit, and no supervisor waits that way.
type reaper struct {
	once sync.Once
	ep   int // epoll set of pidfds; -1 if it could not be made
	wake int // eventfd that ends the poller
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	waiting map[int32]*child // by pidfd
}

type child struct {
	pid    int
	exited chan struct{}
}

func (r *reaper) init() {
	r.once.Do(func() {
		r.quit, r.done = make(chan struct{}), make(chan struct{})
		r.waiting = make(map[int32]*child)
		var err error
		if r.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			panic("floor: epoll: " + err.Error())
		}
		if r.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
			panic("floor: eventfd: " + err.Error())
		}
		if err := unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, r.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.wake)}); err != nil {
			panic("floor: epoll: " + err.Error())
		}
		go r.run()
	})
}

// wait returns once cmd's process has exited and been reaped, or the
// reaper stopped. Nothing else reaps the floor's children, so the pid is
// the child's until it is reaped here.
func (r *reaper) wait(cmd *exec.Cmd) {
	r.init()
	pid := cmd.Process.Pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		cmd.Wait() // no pidfd (an old kernel): one thread waits
		return
	}
	// Reaped here, not by os/exec: its own pidfd is closed at once, so that
	// each child costs one open file.
	cmd.Process.Release()
	c := &child{pid: pid, exited: make(chan struct{})}
	r.mu.Lock()
	r.waiting[int32(fd)] = c
	r.mu.Unlock()
	if err := unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		r.mu.Lock()
		delete(r.waiting, int32(fd))
		r.mu.Unlock()
		unix.Close(fd)
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
				return
			}
		}
	}
	select {
	case <-c.exited:
	case <-r.quit:
	}
}

// stop ends the polling goroutine.
func (r *reaper) stop() {
	r.init()
	close(r.quit)
	unix.Write(r.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-r.done
	unix.Close(r.ep)
	unix.Close(r.wake)
}

func (r *reaper) run() {
	defer close(r.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(r.ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == r.wake {
				return
			}
			r.mu.Lock()
			c := r.waiting[ev.Fd]
			r.mu.Unlock()
			if c == nil {
				continue
			}
			var ws unix.WaitStatus
			pid, err := unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
			for err == unix.EINTR {
				pid, err = unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
			}
			if pid == 0 {
				continue // not yet
			}
			r.mu.Lock()
			delete(r.waiting, ev.Fd)
			r.mu.Unlock()
			unix.EpollCtl(r.ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			unix.Close(int(ev.Fd))
			close(c.exited)
		}
	}
}

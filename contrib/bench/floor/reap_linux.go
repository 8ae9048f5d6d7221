package main

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// reaper reaps every child with wait4(-1) on SIGCHLD, from one goroutine,
// and wakes the child's keeper. A keeper blocked in cmd.Wait would hold an
// OS thread in the wait system call: 10,000 children would need 10,000
// threads, past the Go runtime's limit, and no supervisor waits that way.
type reaper struct {
	once sync.Once
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	waiting map[int]chan struct{} // keepers waiting, by pid
	early   map[int]bool          // reaped before their keeper waited
}

func (r *reaper) init() {
	r.once.Do(func() {
		r.quit, r.done = make(chan struct{}), make(chan struct{})
		r.waiting, r.early = make(map[int]chan struct{}), make(map[int]bool)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGCHLD)
		go r.run(sig)
	})
}

// wait returns once cmd's process has exited and been reaped, or the
// reaper stopped.
func (r *reaper) wait(cmd *exec.Cmd) {
	r.init()
	pid := cmd.Process.Pid
	r.mu.Lock()
	if r.early[pid] {
		delete(r.early, pid)
		r.mu.Unlock()
	} else {
		ch := make(chan struct{})
		r.waiting[pid] = ch
		r.mu.Unlock()
		select {
		case <-ch:
		case <-r.quit:
		}
	}
	cmd.Process.Release() // its pidfd: the process was reaped here
}

// stop ends the reaping goroutine.
func (r *reaper) stop() {
	r.init()
	close(r.quit)
	<-r.done
}

func (r *reaper) run(sig chan os.Signal) {
	defer close(r.done)
	defer signal.Stop(sig)
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			r.mu.Lock()
			if ch := r.waiting[pid]; ch != nil {
				delete(r.waiting, pid)
				close(ch)
			} else {
				r.early[pid] = true
			}
			r.mu.Unlock()
		}
		select {
		case <-sig:
		case <-r.quit:
			return
		}
	}
}

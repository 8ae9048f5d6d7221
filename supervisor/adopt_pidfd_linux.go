package supervisor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// watchExit waits for the end of an adopted process that is not this
// process's child (its daemon died; another process reaps it) through a
// pidfd. Its exit status is not known: it ends with code 255. Close ends the
// wait.
func (r *ExecRunner) watchExit(p *execProc) error {
	fd, err := unix.PidfdOpen(p.pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("watch process %d: pidfd_open: %w", p.pid, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "pidfd")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("watch process %d: %w", p.pid, err)
	}
	r.mu.Lock()
	if r.pidfds == nil {
		r.pidfds = make(map[*os.File]bool)
	}
	r.pidfds[f] = true
	r.mu.Unlock()
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		gone := false
		raw.Read(func(fd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, _ := unix.Poll(pfd, 0)
			gone = n > 0 && pfd[0].Revents != 0
			return gone
		})
		r.mu.Lock()
		delete(r.pidfds, f)
		r.mu.Unlock()
		f.Close()
		if gone {
			p.gone()
		}
	}()
	return nil
}

// stopWatching ends every pidfd wait (Close).
func (r *ExecRunner) stopWatching() {
	r.mu.Lock()
	for f := range r.pidfds {
		f.Close()
	}
	r.mu.Unlock()
	r.watchers.Wait()
}

// gone ends a process whose exit status cannot be read.
func (p *execProc) gone() {
	p.exit = ExitStatus{Code: 255}
	if p.run != nil {
		p.run.Exited()
	}
	close(p.done)
	if p.onExit != nil {
		p.onExit()
	}
}

// Command floor is the lower bound that `make bench` measures supervisors
// against: it forks N children from as many goroutines as there are cores,
// restarts a child the moment it exits, and on SIGTERM or SIGINT stops them
// all (the stop signal, then SIGKILL after -stop-timeout) and exits. It keeps
// no state, no log and no socket, and never runs anything but the child.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 100, "children")
	child := flag.String("child", "", "the child program (contrib/bench/child.sh)")
	mode := flag.String("mode", "sleep", "the child's mode: sleep, graceful or ignore")
	prefix := flag.String("prefix", "", "argv[0] prefix of the children; child I is tagged PREFIX + pNNNN")
	stopTimeout := flag.Duration("stop-timeout", 2*time.Second, "SIGKILL this long after SIGTERM")
	flag.Parse()
	if *child == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "floor: -child and -n are required (see -h)")
		os.Exit(2)
	}
	f := &floor{child: *child, mode: *mode, prefix: *prefix, running: make(map[int]*os.Process)}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	f.start(*n, runtime.NumCPU())
	<-sigs
	if !f.stop(*stopTimeout, *stopTimeout+10*time.Second) {
		fmt.Fprintln(os.Stderr, "floor: children still running after the stop; exiting anyway")
		os.Exit(1)
	}
}

// floor runs the children. Each child has a goroutine that waits for it and
// starts it again unless the floor is stopping.
type floor struct {
	child, mode, prefix string

	mu       sync.Mutex
	stopping bool
	running  map[int]*os.Process // by pid
	wg       sync.WaitGroup

	reaper reaper // how a child's exit is waited for (reap_linux.go, reap_other.go)
}

func (f *floor) tag(i int) string { return fmt.Sprintf("%sp%04d", f.prefix, i) }

// start forks children 1..n from workers goroutines, each taking every
// workers-th child, and returns once every fork has been made.
func (f *floor) start(n, workers int) {
	var spawners sync.WaitGroup
	for w := range workers {
		spawners.Go(func() {
			for i := w + 1; i <= n; i += workers {
				if cmd := f.spawn(i); cmd != nil {
					f.wg.Go(func() { f.keep(i, cmd) })
				}
			}
		})
	}
	spawners.Wait()
}

// spawn forks child i in a process group of its own.
func (f *floor) spawn(i int) *exec.Cmd {
	cmd := exec.Command(f.child, f.mode, f.tag(i))
	cmd.SysProcAttr = newGroup()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "floor: start %s: %v\n", f.tag(i), err)
		return nil
	}
	f.mu.Lock()
	f.running[cmd.Process.Pid] = cmd.Process
	stopping := f.stopping
	f.mu.Unlock()
	if stopping { // started while the stop was being sent
		killGroup(cmd.Process.Pid)
	}
	return cmd
}

// keep waits for child i and starts it again at once, until the floor stops.
func (f *floor) keep(i int, cmd *exec.Cmd) {
	for failures := 0; ; {
		f.reaper.wait(cmd)
		f.mu.Lock()
		delete(f.running, cmd.Process.Pid)
		stopping := f.stopping
		f.mu.Unlock()
		if stopping {
			return
		}
		next := f.spawn(i)
		for next == nil {
			// the fork itself failed (no memory, no pids): retry, slower each time
			failures++
			time.Sleep(time.Duration(min(failures, 10)) * 100 * time.Millisecond)
			f.mu.Lock()
			stopping := f.stopping
			f.mu.Unlock()
			if stopping {
				return
			}
			next = f.spawn(i)
		}
		cmd = next
	}
}

// stop sends SIGTERM to every child's group, SIGKILL to those left after
// timeout, and waits (at most limit) until every child is reaped.
func (f *floor) stop(timeout, limit time.Duration) bool {
	f.mu.Lock()
	f.stopping = true
	for pid := range f.running {
		termGroup(pid)
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	kill := time.NewTimer(timeout)
	defer kill.Stop()
	give := time.NewTimer(limit)
	defer give.Stop()
	for {
		select {
		case <-done:
			f.reaper.stop()
			return true
		case <-kill.C:
			f.mu.Lock()
			for pid := range f.running {
				killGroup(pid)
			}
			f.mu.Unlock()
		case <-give.C:
			return false
		}
	}
}

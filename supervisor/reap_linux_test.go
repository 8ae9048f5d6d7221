package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestReaperExitCodes: many workers started from many goroutines end with
// their own exit codes, whether the runner finds exits by pidfd, without
// pidfds (a kernel without them), or with pidfds given up near the
// open-files limit.
func TestReaperExitCodes(t *testing.T) {
	for _, mode := range []string{"pidfd", "no-pidfd", "near-limit"} {
		t.Run(mode, func(t *testing.T) {
			r, err := NewExecRunner(true)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			switch mode {
			case "no-pidfd":
				r.sweepOnly = true
			case "near-limit":
				r.fdLimit = 1 // every pidfd falls in the reserve
			}
			const n = 200
			procs := make([]Process, n)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < n; i += 8 {
						p, err := r.Start(Spec{Unit: "w" + strconv.Itoa(i), Argv: []string{"/bin/sh", "-c", "exit " + strconv.Itoa(i%50)}, Stdout: io.Discard, Stderr: io.Discard})
						if err != nil {
							errs <- err
							return
						}
						procs[i] = p
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if mode != "pidfd" {
				r.mu.Lock()
				fds := len(r.byFD)
				r.mu.Unlock()
				if fds != 0 {
					t.Errorf("%d workers watched by pidfd, want none", fds)
				}
			}
			for i, p := range procs {
				select {
				case <-p.Done():
				case <-time.After(30 * time.Second):
					t.Fatalf("worker %d (pid %d) was not reaped", i, p.PID())
				}
				if c := p.Exit().Code; c != i%50 {
					t.Errorf("worker %d: exit code %d, want %d", i, c, i%50)
				}
			}
			r.mu.Lock()
			left, fds, unpolled := len(r.procs), len(r.byFD), len(r.unpolled)
			r.mu.Unlock()
			if left != 0 || fds != 0 || unpolled != 0 {
				t.Errorf("after every exit: %d registered, %d pidfds, %d without pidfd; want none", left, fds, unpolled)
			}
		})
	}
}

// TestReaperWatchesByPidfd: a worker is registered with a pidfd, which is
// closed once it is reaped.
func TestReaperWatchesByPidfd(t *testing.T) {
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	p, err := r.Start(Spec{Unit: "w", Argv: []string{"/bin/sh", "-c", "read x <&3; exit 4"}, Stdout: io.Discard, Stderr: io.Discard, ExtraFiles: []*os.File{pr}})
	if err != nil {
		t.Fatal(err)
	}
	ep := p.(*execProc)
	r.mu.Lock()
	fd := ep.pidfd
	r.mu.Unlock()
	if fd < 0 {
		t.Fatal("the worker has no pidfd")
	}
	pw.Close() // the worker reads EOF on fd 3 and ends
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("not reaped")
	}
	if c := p.Exit().Code; c != 4 {
		t.Errorf("exit code %d, want 4", c)
	}
	r.mu.Lock()
	fd = ep.pidfd
	r.mu.Unlock()
	if fd != -1 {
		t.Errorf("pidfd %d still held after the exit", fd)
	}
}

// TestReaperSweepsOrphans: a worker's child left behind when the worker
// exits is reparented to the runner (the process's subreaper) and reaped
// by a sweep, not left a zombie.
func TestReaperSweepsOrphans(t *testing.T) {
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out syncBuffer
	p, err := r.Start(Spec{Unit: "w", Argv: []string{"/bin/sh", "-c", "sleep 0.2 & echo $!; exit 0"}, Stdout: &out, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("worker not reaped")
	}
	deadline := time.Now().Add(20 * time.Second)
	var orphan int
	for orphan == 0 && time.Now().Before(deadline) {
		orphan, _ = strconv.Atoi(strings.TrimSpace(out.String()))
		time.Sleep(10 * time.Millisecond)
	}
	if orphan == 0 {
		t.Fatalf("the worker's child's pid never came out (output %q)", out.String())
	}
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
		if err != nil {
			return // reaped
		}
		if i := bytes.LastIndexByte(b, ')'); i < 0 || len(b) < i+3 || b[i+2] != 'Z' {
			time.Sleep(10 * time.Millisecond) // still running
			continue
		}
		time.Sleep(10 * time.Millisecond) // a zombie until the next sweep
	}
	t.Fatalf("orphan %d still there 20 s after the worker's exit", orphan)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReaperShedsPidfdsNearTheLimit: near the open-files limit a start
// gives pidfds of running workers up, so that pipes always find files, and
// those workers' exits are still seen.
func TestReaperShedsPidfdsNearTheLimit(t *testing.T) {
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	start := func(i int) Process {
		t.Helper()
		rd, err := dupFile(pr)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Start(Spec{Unit: "w" + strconv.Itoa(i), Argv: []string{"/bin/sh", "-c", "read x <&3; exit 5"}, Stdout: io.Discard, StderrToStdout: true, ExtraFiles: []*os.File{rd}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var procs []Process
	for i := range 20 {
		procs = append(procs, start(i))
	}
	r.mu.Lock()
	before := len(r.byFD)
	r.fdLimit = 1 // every file now falls in the reserve
	r.mu.Unlock()
	if before != 20 {
		t.Fatalf("%d of 20 workers watched by pidfd before the limit", before)
	}
	procs = append(procs, start(20))
	r.mu.Lock()
	after, unpolled := len(r.byFD), len(r.unpolled)
	r.mu.Unlock()
	if after != 20-shedEach || unpolled != shedEach+1 {
		t.Errorf("after a start near the limit: %d by pidfd, %d by pid; want %d and %d", after, unpolled, 20-shedEach, shedEach+1)
	}
	pr.Close()
	pw.Close() // every worker reads EOF and ends
	for i, p := range procs {
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("worker %d not reaped", i)
		}
		if c := p.Exit().Code; c != 5 {
			t.Errorf("worker %d: exit code %d, want 5", i, c)
		}
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// TestZombieChild: a child that exited is seen without being reaped; once
// it is reaped, none is.
func TestZombieChild(t *testing.T) {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !zombieChild() {
		if time.Now().After(deadline) {
			t.Fatal("the exited child is not seen")
		}
		time.Sleep(time.Millisecond)
	}
	var ws syscall.WaitStatus
	if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got != pid || err != nil {
		t.Fatalf("wait4(%d) = %d, %v: the look reaped it", pid, got, err)
	}
	if zombieChild() {
		t.Error("a child is seen after every one was reaped")
	}
}

package supervisor

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor/proctrack"
)

// TestSpawnHelper: past spawnFrom workers, starts of runs tracked without a
// cgroup go through the spawn helper. Each worker is still the daemon's
// child (reaped with its exit code, its pidfd watched), gets its arguments,
// environment, directory, files and output pipe, and a failed exec is an
// error. A helper that dies is replaced; Close ends the helper. Runs with a
// cgroup are forked by the daemon into it.
func TestSpawnHelper(t *testing.T) {
	trackModes(t, func(t *testing.T, noCgroup bool) {
		r, err := NewExecRunner(true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.trackWith(proctrack.Options{StateDir: t.TempDir(), NoCgroup: noCgroup}); err != nil {
			t.Fatal(err)
		}
		r.spawnFrom = 0
		dir := t.TempDir()
		const n = 64
		procs := make([]Process, n)
		outs := make([]*syncBuffer, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += 4 {
					outs[i] = &syncBuffer{}
					p, err := r.Start(Spec{
						Unit: "w" + strconv.Itoa(i),
						Argv: []string{"/bin/sh", "-c", `echo "$WHO $PPID $(pwd)"; if ! : <&3; then exit 99; fi; exit $1`, "sh", strconv.Itoa(i % 40)},
						Env:  []string{"WHO=w" + strconv.Itoa(i), "PATH=/usr/bin:/bin"},
						Dir:  dir, Stdout: outs[i], StderrToStdout: true,
						ExtraFiles: []*os.File{devNullFile(t)},
					})
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
		r.spawnMu.Lock()
		helper := r.spawner
		r.spawnMu.Unlock()
		if !noCgroup {
			if helper != nil {
				t.Fatal("runs with a cgroup went through the spawn helper")
			}
			for _, p := range procs {
				<-p.Done()
			}
			return
		}
		if helper == nil {
			t.Fatal("no spawn helper after starts past spawnFrom")
		}
		for i, p := range procs {
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("worker %d (pid %d) was not reaped", i, p.PID())
			}
			if c := p.Exit().Code; c != i%40 {
				t.Errorf("worker %d: exit code %d, want %d", i, c, i%40)
			}
			line := waitLine(t, outs[i])
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "w"+strconv.Itoa(i) || f[1] != strconv.Itoa(os.Getpid()) || f[2] != dir {
				t.Errorf("worker %d printed %q, want its name, the runner's pid %d as parent and %s", i, line, os.Getpid(), dir)
				continue
			}
		}
		r.mu.Lock()
		left, byFD := len(r.procs), len(r.byFD)
		r.mu.Unlock()
		if left != 0 || byFD != 0 {
			t.Errorf("after every exit: %d registered, %d pidfds; want none", left, byFD)
		}

		if _, err := r.Start(Spec{Unit: "missing", Argv: []string{filepath.Join(dir, "no-such-program")}}); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("start of a missing program = %v, want an error naming it missing", err)
		}

		// A start finding the helper dead forks its process itself; the
		// next one starts a new helper.
		if err := unix.Kill(helper.pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for i, code := range []int{3, 4} {
			p, err := r.Start(Spec{Unit: "after" + strconv.Itoa(i), Argv: []string{"/bin/sh", "-c", "exit " + strconv.Itoa(code)}})
			if err != nil {
				t.Fatalf("start %d after the helper died: %v", i, err)
			}
			<-p.Done()
			if c := p.Exit().Code; c != code {
				t.Errorf("start %d after the helper died: exit code %d, want %d", i, c, code)
			}
		}
		r.spawnMu.Lock()
		now, starts := r.spawner, r.spawnStarts
		r.spawnMu.Unlock()
		if now == nil || now.pid == helper.pid || starts != 2 {
			t.Errorf("after the helper died: helper %+v, %d started; want a new one, 2 started", now, starts)
		}
		r.Close()
		if err := unix.Kill(now.pid, 0); err != unix.ESRCH {
			t.Errorf("spawn helper %d after Close: kill 0 = %v, want ESRCH", now.pid, err)
		}
	})
}

// devNullFile is an open /dev/null the start hands to its worker.
func devNullFile(t *testing.T) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// waitLine waits for a first whole line in b.
func waitLine(t *testing.T, b *syncBuffer) string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := b.String(); strings.Contains(s, "\n") {
			return strings.SplitN(s, "\n", 2)[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output line (so far %q)", b.String())
		}
		time.Sleep(5 * time.Millisecond) // written by the output reader; bounded
	}
}

// TestForksOverlapOnMainRunner: a runner forking on the main thread also
// forks tracked workers on its other locked threads (they have no
// parent-death signal), and an untracked worker only on the main one.
func TestForksOverlapOnMainRunner(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one CPU: the runner forks on the main thread alone")
	}
	for _, tracked := range []bool{true, false} {
		t.Run(map[bool]string{true: "tracked", false: "untracked"}[tracked], func(t *testing.T) {
			forks := make(chan func())
			stop := make(chan struct{})
			mainTID := make(chan int, 1)
			served := make(chan struct{})
			go func() { // the daemon's main thread
				defer close(served)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				mainTID <- unix.Gettid()
				for {
					select {
					case f := <-forks:
						f()
					case <-stop:
						return
					}
				}
			}()
			main := <-mainTID
			r, err := NewExecRunnerOnMain(true, forks)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { r.Close(); close(stop); <-served }()
			if tracked {
				if _, err := r.trackWith(proctrack.Options{StateDir: t.TempDir(), NoCgroup: true}); err != nil {
					t.Fatal(err)
				}
			}
			const n = 40
			var wg sync.WaitGroup
			var mu sync.Mutex
			var procs []Process
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < n; i += 8 {
						p, err := r.Start(Spec{Unit: "w" + strconv.Itoa(i), Argv: []string{"/bin/sleep", "30"}})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						procs = append(procs, p)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			defer func() {
				for _, p := range procs {
					p.Signal(syscall.SIGKILL)
					<-p.Done()
				}
			}()
			byThread := map[int]int{}
			tasks, err := os.ReadDir("/proc/self/task")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tasks {
				b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/children")
				if err != nil {
					t.Skipf("no per-thread children here: %v", err)
				}
				tid, _ := strconv.Atoi(e.Name())
				byThread[tid] += len(strings.Fields(string(b)))
			}
			total := 0
			for _, c := range byThread {
				total += c
			}
			if total < n {
				t.Fatalf("%d children found by thread, want at least %d (%v)", total, n, byThread)
			}
			if !tracked && byThread[main] != total {
				t.Errorf("untracked workers forked off the main thread %d: %v", main, byThread)
			}
			if tracked {
				threads := 0
				for _, c := range byThread {
					if c > 0 {
						threads++
					}
				}
				if threads < 2 {
					t.Errorf("tracked workers all forked on one thread: %v", byThread)
				}
			}
		})
	}
}

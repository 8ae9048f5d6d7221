package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor/proctrack"
)

// execWorkers is how many workers the helper starts, each from its own
// goroutine on a thread that exits right after.
const execWorkers = 64

// TestExecHelperDaemon is not a test: TestWorkersSurviveExec runs the test
// binary as a daemon that starts workers from many goroutines, then replaces
// its image with execve and waits.
func TestExecHelperDaemon(t *testing.T) {
	state := os.Getenv("OPSVC_TEST_EXEC_STATE")
	if state == "" {
		t.Skip("helper process of TestWorkersSurviveExec")
	}
	if os.Getenv("OPSVC_TEST_EXEC_AFTER") != "" {
		// The new image: same pid, the workers are still its children.
		fmt.Printf("execed %d\n", os.Getpid())
		io.Copy(io.Discard, os.Stdin)
		for {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil && err != unix.EINTR {
				return
			}
		}
	}
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.trackWith(proctrack.Options{StateDir: state, NoCgroup: os.Getenv("OPSVC_TEST_EXEC_NOCGROUP") != ""}); err != nil {
		t.Fatal(err)
	}
	pids := make(chan int, execWorkers)
	var wg sync.WaitGroup
	for i := range execWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Returning while locked ends this OS thread.
			runtime.LockOSThread()
			p, err := r.Start(Spec{Unit: "w" + strconv.Itoa(i), Argv: []string{"/bin/sleep", "600"}})
			if err != nil {
				fmt.Printf("error %v\n", err)
				return
			}
			pids <- p.PID()
		}()
	}
	wg.Wait()
	close(pids)
	for pid := range pids {
		fmt.Printf("worker %d\n", pid)
	}
	fmt.Println("started")
	// Exec once the test has looked at the workers.
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); line != "exec\n" {
		os.Exit(1)
	}
	err = r.RunOnForker(func() {
		env := append(os.Environ(), "OPSVC_TEST_EXEC_AFTER=1")
		err = syscall.Exec("/proc/self/exe", []string{os.Args[0], "-test.run=^TestExecHelperDaemon$"}, env)
	})
	fmt.Printf("error exec: %v %v\n", err, os.Args[0])
	os.Exit(1)
}

// procStat is a process's parent and start time, from /proc/PID/stat.
func procStat(pid int) (ppid int, start uint64, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, "", false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return ppid, start, f[0], true
}

// Workers forked from many goroutines (on threads that then exited, and on
// every fork thread) keep running, with their pid and parent, when the
// daemon replaces its image with execve.
func TestWorkersSurviveExec(t *testing.T) {
	trackModes(t, func(t *testing.T, noCgroup bool) {
		state := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestExecHelperDaemon$")
		cmd.Env = append(os.Environ(), "OPSVC_TEST_EXEC_STATE="+state)
		if noCgroup {
			cmd.Env = append(cmd.Env, "OPSVC_TEST_EXEC_NOCGROUP=1")
		}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		helper := cmd.Process.Pid
		var workers []int
		defer func() {
			for _, pid := range workers {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
			// The helper reaps its workers and exits once its input closes;
			// the tracker removes the runs' cgroups.
			stdin.Close()
			go io.Copy(io.Discard, out)
			cmd.Wait()
			tr, err := proctrack.Open(proctrack.Options{StateDir: state, NoCgroup: noCgroup})
			if err == nil {
				tr.Sweep()
				tr.Close()
			}
		}()
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "started" {
			var pid int
			if _, err := fmt.Sscanf(sc.Text(), "worker %d", &pid); err == nil {
				workers = append(workers, pid)
			} else {
				t.Errorf("helper: %s", sc.Text())
			}
		}
		if len(workers) != execWorkers {
			t.Fatalf("the helper started %d workers, want %d", len(workers), execWorkers)
		}
		starts := make(map[int]uint64)
		var fds []unix.PollFd
		for _, pid := range workers {
			ppid, start, _, ok := procStat(pid)
			if !ok || ppid != helper {
				t.Fatalf("worker %d: parent %d, want %d", pid, ppid, helper)
			}
			starts[pid] = start
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatalf("pidfd_open %d: %v", pid, err)
			}
			defer unix.Close(fd)
			fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
		if _, err := io.WriteString(stdin, "exec\n"); err != nil {
			t.Fatal(err)
		}
		if !sc.Scan() {
			t.Fatalf("the helper ended without exec'ing: %v", sc.Err())
		}
		var after int
		if _, err := fmt.Sscanf(sc.Text(), "execed %d", &after); err != nil {
			t.Fatalf("helper: %s", sc.Text())
		}
		if after != helper {
			t.Fatalf("the new image runs as pid %d, want %d", after, helper)
		}
		// A worker killed by a parent-death signal is gone at once; give
		// such deaths a bounded window to show on the pidfds.
		n, err := unix.Poll(fds, 500)
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		if n > 0 {
			dead := 0
			for _, f := range fds {
				if f.Revents != 0 {
					dead++
				}
			}
			t.Fatalf("%d of %d workers ended with the exec", dead, len(workers))
		}
		for _, pid := range workers {
			ppid, start, st, ok := procStat(pid)
			switch {
			case !ok || st == "Z":
				t.Errorf("worker %d is gone after the exec", pid)
			case start != starts[pid]:
				t.Errorf("pid %d is another process after the exec", pid)
			case ppid != helper:
				t.Errorf("worker %d: parent %d after the exec, want %d", pid, ppid, helper)
			}
		}
	})
}

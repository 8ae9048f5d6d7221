package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/opsvc/opsvc/worker"
)

// winWorkerVar names the part this test binary plays as a worker of the
// daemon under test.
const winWorkerVar = "OPSVC_TEST_WINWORKER"

// init runs the test binary as a worker when winWorkerVar is set, before
// TestMain.
func init() {
	if mode := os.Getenv(winWorkerVar); mode != "" {
		os.Exit(winWorker(mode))
	}
}

// winWorker: "sleep" waits forever; "honour" and "ignore" are ipc workers
// that start a "sleep" child, write both pids to $PIDFILE, say ready, and
// on shutdown exit 0 (honour) or go on (ignore).
func winWorker(mode string) int {
	if mode == "sleep" {
		select {}
	}
	c, err := worker.ConnectWith(worker.Options{OnEOF: func() { os.Exit(0) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), winWorkerVar+"=sleep")
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pids := fmt.Sprintf("%d %d", os.Getpid(), child.Process.Pid)
	if err := os.WriteFile(os.Getenv("PIDFILE")+".tmp", []byte(pids), 0o644); err != nil {
		return 1
	}
	if err := os.Rename(os.Getenv("PIDFILE")+".tmp", os.Getenv("PIDFILE")); err != nil {
		return 1
	}
	fmt.Println("worker up:", pids)
	c.Ready()
	<-c.Shutdown()
	fmt.Println("worker asked to stop")
	if mode == "honour" {
		return 0
	}
	select {}
}

// waitPids polls for the pid file an ipc worker writes (the state of another
// process; bounded).
func waitPids(t *testing.T, path string) (main, child int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for delay := 10 * time.Millisecond; ; {
		if b, err := os.ReadFile(path); err == nil {
			f := strings.Fields(string(b))
			if len(f) == 2 {
				main, _ = strconv.Atoi(f[0])
				child, _ = strconv.Atoi(f[1])
				return main, child
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pids in %s within 60s", path)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// waitGone waits for process pid to end (a pid no longer known is gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	h, err := windows.OpenProcess(windows.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return
	}
	defer windows.CloseHandle(h)
	if ev, err := windows.WaitForSingleObject(h, 60_000); err != nil || ev != windows.WAIT_OBJECT_0 {
		t.Fatalf("process %d still running 60s after its unit stopped (%d, %v)", pid, ev, err)
	}
}

// TestWindowsDaemonWorkerTree: the daemon runs two ipc workers, each with a
// child of its own. One honours the shutdown message and stops with status
// 0; the other ignores it and is killed at its stop deadline by its job. In
// both cases the whole tree is gone once the stop returns.
func TestWindowsDaemonWorkerTree(t *testing.T) {
	dir := t.TempDir()
	pipe := fmt.Sprintf(`\\.\pipe\opsvc-test-tree-%d`, os.Getpid())
	cmd, out := winDaemon(t, dir, pipe)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"honour", "ignore"} {
		unit := fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = ['%s']\nstop_timeout = \"3s\"\nenvironment = { %s = \"%s\", PIDFILE = '%s' }\n",
			exe, winWorkerVar, mode, filepath.Join(dir, mode+".pids"))
		if err := os.WriteFile(filepath.Join(dir, "units", mode+".toml"), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon answers (polling another process's readiness, bounded).
	deadline := time.Now().Add(60 * time.Second)
	for delay := 10 * time.Millisecond; ; {
		if code, _, _ := cliRun(pipe, "status", "--json"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer on %s within 60s:\n%s", pipe, out)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
	for _, mode := range []string{"honour", "ignore"} {
		if code, _, stderr := cliRun(pipe, "start", mode); code != 0 {
			t.Fatalf("start %s: exit %d: %s\ndaemon:\n%s", mode, code, stderr, out)
		}
		main, child := waitPids(t, filepath.Join(dir, mode+".pids"))
		if code, stdout, stderr := cliRun(pipe, "is-active", mode); code != 0 {
			t.Fatalf("is-active %s: exit %d: %s%s", mode, code, stdout, stderr)
		}
		if code, _, stderr := cliRun(pipe, "stop", mode); code != 0 {
			t.Fatalf("stop %s: exit %d: %s\ndaemon:\n%s", mode, code, stderr, out)
		}
		waitGone(t, main)
		waitGone(t, child)

		code, stdout, stderr := cliRun(pipe, "events", "--json", "--unit", mode)
		if code != 0 {
			t.Fatalf("events: exit %d: %s", code, stderr)
		}
		var stopped map[string]any
		killed := false
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var ev struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			switch ev.Type {
			case "unit.stopped":
				stopped = ev.Data
			case "unit.killed":
				killed = true
			}
		}
		switch {
		case stopped == nil:
			t.Errorf("%s: no unit.stopped event:\n%s", mode, stdout)
		case mode == "honour" && (killed || stopped["code"] != float64(0)):
			t.Errorf("honour: killed %v, stopped %v; want a clean exit after the shutdown message", killed, stopped)
		case mode == "ignore" && (!killed || stopped["signal"] != "SIGKILL"):
			t.Errorf("ignore: killed %v, stopped %v; want the job terminated at the deadline", killed, stopped)
		}
	}
}

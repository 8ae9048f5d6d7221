package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/npipe"
	"golang.org/x/sys/windows"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// winDaemon is this test binary run as `opsvc daemon` on pipe, in a process
// group of its own (so that CTRL_BREAK reaches it alone).
func winDaemon(t *testing.T, dir, pipe string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "units"), 0o755)
	cmd := exec.Command(exe, "daemon", "--units", filepath.Join(dir, "units"), "--state", filepath.Join(dir, "state"),
		"--socket", pipe, "--config", filepath.Join(dir, "opsvc.toml"))
	cmd.Args[0] = "opsvc"
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
	return cmd, out
}

// cliRun runs one CLI verb in this process, as `opsvc --socket pipe ARGS`.
func cliRun(pipe string, args ...string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	err := run(ctx, append([]string{"--socket", pipe}, args...), &o, &e)
	code = report(err, &e)
	return code, o.String(), e.String()
}

// comSpec is cmd.exe's absolute path.
func comSpec() string {
	if c := os.Getenv("ComSpec"); c != "" {
		return c
	}
	return filepath.Join(os.Getenv("SystemRoot"), "System32", "cmd.exe")
}

// onWine reports whether the test runs under wine, which stands in for
// Windows in CI.
func onWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// TestWindowsDaemonOnPipe: `opsvc daemon` listens on a named pipe, the CLI
// talks to it there, a second daemon on the same pipe is refused, a unit is
// started and stopped through the CLI with the caller's SID in the events,
// and CTRL_BREAK stops the daemon.
func TestWindowsDaemonOnPipe(t *testing.T) {
	dir := t.TempDir()
	pipe := fmt.Sprintf(`\\.\pipe\opsvc-test-daemon-%d`, os.Getpid())
	cmd, out := winDaemon(t, dir, pipe)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()

	// The daemon answers on the pipe (polling an external process's
	// readiness, bounded above).
	deadline := time.Now().Add(60 * time.Second)
	var code int
	var stdout, stderr string
	for delay := 10 * time.Millisecond; ; {
		code, stdout, stderr = cliRun(pipe, "status", "--json")
		if code == 0 {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			if strings.Contains(out.String(), "running units: not supported on windows") {
				t.Skip("this build starts no processes on Windows: the daemon ends before it serves")
			}
			t.Fatalf("daemon exited (%v) before it answered:\n%s", err, out)
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer on %s within 60s: exit %d: %s\ndaemon:\n%s", pipe, code, stderr, out)
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
	var st struct {
		Units []json.RawMessage `json:"units"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.Units == nil {
		t.Fatalf("status --json = %q (%v)", stdout, err)
	}
	if len(st.Units) != 0 {
		t.Fatalf("status lists %d units, want none", len(st.Units))
	}

	// A second daemon on the same pipe is refused and ends at once.
	cmd2, out2 := winDaemon(t, t.TempDir(), pipe)
	err := cmd2.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailure {
		t.Fatalf("second daemon on the same pipe: %v, want exit 1\n%s", err, out2)
	}
	if !strings.Contains(out2.String(), "another daemon is listening on "+pipe) {
		t.Fatalf("second daemon said %q, want it names the daemon on %s", out2, pipe)
	}

	// A unit started and stopped through the CLI.
	unit := fmt.Sprintf(`[service]
exec = ['%s', "/c", "ping -n 600 127.0.0.1 >NUL"]
stop_timeout = "5s"
`, comSpec())
	if err := os.WriteFile(filepath.Join(dir, "units", "pinger.toml"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cliRun(pipe, "reload"); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, stderr)
	}
	if code, _, stderr := cliRun(pipe, "start", "pinger"); code != 0 {
		t.Fatalf("start pinger: exit %d: %s\ndaemon:\n%s", code, stderr, out)
	}
	if code, stdout, stderr := cliRun(pipe, "is-active", "pinger"); code != 0 {
		t.Fatalf("is-active after start: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := cliRun(pipe, "stop", "pinger"); code != 0 {
		t.Fatalf("stop pinger: exit %d: %s\ndaemon:\n%s", code, stderr, out)
	}
	if code, stdout, _ := cliRun(pipe, "status", "pinger", "--json"); code != exitInactive || !strings.Contains(stdout, `"inactive"`) {
		t.Fatalf("status after stop: exit %d: %s", code, stdout)
	}
	// The start and the stop name their caller: this process, by SID.
	me, err := npipe.CurrentUserSID()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = cliRun(pipe, "events", "--json", "--unit", "pinger")
	if code != 0 {
		t.Fatalf("events: exit %d: %s", code, stderr)
	}
	callers := 0
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || (ev.Type != "api.start" && ev.Type != "api.stop") {
			continue
		}
		if ev.Data["sid"] != me || ev.Data["pid"] != float64(os.Getpid()) {
			t.Errorf("%s event names its caller %v, want sid %s pid %d", ev.Type, ev.Data, me, os.Getpid())
		}
		callers++
	}
	if callers != 2 {
		t.Errorf("found %d api.start/api.stop events for pinger, want 2:\n%s", callers, stdout)
	}

	// CTRL_BREAK stops the daemon, which exits 0.
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(cmd.Process.Pid)); err != nil {
		if onWine() && err == windows.ERROR_INVALID_ACCESS {
			t.Skipf("wine sends no console control events here (GenerateConsoleCtrlEvent: %v); the daemon is killed instead", err)
		}
		t.Fatalf("CTRL_BREAK to the daemon: %v", err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("daemon after CTRL_BREAK: %v\n%s", err, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon still running 60s after CTRL_BREAK:\n%s", out)
	}
}

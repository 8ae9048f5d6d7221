package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonCmd runs this test binary as `opsvc daemon` (testscript dispatches on argv[0]).
func daemonCmd(t *testing.T, dir string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	// The binary named opsvc on PATH: a worker or guard the daemon starts
	// from its own path must find opsvc there, not this test binary.
	cmd := exec.Command(opsvcBin(t), "daemon", "--units", filepath.Join(dir, "units"), "--state", filepath.Join(dir, "state"),
		"--socket", filepath.Join(dir, "s.sock"), "--config", filepath.Join(dir, "opsvc.toml"))
	cmd.Env = append(os.Environ(), extraEnv...)
	return cmd
}

// TestDaemonTalksToItsSystemd plays systemd: a unixgram socket as
// NOTIFY_SOCKET, a watchdog, a reload and a stop.
func TestDaemonTalksToItsSystemd(t *testing.T) {
	dir, err := os.MkdirTemp("", "ond")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "units"), 0o755)
	os.WriteFile(filepath.Join(dir, "units", "env.toml"), []byte(`[service]
exec = ["/bin/sh", "-c", "echo NOTIFY_SOCKET=[$NOTIFY_SOCKET] WATCHDOG_USEC=[$WATCHDOG_USEC] INVOCATION_ID=[$INVOCATION_ID]; exec sleep 1000"]
`), 0o644)
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	cmd := daemonCmd(t, dir, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000", "INVOCATION_ID=abc")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	expect := func(prefix string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, prefix) {
					return m
				}
			case <-timeout:
				t.Fatalf("no %q from the daemon within 20s", prefix)
			}
		}
	}
	ready := expect("READY=1")
	if !strings.Contains(ready, "\nSTATUS=1 units: 1 active") {
		t.Errorf("READY message = %q, want the unit counts in STATUS", ready)
	}
	expect("WATCHDOG=1")
	expect("WATCHDOG=1")

	cmd.Process.Signal(syscall.SIGHUP)
	reloading := expect("RELOADING=1")
	if !strings.Contains(reloading, "\nMONOTONIC_USEC=") {
		t.Errorf("reload message = %q, want MONOTONIC_USEC", reloading)
	}
	expect("READY=1")

	cmd.Process.Signal(syscall.SIGTERM)
	expect("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	// The worker did not inherit the daemon's own systemd variables.
	b, err := os.ReadFile(filepath.Join(dir, "state", "logs", "env.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "NOTIFY_SOCKET=[] WATCHDOG_USEC=[] INVOCATION_ID=[]") {
		t.Errorf("worker environment leaked the daemon's systemd variables: %s", b)
	}
}

// TestServiceFileVerifies checks contrib/opsvc.service with systemd-analyze.
func TestServiceFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	b, err := os.ReadFile("../../contrib/opsvc.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "KillMode=mixed", "RuntimeDirectory=opsvc", "StateDirectory=opsvc", "ConfigurationDirectory=opsvc", "ExecReload=", "TimeoutStopSec="} {
		if !strings.Contains(string(b), want) {
			t.Errorf("opsvc.service lacks %s", want)
		}
	}
	exe, _ := os.Executable()
	dir := t.TempDir()
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/opsvc", exe)
	path := filepath.Join(dir, "opsvc.service")
	os.WriteFile(path, []byte(unit), 0o644)
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify printed:\n%s", out)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/bus"
)

// reexecUnits are the workers a re-exec must keep: printers of numbered
// lines, an IPC worker that heartbeats under a watchdog and answers
// commands, and a notify worker that pings its watchdog with
// systemd-notify.
func reexecUnits(t *testing.T, dir string, printers int) {
	t.Helper()
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(units, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	for i := range printers {
		write("p"+strconv.Itoa(i)+".toml", `[service]
exec = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.005; done"]
`, 0o644)
	}
	write("echo.toml", `[service]
type = "ipc"
watchdog = "3s"
exec = ["./echo.sh"]
`, 0o644)
	write("echo.sh", `#!/bin/sh
printf '{"type":"ready"}\n' >&3
(while :; do printf '{"type":"heartbeat"}\n' >&3 || exit; sleep 0.1; done) &
while IFS= read -r l <&3; do
	case $l in
	*'"command"'*)
		id=$(printf '%s' "$l" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
		printf '{"type":"reply","id":"%s","ok":true,"data":{"pid":%d}}\n' "$id" $$ >&3 ;;
	*shutdown*) kill $! 2>/dev/null; exit 0 ;;
	esac
done
`, 0o755)
	if _, err := exec.LookPath("systemd-notify"); err == nil {
		write("nt.toml", `[service]
type = "notify"
exec = ["/bin/sh", "-c", "systemd-notify --ready; i=0; while :; do i=$((i+1)); systemd-notify STATUS=tick-$i; sleep 0.2; done"]
`, 0o644)
	}
}

// cliRun runs the command line as its own process (this test binary as
// opsvc), so that no connection outlives it.
func cliRun(t *testing.T, sock string, args ...string) (string, string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(exe, append([]string{"--socket", sock}, args...)...)
	cmd.Args[0] = "opsvc"
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

type unitRow struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Sub    string `json:"sub"`
	PID    int    `json:"pid"`
	Status string `json:"status_text"`
}

func unitRows(t *testing.T, sock string) map[string]unitRow {
	t.Helper()
	out, _, err := cliRun(t, sock, "status", "--json")
	if err != nil && out == "" {
		return nil
	}
	var st struct {
		Units []unitRow `json:"units"`
	}
	if json.Unmarshal([]byte(out), &st) != nil {
		return nil
	}
	m := make(map[string]unitRow)
	for _, u := range st.Units {
		m[u.Name] = u
	}
	return m
}

// waitUnits polls the daemon until ok holds for its units, or fails the test.
func waitUnits(t *testing.T, sock, what string, ok func(map[string]unitRow) bool) map[string]unitRow {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := unitRows(t, sock)
		if m != nil && ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; units: %+v", what, m)
		}
		time.Sleep(20 * time.Millisecond) // polling the daemon's state
	}
}

func allActive(n int) func(map[string]unitRow) bool {
	return func(m map[string]unitRow) bool {
		if len(m) != n {
			return false
		}
		for _, u := range m {
			if u.State != "active" || u.PID == 0 {
				return false
			}
		}
		return true
	}
}

func storedEventList(t *testing.T, sock string) []bus.Event {
	t.Helper()
	out, _, err := cliRun(t, sock, "events", "--json")
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	var evs []bus.Event
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var e bus.Event
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// checkLines checks that a printer's log holds "line 1" … "line N" (and its
// stderr lines) in order, none lost or doubled.
func checkLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{"line": 1, "err": 1}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		word, n := f[len(f)-2], f[len(f)-1]
		want, ok := next[word]
		if !ok {
			continue
		}
		if n != strconv.Itoa(want) {
			t.Fatalf("%s: %q after %s %d: a line was lost or doubled", filepath.Base(path), l, word, want-1)
		}
		next[word] = want + 1
	}
	if next["line"] < 10 {
		t.Fatalf("%s: only %d lines", filepath.Base(path), next["line"]-1)
	}
	return next["line"] - 1
}

func startReexecDaemon(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := daemonCmd(t, dir)
	log, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s", b)
		}
	})
	return cmd
}

// TestReexecKeepsWorkers re-executes a daemon under its workers' feet: every
// worker keeps its pid, no output line is lost, the event seq goes on without
// a gap, the IPC worker answers a command after the switch and its
// heartbeats keep the watchdog quiet, and a crash after the switch is
// restarted as usual.
func TestReexecKeepsWorkers(t *testing.T) {
	dir, err := os.MkdirTemp("", "orx")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	const printers = 4
	reexecUnits(t, dir, printers)
	entries, _ := os.ReadDir(filepath.Join(dir, "units"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") {
			n++
		}
	}
	cmd := startReexecDaemon(t, dir)
	sock := filepath.Join(dir, "s.sock")
	before := waitUnits(t, sock, "units active", allActive(n))

	for round := range 2 {
		out, stderr, err := cliRun(t, sock, "daemon-reexec")
		if err != nil {
			t.Fatalf("daemon-reexec (round %d): %v\n%s%s", round, err, out, stderr)
		}
		if !strings.Contains(out, strconv.Itoa(n)+" worker(s) kept running") {
			t.Errorf("daemon-reexec said %q, want %d workers kept", out, n)
		}
		after := waitUnits(t, sock, "units active after the re-exec", allActive(n))
		for name, u := range before {
			if after[name].PID != u.PID {
				t.Errorf("round %d: %s: pid %d became %d", round, name, u.PID, after[name].PID)
			}
		}
	}
	// The IPC worker answers, and is the same process.
	out, stderr, err := cliRun(t, sock, "send", "echo", "ping")
	if err != nil {
		t.Fatalf("send after the re-exec: %v %s", err, stderr)
	}
	if !strings.Contains(out, strconv.Itoa(before["echo"].PID)) {
		t.Errorf("send answered %q, want the pid %d", out, before["echo"].PID)
	}
	// Heartbeats and watchdog pings are read by the new process: past the
	// 3 s watchdogs, nothing was killed.
	time.Sleep(3500 * time.Millisecond) // lets the watchdogs run out if nobody reads the heartbeats
	now := waitUnits(t, sock, "units active", allActive(n))
	for name, u := range before {
		if now[name].PID != u.PID {
			t.Errorf("%s: pid %d became %d after the re-exec", name, u.PID, now[name].PID)
		}
	}
	// The notify socket is read by the new process: the status moves on.
	if _, ok := before["nt"]; ok {
		seen := now["nt"].Status
		waitUnits(t, sock, "nt status after "+seen, func(m map[string]unitRow) bool {
			return strings.HasPrefix(m["nt"].Status, "tick-") && m["nt"].Status != seen
		})
	}
	// A crash after the switch restarts as usual.
	syscall.Kill(before["p0"].PID, syscall.SIGKILL)
	waitUnits(t, sock, "p0 restarted", func(m map[string]unitRow) bool {
		return m["p0"].State == "active" && m["p0"].PID != 0 && m["p0"].PID != before["p0"].PID
	})

	evs := storedEventList(t, sock)
	var resumed, ready int
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a repeat", i+1, e.Seq)
		}
		switch e.Type {
		case "daemon.resumed":
			resumed++
			if e.Data["lost"] != float64(0) {
				t.Errorf("daemon.resumed: %v", e.Data)
			}
		case "daemon.ready":
			ready++
			if e.PID != cmd.Process.Pid {
				t.Errorf("daemon.ready from pid %d, want the daemon's %d throughout", e.PID, cmd.Process.Pid)
			}
		case "unit.watchdog", "unit.adopt_failed", "unit.ipc_closed":
			t.Errorf("event %s %s: %v", e.Type, e.Unit, e.Data)
		}
	}
	if resumed != 2 || ready != 3 {
		t.Errorf("%d daemon.resumed and %d daemon.ready events, want 2 and 3", resumed, ready)
	}

	// Every line printed reached the logs, in order.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	for i := 1; i < printers; i++ {
		checkLines(t, filepath.Join(dir, "state", "logs", "p"+strconv.Itoa(i)+".log"))
	}
}

// TestReexecRefused installs a binary that cannot read the state: the
// daemon does not exec it, says why, and runs on with its workers; with a
// good binary back, the next re-exec works.
func TestReexecRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "orr")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reexecUnits(t, dir, 1)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "opsvc-bin")
	install := func(from string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := bin + ".new"
		if err := os.WriteFile(tmp, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	install(self)
	cmd := daemonCmd(t, dir)
	cmd.Path = bin
	log, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s", b)
		}
	}()
	sock := filepath.Join(dir, "s.sock")
	entries, _ := os.ReadDir(filepath.Join(dir, "units"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") {
			n++
		}
	}
	before := waitUnits(t, sock, "units active", allActive(n))

	script := filepath.Join(dir, "old-opsvc")
	os.WriteFile(script, []byte("#!/bin/sh\necho 'opsvc: daemon: check state /dev/fd/3: the state record is version 1, this binary reads version 2' >&2\nexit 1\n"), 0o755)
	install(script)
	out, stderr, err := cliRun(t, sock, "daemon-reexec")
	if err == nil {
		t.Fatalf("daemon-reexec with a binary that cannot read the state succeeded: %s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailure || !strings.Contains(stderr, "this binary reads version 2") {
		t.Errorf("daemon-reexec: %v (stderr %q), want exit 1 and the new binary's reason", err, stderr)
	}
	evs := storedEventList(t, sock)
	refused := false
	for _, e := range evs {
		if e.Type == "daemon.reexec_refused" && strings.Contains(e.Data["reason"].(string), "reads version 2") && e.PID == cmd.Process.Pid {
			refused = true
		}
		if e.Type == "daemon.reexec" {
			t.Errorf("daemon.reexec published for a refused re-exec")
		}
	}
	if !refused {
		t.Errorf("no daemon.reexec_refused event with the reason: %+v", evs)
	}
	// The daemon runs on with the same workers, and reads them.
	if out, _, err := cliRun(t, sock, "send", "echo", "ping"); err != nil || !strings.Contains(out, strconv.Itoa(before["echo"].PID)) {
		t.Errorf("send after a refused re-exec: %q %v", out, err)
	}
	// It watches its unit files again (the re-exec closed the watches
	// while the binary checked the state): a unit added now starts.
	added := filepath.Join(dir, "units", "added.toml")
	if err := os.WriteFile(added+".tmp", []byte("[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(added+".tmp", added); err != nil {
		t.Fatal(err)
	}
	waitUnits(t, sock, "the added unit active", allActive(n+1))
	if err := os.Remove(added); err != nil {
		t.Fatal(err)
	}
	waitUnits(t, sock, "the added unit gone", allActive(n))
	// A good binary back: the re-exec goes through.
	install(self)
	if out, stderr, err := cliRun(t, sock, "daemon-reexec"); err != nil {
		t.Fatalf("daemon-reexec: %v %s %s", err, out, stderr)
	}
	time.Sleep(3500 * time.Millisecond) // lets the 3 s watchdogs run out if nobody reads the heartbeats
	after := waitUnits(t, sock, "units active", allActive(n))
	for name, u := range before {
		if after[name].PID != u.PID {
			t.Errorf("%s: pid %d became %d", name, u.PID, after[name].PID)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	checkLines(t, filepath.Join(dir, "state", "logs", "p0.log"))
}

// TestReexecAppliesEditedUnits edits, adds and removes unit files while the
// daemon does not watch them, then re-executes it: the new process reads
// them again, so the edited unit runs its new definition, the added one
// starts and the removed one stops, while the unit left alone keeps its
// pid.
func TestReexecAppliesEditedUnits(t *testing.T) {
	dir, err := os.MkdirTemp("", "ore")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(units, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const sleeper = "[service]\nexec = [\"sleep\", \"1000\"]\n"
	write("keep.toml", sleeper)
	write("gone.toml", sleeper)
	write("edit.toml", "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo version 1; exec sleep 1000\"]\n")
	cmd := daemonCmd(t, dir)
	cmd.Args = append(cmd.Args, "--no-watch")
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s", b)
		}
	}()
	sock := filepath.Join(dir, "s.sock")
	before := waitUnits(t, sock, "units active", allActive(3))

	write("edit.toml", "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo version 2; exec sleep 1000\"]\n")
	write("new.toml", sleeper)
	if err := os.Remove(filepath.Join(units, "gone.toml")); err != nil {
		t.Fatal(err)
	}
	if m := unitRows(t, sock); len(m) != 3 || m["edit"].PID != before["edit"].PID {
		t.Fatalf("the daemon took the edits before the re-exec (it should not watch): %+v", m)
	}
	if out, stderr, err := cliRun(t, sock, "daemon-reexec"); err != nil {
		t.Fatalf("daemon-reexec: %v\n%s%s", err, out, stderr)
	}
	after := waitUnits(t, sock, "the edits applied", func(m map[string]unitRow) bool {
		_, gone := m["gone"]
		return len(m) == 3 && !gone && m["new"].State == "active" && m["edit"].State == "active" &&
			m["edit"].PID != before["edit"].PID && m["edit"].PID != 0
	})
	if after["keep"].PID != before["keep"].PID {
		t.Errorf("keep: pid %d became %d across the re-exec", before["keep"].PID, after["keep"].PID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "state", "logs", "edit.log"))
		if bytes.Contains(b, []byte("version 2")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edit's log has no line of its new definition:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond) // polling the log file the daemon writes
	}
}

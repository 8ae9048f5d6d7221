//go:build unix

package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
	"github.com/opsvc/opsvc/worker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("OPSVC_TEST_WORKER"); mode != "" {
		os.Exit(testWorker(mode))
	}
	goleak.VerifyTestMain(m)
}

// testWorker is the test binary re-executed as a worker.
func testWorker(mode string) int {
	switch mode {
	case "ipc":
		c, err := worker.ConnectWith(worker.Options{OnEOF: func() { os.Exit(0) }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cmds := c.Commands() // before Ready: a worker that takes commands says so first
		c.Status("serving")
		c.Publish("hello", map[string]any{"n": 1})
		c.Ready()
		fmt.Println("ipc worker ready")
		for {
			select {
			case cmd := <-cmds:
				if cmd.Name == "fail" {
					cmd.Reply(nil, fmt.Errorf("asked to fail"))
					continue
				}
				cmd.Reply(map[string]any{"echo": cmd.Name, "args": cmd.Args}, nil)
			case d := <-c.Shutdown():
				fmt.Printf("shutdown within %v\n", d)
				return 0
			}
		}
	case "ipc-mute":
		// Ready, then never a heartbeat: the watchdog must fire.
		f := os.NewFile(3, "ipc")
		f.Write([]byte(`{"type":"ready"}` + "\n"))
		select {}
	case "http-get":
		// A client of the control socket, run as another user.
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", os.Getenv("SOCK"))
		}}}
		resp, err := c.Get("http://opsvc/v1/units")
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		b, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, b)
		return 0
	case "notify-status":
		// Ready with one status, then another: both reach status_text.
		if _, err := sdnotify.Notify("READY=1\nSTATUS=step 1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := sdnotify.Notify("STATUS=step 2"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		select {}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	}
	return 2
}

type harness struct {
	t      *testing.T
	units  string
	state  string
	sup    *Supervisor
	bus    *bus.Bus
	sub    *bus.Subscription
	client *http.Client
	cancel context.CancelFunc
	done   chan error
	logs   *logs.Logs
	runner *ExecRunner
}

func shortTemp(t *testing.T) string {
	dir, err := os.MkdirTemp("", "osv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newHarness(t *testing.T, files map[string]string, setup ...func(*Options)) *harness {
	t.Helper()
	dir := shortTemp(t)
	h := &harness{t: t, units: filepath.Join(dir, "units"), state: filepath.Join(dir, "state")}
	os.MkdirAll(h.units, 0o755)
	os.MkdirAll(h.state, 0o755)
	for name, body := range files {
		h.write(name, body)
	}
	var err error
	h.bus, err = bus.Open(h.state, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.sub, err = h.bus.Subscribe(0, bus.Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	h.logs, err = logs.New(logs.Options{Dir: filepath.Join(h.state, "logs"), JournalSocket: "-"})
	if err != nil {
		t.Fatal(err)
	}
	h.runner, err = NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	opts := Options{
		Paths:      config.Paths{Units: h.units, State: h.state, Socket: filepath.Join(dir, "s.sock"), Config: filepath.Join(dir, "opsvc.toml")},
		Settings:   config.DefaultSettings(),
		Runner:     h.runner,
		Bus:        h.bus,
		Logs:       h.logs,
		Logf:       t.Logf,
		Executable: exe,
		Watch:      true,
		Debounce:   20 * time.Millisecond,
	}
	for _, f := range setup {
		f(&opts)
	}
	h.sup, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h.sup.Handler(), ConnContext: ConnContext}
	go srv.Serve(ln)
	h.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, "s.sock"))
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.sup.Run(ctx) }()
	t.Cleanup(func() {
		h.shutdown()
		h.client.CloseIdleConnections()
		srv.Close()
		h.sub.Close()
		h.bus.Close()
		h.logs.Close()
		h.runner.Close()
	})
	select {
	case <-h.sup.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor not ready after 10s")
	}
	return h
}

func (h *harness) write(name, body string) {
	h.t.Helper()
	p := filepath.Join(h.units, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// shutdown stops the supervisor (all units) and waits for Run to return.
func (h *harness) shutdown() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("Run did not return 30s after cancel")
	}
}

// waitEvent reads the event stream until an event of type typ for unit
// arrives (15 s at most), and returns it.
func (h *harness) waitEvent(typ, unit string) bus.Event {
	h.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-h.sub.C():
			if !ok {
				h.t.Fatalf("event stream ended waiting for %s %s", typ, unit)
			}
			if e.Type == typ && (unit == "" || e.Unit == unit) {
				return e
			}
		case <-timeout:
			h.t.Fatalf("no %s event for %q within 15s", typ, unit)
		}
	}
}

// waitLog waits (15 s at most) for an output line of unit containing text.
func (h *harness) waitLog(unit, text string) {
	h.t.Helper()
	live, cancel := h.logs.Follow(unit)
	defer cancel()
	for _, l := range h.logs.Tail(unit, 1000) {
		if strings.Contains(l.Text, text) {
			return
		}
	}
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l := <-live:
			if strings.Contains(l.Text, text) {
				return
			}
		case <-timeout:
			h.t.Fatalf("no output line %q from %s within 15s", text, unit)
		}
	}
}

func (h *harness) do(method, path string, body io.Reader) (int, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://opsvc"+path, body)
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) status(name string) UnitStatus {
	h.t.Helper()
	code, b := h.do("GET", "/v1/units/"+name, nil)
	if code != 200 {
		h.t.Fatalf("GET unit %s: %d %s", name, code, b)
	}
	var us UnitStatus
	if err := json.Unmarshal(b, &us); err != nil {
		h.t.Fatal(err)
	}
	return us
}

// num reads a number from event data, whether it came from JSON or not.
func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	return -1
}

func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	if pgid <= 0 {
		t.Fatalf("no process group to check (pid %d)", pgid)
	}
	if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
		t.Errorf("process group %d still exists (kill 0: %v)", pgid, err)
	}
}

func testExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestSimpleStartStopRestart(t *testing.T) {
	h := newHarness(t, map[string]string{
		"sleeper.toml": "[unit]\ndescription = \"sleeps\"\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
	})
	e := h.waitEvent("unit.ready", "sleeper")
	us := h.status("sleeper")
	if us.State != Active || us.Sub != "running" || us.PID != e.PID || us.Description != "sleeps" {
		t.Fatalf("status = %+v, want active running with pid %d", us, e.PID)
	}
	first := us.PID

	code, b := h.do("POST", "/v1/units/sleeper/stop?wait=1", nil)
	if code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	us = h.status("sleeper")
	if us.State != Inactive || us.PID != 0 {
		t.Fatalf("after stop: %+v", us)
	}
	assertGroupGone(t, first)

	code, b = h.do("POST", "/v1/units/sleeper/start?wait=1", nil)
	if code != 200 {
		t.Fatalf("start: %d %s", code, b)
	}
	us = h.status("sleeper")
	if us.State != Active || us.PID == 0 || us.PID == first {
		t.Fatalf("after start: %+v", us)
	}
	second := us.PID
	// Starting a running unit is a no-op that returns at once.
	code, b = h.do("POST", "/v1/units/sleeper/start?wait=1", nil)
	if code != 200 || h.status("sleeper").PID != second {
		t.Fatalf("start of a running unit: %d %s", code, b)
	}
	code, b = h.do("POST", "/v1/units/sleeper/restart?wait=1", nil)
	if code != 200 {
		t.Fatalf("restart: %d %s", code, b)
	}
	us = h.status("sleeper")
	if us.State != Active || us.PID == second {
		t.Fatalf("after restart: %+v", us)
	}
	assertGroupGone(t, second)
	h.shutdown()
	assertGroupGone(t, us.PID)
}

func TestStopEscalatesToKill(t *testing.T) {
	h := newHarness(t, map[string]string{
		"stubborn.toml": fmt.Sprintf("[service]\nexec = [%q, \"-test.run=^$\"]\nenvironment = { OPSVC_TEST_WORKER = \"ignore-term\" }\nstop_timeout = \"300ms\"\n", testExe(t)),
	})
	h.waitEvent("unit.ready", "stubborn")
	h.waitLog("stubborn", "ignoring SIGTERM")
	pid := h.status("stubborn").PID
	code, b := h.do("POST", "/v1/units/stubborn/stop?wait=1", nil)
	if code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	h.waitEvent("unit.killed", "stubborn")
	e := h.waitEvent("unit.stopped", "stubborn")
	if e.Data["signal"] != "SIGKILL" {
		t.Errorf("stopped event = %+v, want signal SIGKILL", e)
	}
	us := h.status("stubborn")
	if us.State != Inactive || us.Sub != "timeout" {
		t.Errorf("status = %s (%s), want inactive (timeout)", us.State, us.Sub)
	}
	assertGroupGone(t, pid)
}

func TestRestartBackoffAndStartLimit(t *testing.T) {
	h := newHarness(t, map[string]string{
		"crash.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"exit 7\"]\nrestart_delay = \"100ms\"\nrestart_delay_max = \"400ms\"\nstart_limit_burst = 3\nstart_limit_interval = \"1m\"\n",
	})
	var delays []float64
	for i := 0; i < 3; i++ {
		e := h.waitEvent("unit.restarting", "crash")
		delays = append(delays, num(e.Data["delay_ms"]))
	}
	// A run longer than restart_delay_max resets the backoff: the delays
	// leave a loaded machine's sh room to exit well within it.
	if delays[0] != 100 || delays[1] != 200 || delays[2] != 400 {
		t.Errorf("backoff delays = %v, want [100 200 400]", delays)
	}
	e := h.waitEvent("unit.failed", "crash")
	if e.Data["result"] != "start-limit-hit" {
		t.Errorf("failed event = %+v, want result start-limit-hit", e)
	}
	us := h.status("crash")
	if us.State != Failed || us.Result != "start-limit-hit" || us.Exit == nil || us.Exit.Code != 7 {
		t.Errorf("status = %+v", us)
	}
	// An explicit start clears the limit: it runs (and fails) again. A
	// simple unit is active once started, so the start itself succeeds.
	code, b := h.do("POST", "/v1/units/crash/start?wait=1", nil)
	if code != http.StatusOK {
		t.Errorf("start of a failed unit = %d %s, want 200", code, b)
	}
	h.waitEvent("unit.starting", "crash")
	h.waitEvent("unit.exited", "crash")
	e = h.waitEvent("unit.restarting", "crash")
	if num(e.Data["delay_ms"]) != 100 {
		t.Errorf("backoff after an explicit start = %v, want it reset to 100ms", e.Data["delay_ms"])
	}
}

func TestIPCWorker(t *testing.T) {
	h := newHarness(t, map[string]string{
		"w.toml": fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = [%q, \"-test.run=^$\"]\nenvironment = { OPSVC_TEST_WORKER = \"ipc\" }\nwatchdog = \"2s\"\n", testExe(t)),
	})
	h.waitEvent("worker.hello", "w")
	h.waitEvent("unit.ready", "w")
	us := h.status("w")
	if us.State != Active || us.StatusText != "serving" {
		t.Fatalf("status = %+v", us)
	}
	code, b := h.do("POST", "/v1/units/w/command", strings.NewReader(`{"name":"ping","args":{"x":1}}`))
	if code != 200 || !strings.Contains(string(b), `"echo": "ping"`) {
		t.Fatalf("command = %d %s", code, b)
	}
	code, b = h.do("POST", "/v1/units/w/command", strings.NewReader(`{"name":"fail"}`))
	if code != http.StatusBadGateway || !strings.Contains(string(b), "asked to fail") {
		t.Fatalf("failing command = %d %s", code, b)
	}
	pid := us.PID
	code, b = h.do("POST", "/v1/units/w/stop?wait=1", nil)
	if code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	e := h.waitEvent("unit.stopped", "w")
	if num(e.Data["code"]) != 0 || e.Data["signal"] != "" {
		t.Errorf("ipc worker did not exit cleanly on shutdown: %+v", e)
	}
	assertGroupGone(t, pid)
	var found bool
	for _, l := range h.logs.Tail("w", 10) {
		if strings.Contains(l.Text, "shutdown within 10s") {
			found = true
		}
	}
	if !found {
		t.Errorf("worker did not log the shutdown deadline: %+v", h.logs.Tail("w", 10))
	}
}

func TestWatchdogKillsAndRestarts(t *testing.T) {
	h := newHarness(t, map[string]string{
		"mute.toml": fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = [%q, \"-test.run=^$\"]\nenvironment = { OPSVC_TEST_WORKER = \"ipc-mute\" }\nwatchdog = \"200ms\"\nrestart_delay = \"10ms\"\n", testExe(t)),
	})
	first := h.waitEvent("unit.ready", "mute")
	h.waitEvent("unit.watchdog", "mute")
	e := h.waitEvent("unit.restarting", "mute")
	if e.Data["result"] != "watchdog" {
		t.Errorf("restarting = %+v, want result watchdog", e)
	}
	second := h.waitEvent("unit.ready", "mute")
	if second.PID == first.PID {
		t.Errorf("same pid after a watchdog restart")
	}
	assertGroupGone(t, first.PID)
}

func TestNotifyWithSystemdNotify(t *testing.T) {
	if _, err := exec.LookPath("systemd-notify"); err != nil {
		t.Skip("systemd-notify not installed (apt-get install systemd)")
	}
	h := newHarness(t, map[string]string{
		"n.toml": "[service]\ntype = \"notify\"\nexec = [\"/bin/sh\", \"-c\", \"sleep 0.1; systemd-notify --ready --status='warming done'; echo rc=$?; exec sleep 1000\"]\nstart_timeout = \"20s\"\n",
	})
	h.waitEvent("unit.starting", "n")
	if us := h.status("n"); us.State != Activating {
		t.Errorf("before READY=1: %s, want activating", us.State)
	}
	h.waitEvent("unit.ready", "n")
	us := h.status("n")
	if us.State != Active || us.StatusText != "warming done" {
		t.Fatalf("status = %+v", us)
	}
	// systemd-notify itself must have returned 0: its barrier fd was closed.
	h.waitLog("n", "rc=")
	if l := h.logs.Tail("n", 10); len(l) == 0 || strings.TrimSpace(l[0].Text) != "rc=0" {
		t.Fatalf("systemd-notify output = %+v, want rc=0", l)
	}
}

func TestOrphansAreReaped(t *testing.T) {
	h := newHarness(t, map[string]string{
		// The main process leaves a child behind in its group and exits.
		"o.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"sleep 1000 & echo child=$!; exit 3\"]\nrestart = \"no\"\n",
	})
	e := h.waitEvent("unit.started", "o")
	h.waitEvent("unit.failed", "o")
	// The group is killed with the main process and the orphan reaped by us.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-e.PID, 0) != syscall.ESRCH {
		if time.Now().After(deadline) {
			t.Fatalf("group %d survived its main process", e.PID)
		}
		time.Sleep(10 * time.Millisecond) // the kernel reaps asynchronously; no event exists for it
	}
}

func TestShutdownStopsEverything(t *testing.T) {
	h := newHarness(t, map[string]string{
		"db.toml":  "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
		"web.toml": "[unit]\nrequires = [\"db\"]\nafter = [\"db\"]\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
	})
	db := h.waitEvent("unit.ready", "db")
	web := h.waitEvent("unit.ready", "web")
	if web.Seq < db.Seq {
		t.Errorf("web ready before db")
	}
	h.shutdown()
	// web (which requires db) stopped before db.
	var order []string
	for len(order) < 2 {
		order = append(order, h.waitEvent("unit.stopped", "").Unit)
	}
	if strings.Join(order, ",") != "web,db" {
		t.Errorf("stop order = %v, want [web db]", order)
	}
	assertGroupGone(t, db.PID)
	assertGroupGone(t, web.PID)
}

func TestInvalidEditKeepsLastGood(t *testing.T) {
	h := newHarness(t, map[string]string{
		"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
		"b.toml": "[service]\nexec = [\"/bin/sleep\", \"1001\"]\n",
	})
	a := h.waitEvent("unit.ready", "a")
	b := h.waitEvent("unit.ready", "b")
	// A broken edit: a keeps running its last good definition.
	h.write("a.toml", "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \n")
	h.waitEvent("config.invalid", "a")
	us := h.status("a")
	if us.State != Active || us.PID != a.PID || !strings.Contains(us.Error, "a.toml:3:") {
		t.Fatalf("after a broken edit: %+v", us)
	}
	// A good edit of b restarts b only.
	h.write("b.toml", "[service]\nexec = [\"/bin/sleep\", \"1002\"]\n")
	h.waitEvent("unit.stopped", "b")
	nb := h.waitEvent("unit.ready", "b")
	if nb.PID == b.PID {
		t.Fatal("b not restarted")
	}
	if us := h.status("a"); us.PID != a.PID {
		t.Errorf("a restarted by an edit of b")
	}
}

func TestForeignPeerIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	// Let uid 65534 reach the socket, so the daemon itself must refuse it.
	dir := filepath.Dir(h.state)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Join(dir, "s.sock"), 0o666)
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = []string{"OPSVC_TEST_WORKER=http-get", "SOCK=" + filepath.Join(dir, "s.sock")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client: %v: %s", err, out)
		}
		return string(out)
	}
	out := run()
	if !strings.HasPrefix(out, "403 ") || !strings.Contains(out, "uid 65534 may not use this daemon") || !strings.Contains(out, "allow_uids") {
		t.Fatalf("foreign peer got %q, want 403 with a hint", out)
	}
	e := h.waitEvent("api.denied", "")
	if num(e.Data["uid"]) != 65534 {
		t.Errorf("api.denied event = %+v, want uid 65534", e)
	}
	// Allowed once listed in [control] allow_uids.
	if code, b := h.do("PUT", "/v1/settings", strings.NewReader(`{"control":{"allow_uids":[65534]}}`)); code != 200 {
		t.Fatalf("PUT settings: %d %s", code, b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "opsvc.toml")); err != nil || !strings.Contains(string(b), "65534") {
		t.Errorf("settings not persisted: %v %s", err, b)
	}
	if code, b := h.do("PUT", "/v1/settings", strings.NewReader(`{"orchestrator":{"max_turns":999}}`)); code != 400 || !strings.Contains(string(b), "max_turns") {
		t.Errorf("out-of-range PUT = %d %s, want 400 naming max_turns", code, b)
	}
	if out := run(); !strings.HasPrefix(out, "200 ") {
		t.Fatalf("allowed peer got %q, want 200", out)
	}
}

func TestNodeWorker(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (apt-get install nodejs)")
	}
	script, _ := filepath.Abs("../worker/testdata/worker.js")
	h := newHarness(t, map[string]string{
		"js.toml": fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = [%q, %q]\nstop_timeout = \"10s\"\n", node, script),
	})
	h.waitEvent("unit.ready", "js")
	code, b := h.do("POST", "/v1/units/js/command", strings.NewReader(`{"name":"echo","args":{"n":42}}`))
	if code != 200 || !strings.Contains(string(b), `"n": 42`) {
		t.Fatalf("echo to node = %d %s", code, b)
	}
	// A message over 1 MiB is refused and reported; the channel goes on.
	code, b = h.do("POST", "/v1/units/js/command", strings.NewReader(`{"name":"big","args":{"size":2000000}}`))
	if code != 200 {
		t.Fatalf("big = %d %s", code, b)
	}
	h.waitEvent("unit.ipc_error", "js")
	h.waitEvent("worker.after-big", "js")
	pid := h.status("js").PID
	if code, b := h.do("POST", "/v1/units/js/stop?wait=1", nil); code != 200 {
		t.Fatalf("stop: %d %s", code, b)
	}
	bye := h.waitEvent("worker.bye", "js")
	if d, _ := bye.Data["data"].(map[string]any); num(d["deadline_ms"]) != 10000 {
		t.Errorf("bye = %+v, want the shutdown deadline 10000 ms", bye.Data)
	}
	e := h.waitEvent("unit.stopped", "js")
	if num(e.Data["code"]) != 0 {
		t.Errorf("node worker exit = %+v, want 0 (no SIGTERM, no kill)", e.Data)
	}
	assertGroupGone(t, pid)
}

func TestOneshot(t *testing.T) {
	h := newHarness(t, map[string]string{
		"job.toml": "[unit]\nenabled = false\n[service]\ntype = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"echo working; sleep 0.2; echo done\"]\n",
		"bad.toml": "[unit]\nenabled = false\n[service]\ntype = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"exit 4\"]\nrestart = \"no\"\n",
	})
	code, b := h.do("POST", "/v1/units/job/start?wait=1", nil)
	if code != 200 {
		t.Fatalf("start oneshot: %d %s", code, b)
	}
	us := h.status("job")
	if us.State != Active || us.Sub != "exited" || us.Exit == nil || us.Exit.Code != 0 {
		t.Fatalf("oneshot after start --wait = %+v, want active (exited) with code 0", us)
	}
	code, b = h.do("POST", "/v1/units/bad/start?wait=1", nil)
	if code != http.StatusConflict || !strings.Contains(string(b), "exit-code") {
		t.Fatalf("failing oneshot = %d %s, want 409 exit-code", code, b)
	}
	if us := h.status("bad"); us.State != Failed {
		t.Errorf("failing oneshot state = %s, want failed", us.State)
	}
}

func TestUserAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a worker as another user")
	}
	h := newHarness(t, map[string]string{
		"who.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo uid=$(id -u) gid=$(id -g); exec sleep 1000\"]\nuser = \"nobody\"\ngroup = \"65534\"\nworking_directory = \"/\"\n",
	})
	h.waitEvent("unit.ready", "who")
	h.waitLog("who", "uid=")
	if l := h.logs.Tail("who", 1); len(l) != 1 || l[0].Text != "uid=65534 gid=65534" {
		t.Errorf("worker identity = %+v, want uid=65534 gid=65534", l)
	}
}

func TestNotifyWatchdog(t *testing.T) {
	if _, err := exec.LookPath("systemd-notify"); err != nil {
		t.Skip("systemd-notify not installed (apt-get install systemd)")
	}
	// Pings WATCHDOG=1 every 0.25 s for 2 s, then stops: the watchdog fires
	// only after the pings stopped. Its 3 s leave room for a ping delayed by a
	// loaded machine.
	h := newHarness(t, map[string]string{
		"wd.toml": "[service]\ntype = \"notify\"\nexec = [\"/bin/sh\", \"-c\", \"systemd-notify --ready; for i in 1 2 3 4 5 6 7 8; do sleep 0.25; systemd-notify WATCHDOG=1; done; echo pinged; exec sleep 1000\"]\nwatchdog = \"3s\"\nrestart = \"no\"\n",
	})
	h.waitEvent("unit.ready", "wd")
	h.waitLog("wd", "pinged")
	wd := h.waitEvent("unit.watchdog", "wd")
	pinged := h.logs.Tail("wd", 1)[0].Time
	if wd.Time.Before(pinged) {
		t.Errorf("watchdog fired at %v, before the pings stopped at %v", wd.Time, pinged)
	}
	e := h.waitEvent("unit.failed", "wd")
	if e.Data["result"] != "watchdog" {
		t.Errorf("failed = %+v, want result watchdog", e.Data)
	}
}

func TestNotifyFromAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a worker as another user")
	}
	if _, err := exec.LookPath("systemd-notify"); err != nil {
		t.Skip("systemd-notify not installed (apt-get install systemd)")
	}
	// Unprivileged, systemd-notify sends with its own pid: notify_access = "all".
	h := newHarness(t, map[string]string{
		"n.toml": "[service]\ntype = \"notify\"\nuser = \"nobody\"\nnotify_access = \"all\"\nworking_directory = \"/\"\nexec = [\"/bin/sh\", \"-c\", \"systemd-notify --ready --status=unprivileged; echo rc=$?; exec sleep 1000\"]\n",
	})
	h.waitEvent("unit.ready", "n")
	if us := h.status("n"); us.State != Active || us.StatusText != "unprivileged" {
		t.Fatalf("status = %+v", us)
	}
	h.waitLog("n", "rc=")
	if l := h.logs.Tail("n", 1); len(l) != 1 || l[0].Text != "rc=0" {
		t.Errorf("systemd-notify as nobody: %+v, want rc=0", l)
	}
}

// TestEventsOfAnEndedProcess hands the loop, as the channel's pump does,
// the last messages of a process whose end was handled first (a worker
// that sends an event and exits at once): its event is published, with its
// pid; its status, for a process that no longer runs, is not.
func TestEventsOfAnEndedProcess(t *testing.T) {
	h := newHarness(t, map[string]string{"w.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	h.waitEvent("unit.started", "w")
	ended := &fakeProc{pid: 4242, done: make(chan struct{})}
	if err := h.sup.do(context.Background(), func() {
		h.sup.handleMsg(unitMsg{unit: "w", proc: ended, ipc: &worker.Message{Type: "status", Text: "from the ended process"}})
		h.sup.handleMsg(unitMsg{unit: "w", proc: ended, ipc: &worker.Message{Type: "event", Name: "bye", Data: json.RawMessage(`{"n":1}`)}})
	}); err != nil {
		t.Fatal(err)
	}
	e := h.waitEvent("worker.bye", "w")
	if d, _ := e.Data["data"].(map[string]any); e.PID != 4242 || num(d["n"]) != 1 {
		t.Errorf("worker.bye = %+v, want pid 4242 and its data", e)
	}
	if st := h.status("w"); st.StatusText == "from the ended process" {
		t.Errorf("the ended process's status was taken: %+v", st)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/handover"
)

// replaceDaemon is a daemon run from the opsvc binary in PATH, on dir's
// units, state and socket.
type replaceDaemon struct {
	cmd    *exec.Cmd
	log    string
	exited chan error // the exit, once
}

func startReplaceDaemon(t *testing.T, dir, logName string, args ...string) *replaceDaemon {
	t.Helper()
	argv := append([]string{"daemon", "--units", filepath.Join(dir, "units"), "--state", filepath.Join(dir, "state"),
		"--socket", filepath.Join(dir, "s.sock"), "--config", filepath.Join(dir, "opsvc.toml")}, args...)
	cmd := exec.Command(opsvcBin(t), argv...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	d := &replaceDaemon{cmd: cmd, log: filepath.Join(dir, logName), exited: make(chan error, 1)}
	lf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-d.exited:
			d.exited <- err
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-d.exited:
				d.exited <- err
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("%s:\n%s", logName, b)
		}
	})
	return d
}

// wait waits (bounded) for the daemon to exit and returns how it did.
func (d *replaceDaemon) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: the daemon did not exit within 60 s", filepath.Base(d.log))
		return nil
	}
}

func (d *replaceDaemon) running() bool {
	select {
	case err := <-d.exited:
		d.exited <- err
		return false
	default:
		return true
	}
}

// unixClient talks HTTP to the daemon on sock; its idle connections are
// closed when the test ends.
func unixClient(t *testing.T, sock string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// follower follows the daemon's events as a client does: on a disconnect
// it follows again from the last seq it saw.
type follower struct {
	mu     sync.Mutex
	events []bus.Event
	conns  int
	got    chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
}

func follow(t *testing.T, sock string) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{got: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	client := unixClient(t, sock)
	go func() {
		defer close(f.done)
		var last uint64
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?follow=1&since="+strconv.FormatUint(last, 10), nil)
			resp, err := client.Do(req)
			if err != nil {
				time.Sleep(5 * time.Millisecond) // the daemon is switching: ask again, until stopped
				continue
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			dec := json.NewDecoder(bufio.NewReader(resp.Body))
			for {
				var e bus.Event
				if dec.Decode(&e) != nil {
					break
				}
				last = e.Seq
				f.mu.Lock()
				f.events = append(f.events, e)
				f.mu.Unlock()
				select {
				case f.got <- struct{}{}:
				default:
				}
			}
			resp.Body.Close()
		}
	}()
	return f
}

// waitSeq waits (bounded) until the follower has seen seq.
func (f *follower) waitSeq(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.events)
		var last uint64
		if n > 0 {
			last = f.events[n-1].Seq
		}
		f.mu.Unlock()
		if last >= seq {
			return
		}
		select {
		case <-f.got:
		case <-deadline:
			t.Fatalf("the follower saw %d events up to seq %d, not seq %d, within 30 s", n, last, seq)
		}
	}
}

func lastSeq(evs []bus.Event) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// TestReplaceKeepsWorkers: a second daemon started with --replace takes
// over from the running one, which hands over and exits 0. Every worker
// keeps its pid and is read by the new daemon (output, IPC commands and
// heartbeats, notify), no output line is lost, and the event seq goes on
// without a gap for a follower that reconnects with since.
func TestReplaceKeepsWorkers(t *testing.T) {
	dir, err := os.MkdirTemp("", "orp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	const printers = 3
	reexecUnits(t, dir, printers)
	entries, _ := os.ReadDir(filepath.Join(dir, "units"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") {
			n++
		}
	}
	sock := filepath.Join(dir, "s.sock")
	a := startReplaceDaemon(t, dir, "a.log")
	before := waitUnits(t, sock, "units active under the first daemon", allActive(n))
	f := follow(t, sock)
	defer func() { f.stop(); <-f.done }()
	seqA := lastSeq(storedEventList(t, sock))
	f.waitSeq(t, seqA)

	b := startReplaceDaemon(t, dir, "b.log", "--replace")
	if err := a.wait(t); err != nil {
		t.Fatalf("the first daemon exited with %v, want 0 once it handed over", err)
	}
	after := waitUnits(t, sock, "units active under the new daemon", allActive(n))
	for name, u := range before {
		if after[name].PID != u.PID {
			t.Errorf("%s: pid %d became %d", name, u.PID, after[name].PID)
		}
	}
	if !b.running() {
		t.Fatalf("the new daemon exited: %v", b.wait(t))
	}
	// The IPC worker is the same process, and the new daemon talks to it.
	out, stderr, err := cliRun(t, sock, "send", "echo", "ping")
	if err != nil || !strings.Contains(out, strconv.Itoa(before["echo"].PID)) {
		t.Errorf("send after the handover: %q %v %s, want the pid %d", out, err, stderr, before["echo"].PID)
	}
	// The notify socket is read by the new daemon: the status moves on.
	if _, ok := before["nt"]; ok {
		seen := after["nt"].Status
		waitUnits(t, sock, "nt status after "+seen, func(m map[string]unitRow) bool {
			return strings.HasPrefix(m["nt"].Status, "tick-") && m["nt"].Status != seen
		})
	}
	// Heartbeats are read by the new daemon: past the 3 s watchdog, the
	// IPC worker still runs.
	time.Sleep(3500 * time.Millisecond) // lets the watchdog run out if nobody reads the heartbeats
	now := waitUnits(t, sock, "units active", allActive(n))
	for name, u := range before {
		if now[name].PID != u.PID {
			t.Errorf("%s: pid %d became %d after the handover", name, u.PID, now[name].PID)
		}
	}

	evs := storedEventList(t, sock)
	var handed, resumed bool
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a repeat", i+1, e.Seq)
		}
		switch e.Type {
		case "daemon.reexec":
			handed = e.PID == a.cmd.Process.Pid && e.Data["takeover"] == true
		case "daemon.resumed":
			resumed = e.PID == b.cmd.Process.Pid && e.Data["from"] == float64(a.cmd.Process.Pid) &&
				e.Data["adopted"] == float64(n) && e.Data["lost"] == float64(0)
			if !resumed {
				t.Errorf("daemon.resumed from pid %d: %v", e.PID, e.Data)
			}
		case "unit.watchdog", "unit.adopt_failed", "unit.ipc_closed", "unit.exited", "daemon.leftovers":
			t.Errorf("event %s %s: %v", e.Type, e.Unit, e.Data)
		}
	}
	if !handed || !resumed {
		t.Errorf("daemon.reexec (takeover) from the first daemon: %v; daemon.resumed from the new one: %v", handed, resumed)
	}
	// The follower was cut off by the handover, followed again with since
	// and saw every event once, in order.
	f.waitSeq(t, lastSeq(evs))
	f.mu.Lock()
	for i, e := range f.events {
		if e.Seq != uint64(i+1) {
			t.Errorf("the follower's event %d has seq %d", i+1, e.Seq)
			break
		}
	}
	if f.conns < 2 {
		t.Errorf("the follower connected %d time(s): the handover did not cut it off?", f.conns)
	}
	f.mu.Unlock()

	// Every line printed reached the logs, in order, across both daemons.
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.wait(t); err != nil {
		t.Fatalf("the new daemon's exit: %v", err)
	}
	for i := range printers {
		checkLines(t, filepath.Join(dir, "state", "logs", "p"+strconv.Itoa(i)+".log"))
	}
}

// TestReplaceRefused: a handover the running daemon refuses, or that the
// new daemon refuses once it got the state, leaves the running daemon
// with its workers, reading them; a refused --replace exits 1 with why.
func TestReplaceRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "orq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reexecUnits(t, dir, 1)
	entries, _ := os.ReadDir(filepath.Join(dir, "units"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".toml") {
			n++
		}
	}
	sock := filepath.Join(dir, "s.sock")
	a := startReplaceDaemon(t, dir, "a.log")
	before := waitUnits(t, sock, "units active", allActive(n))
	client := unixClient(t, sock)
	state := filepath.Join(dir, "state")

	// Another state directory: the new daemon exits 1 with the reason.
	other := filepath.Join(dir, "other")
	cmd := exec.Command(opsvcBin(t), "daemon", "--replace", "--units", filepath.Join(dir, "units"), "--state", other,
		"--socket", sock, "--config", filepath.Join(dir, "opsvc.toml"))
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("--replace with another state directory: %v, want exit 1\n%s", err, errb.String())
	}
	msg := errb.String()
	if !strings.Contains(msg, "opsvc: replace the running daemon: ") || !strings.Contains(msg, "state directory is "+other) || !strings.Contains(msg, "--state "+state) {
		t.Errorf("--replace with another state directory said %q", msg)
	}

	// A record version the daemon does not write: 409, and why.
	body, _ := json.Marshal(api.HandoverRequest{Version: handover.Version + 1, State: state})
	resp, err := client.Post("http://opsvc/v1/daemon/handover", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(rb), fmt.Sprintf("version %d", handover.Version+1)) {
		t.Errorf("handover asked with record version %d: %d %s, want 409 and the version", handover.Version+1, resp.StatusCode, rb)
	}

	// A new daemon that gets everything and says no: the daemon takes its
	// workers back.
	refuseHandover(t, sock, state, errors.New("this one says no"))
	// One that gets everything and goes away without an answer.
	refuseHandover(t, sock, state, nil)

	if !a.running() {
		t.Fatalf("the daemon exited: %v", a.wait(t))
	}
	now := waitUnits(t, sock, "units active after the refusals", allActive(n))
	for name, u := range before {
		if now[name].PID != u.PID {
			t.Errorf("%s: pid %d became %d", name, u.PID, now[name].PID)
		}
	}
	if out, _, err := cliRun(t, sock, "send", "echo", "ping"); err != nil || !strings.Contains(out, strconv.Itoa(before["echo"].PID)) {
		t.Errorf("send after the refusals: %q %v", out, err)
	}
	var reasons []string
	for _, e := range storedEventList(t, sock) {
		if e.Type == "daemon.reexec_refused" && e.PID == a.cmd.Process.Pid {
			reasons = append(reasons, e.Data["reason"].(string))
		}
	}
	want := []string{"state directory is " + other, fmt.Sprintf("version %d", handover.Version+1), "this one says no", "no answer from the new daemon"}
	if len(reasons) != len(want) {
		t.Fatalf("daemon.reexec_refused reasons %q, want %d: %q", reasons, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(reasons[i], w) {
			t.Errorf("refusal %d: %q, want it to say %q", i+1, reasons[i], w)
		}
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.wait(t); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	checkLines(t, filepath.Join(dir, "state", "logs", "p0.log"))

	// With no daemon on the socket, --replace just starts.
	c := startReplaceDaemon(t, dir, "c.log", "--replace")
	waitUnits(t, sock, "units active under a daemon started with --replace and nothing to replace", allActive(n))
	c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.wait(t); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if b, _ := os.ReadFile(c.log); !strings.Contains(string(b), "no daemon answers on "+sock) {
		t.Errorf("the daemon started with --replace and nothing to replace did not say so:\n%s", b)
	}
}

// refuseHandover plays a new daemon that asks for the handover, receives
// the state and files, then answers no (refusal set) or hangs up.
func refuseHandover(t *testing.T, sock, state string, refusal error) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	uc := conn.(*net.UnixConn)
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(30 * time.Second))
	body, _ := json.Marshal(api.HandoverRequest{Version: handover.Version, State: state})
	fmt.Fprintf(uc, "POST /v1/daemon/handover HTTP/1.1\r\nHost: opsvc\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	code, head, err := readAnswerHead(uc)
	if err != nil || code != http.StatusSwitchingProtocols || head.Get("Upgrade") != api.HandoverUpgrade {
		t.Fatalf("handover asked: %d %v %v", code, head, err)
	}
	rec, files, err := handover.Receive(uc)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if files[handover.NameControl] == nil || len(rec.Units) == 0 || files[handover.FDName("echo", handover.KindIPC)] == nil {
		t.Errorf("handed over %d units and files %v: want the units, the control socket and the IPC channel", len(rec.Units), files.Names())
	}
	if refusal != nil {
		if err := handover.Answer(uc, refusal); err != nil {
			t.Fatal(err)
		}
		// The daemon closes the connection once it has the answer.
		if _, err := uc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after the answer: %v, want the daemon to hang up", err)
		}
	}
}

// TestReadAnswerHeadIsBounded: the answer's head is read a byte at a time
// up to its end and no further, and a head that does not end, or is not
// HTTP, is refused.
func TestReadAnswerHeadIsBounded(t *testing.T) {
	for _, c := range []struct {
		name, in string
		code     int
		rest     string
		fail     string
	}{
		{"switch", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: opsvc-handover\r\n\r\nFRAMES", 101, "FRAMES", ""},
		{"refusal", "HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}", 409, "{}", ""},
		{"endless", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxAnswerHead), 0, "", "headers over"},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", "not an HTTP answer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() {
				b.Write([]byte(c.in))
				b.Close()
			}()
			code, _, err := readAnswerHead(a)
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("error %v, want %q", err, c.fail)
				}
				return
			}
			if err != nil || code != c.code {
				t.Fatalf("code %d, error %v; want %d", code, err, c.code)
			}
			rest, _ := io.ReadAll(a)
			if string(rest) != c.rest {
				t.Errorf("left %q after the head, want %q", rest, c.rest)
			}
		})
	}
}

// TestReplaceTwice replaces a daemon that itself replaced another: its
// control socket was made by the first daemon, whose credentials the socket
// keeps, and the third daemon must still take over from the second.
func TestReplaceTwice(t *testing.T) {
	dir, err := os.MkdirTemp("", "orq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(units, name+".toml"), []byte("[service]\nexec = [\"sleep\", \"1000\"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "s.sock")
	first := startReplaceDaemon(t, dir, "1.log")
	before := waitUnits(t, sock, "units active under the first daemon", allActive(2))
	prev := first
	for round, logName := range []string{"2.log", "3.log"} {
		next := startReplaceDaemon(t, dir, logName, "--replace")
		if err := prev.wait(t); err != nil {
			t.Fatalf("round %d: the daemon replaced exited with %v, want 0 once it handed over", round, err)
		}
		after := waitUnits(t, sock, "units active under the new daemon", allActive(2))
		for name, u := range before {
			if after[name].PID != u.PID {
				t.Errorf("round %d: %s: pid %d became %d", round, name, u.PID, after[name].PID)
			}
		}
		if !next.running() {
			t.Fatalf("round %d: the new daemon exited: %v", round, next.wait(t))
		}
		prev = next
	}
}

// TestReexecAfterReplace re-executes a daemon that took its workers over
// with --replace: they are not its children, and after the re-exec their
// end is still seen (a killed worker is restarted).
func TestReexecAfterReplace(t *testing.T) {
	dir, err := os.MkdirTemp("", "orw")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(units, "w.toml"), []byte("[service]\nexec = [\"sleep\", \"1000\"]\nrestart = \"always\"\nrestart_delay = \"0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	first := startReplaceDaemon(t, dir, "1.log")
	before := waitUnits(t, sock, "w active under the first daemon", allActive(1))
	second := startReplaceDaemon(t, dir, "2.log", "--replace")
	if err := first.wait(t); err != nil {
		t.Fatalf("the daemon replaced exited with %v, want 0", err)
	}
	waitUnits(t, sock, "w active under the new daemon", allActive(1))
	if out, stderr, err := cliRun(t, sock, "daemon-reexec"); err != nil {
		t.Fatalf("daemon-reexec: %v\n%s%s", err, out, stderr)
	}
	after := waitUnits(t, sock, "w active after the re-exec", allActive(1))
	if after["w"].PID != before["w"].PID {
		t.Fatalf("w: pid %d became %d", before["w"].PID, after["w"].PID)
	}
	if !second.running() {
		t.Fatalf("the daemon exited: %v", second.wait(t))
	}
	syscall.Kill(before["w"].PID, syscall.SIGKILL)
	waitUnits(t, sock, "w restarted after its kill", func(m map[string]unitRow) bool {
		return m["w"].State == "active" && m["w"].PID != 0 && m["w"].PID != before["w"].PID
	})
}

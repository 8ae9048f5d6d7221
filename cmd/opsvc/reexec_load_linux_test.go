package main

import (
	"bufio"
	"context"
	"encoding/json"
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
)

// loadPrinters is how many units print numbered lines through the re-exec.
const loadPrinters = 100

// printer prints "n 1", "n 2", …, five lines every 200 ms (one fork of
// sleep per five lines: a hundred of them do not saturate a small machine).
const printer = `[service]
exec = ["/bin/sh", "-c", "i=0; while :; do for k in 1 2 3 4 5; do i=$((i+1)); echo \"n $i\"; done; sleep 0.2; done"]
`

// ipcWorker says ready, heartbeats every 200 ms from a background loop
// (watchdog 2 s: missed heartbeats kill it), and answers every command.
const ipcWorker = `[service]
type = "ipc"
watchdog = "2s"
exec = ["/bin/sh", "-c", '''
printf '{"type":"ready"}\n' >&3
(while :; do printf '{"type":"heartbeat"}\n' >&3; sleep 0.2; done) &
while IFS= read -r l <&3; do
	case $l in
	*'"command"'*)
		id=$(printf '%%s' "$l" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
		printf '{"type":"reply","id":"%%s","ok":true,"data":{"pid":%%d}}\n' "$id" $$ >&3 ;;
	*shutdown*) kill $!; exit 0 ;;
	esac
done
''']
`

// orchUnit runs one chain of the fake Claude Code: a session of 6 turns, 1 s
// apart, so it is mid-session when the daemon re-execs.
const orchUnit = `[service]
restart = "no"
environment = { FAKE_CLAUDE_TURNS = "6", FAKE_CLAUDE_DELAY = "1" }

[orchestrator]
project_dir = "."
task = "run across a re-exec"
max_turns = 10
max_continuations = 1
`

type loadEvent struct {
	Seq  uint64         `json:"seq"`
	Type string         `json:"type"`
	Unit string         `json:"unit"`
	PID  int            `json:"pid"`
	Data map[string]any `json:"data"`
}

type unitsReply struct {
	Units []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		PID   int    `json:"pid"`
	} `json:"units"`
}

// TestReexecUnderLoad: opsvc daemon-reexec while 100 units print, IPC
// workers heartbeat, an orchestrator is mid-session and a subscriber follows
// the events. Every pid is kept, no output line is lost, the event seq has
// no gap, and the session finishes as it would have.
func TestReexecUnderLoad(t *testing.T) {
	if _, ok := findVerb("daemon-reexec"); !ok {
		t.Skip("this build has no daemon-reexec verb")
	}
	if testing.Short() {
		t.Skip("over 100 processes for about 20 s: not with -short")
	}
	if os.Getenv("OPSVC_UNDER_LOAD_TEST") != "" {
		// A worker of this test's daemon that ran the package's tests
		// (by a wrong executable) must not start it again.
		t.Skip("inside the load test's own daemon")
	}
	dir, err := os.MkdirTemp("", "orx")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(units, name+".toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range loadPrinters {
		write(fmt.Sprintf("p%03d", i), printer)
	}
	ipcs := []string{"ipc0", "ipc1", "ipc2", "ipc3", "ipc4"}
	for _, n := range ipcs {
		write(n, ipcWorker)
	}
	total := loadPrinters + len(ipcs) + 1

	// The fake Claude Code as claude, first in PATH.
	fake, err := filepath.Abs("../../worker/orchestrator/testdata/fake-claude")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.Symlink(fake, filepath.Join(bin, "claude")); err != nil {
		t.Fatal(err)
	}
	cmd := daemonCmd(t, dir, "PATH="+bin+":"+os.Getenv("PATH"), "GORACE=atexit_sleep_ms=0", "OPSVC_UNDER_LOAD_TEST=1")
	// The daemon runs an orchestrator's worker as its own executable, by
	// path: that must be this binary named opsvc (the copy TestMain puts in
	// PATH), or the worker would run this package's tests instead.
	if cmd.Path, err = exec.LookPath("opsvc"); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon output:\n%s", b)
			b, _ = os.ReadFile(filepath.Join(dir, "state", "logs", "orch.log"))
			t.Logf("orch output:\n%s", b)
		}
	}()

	sock := filepath.Join(dir, "s.sock")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	getJSON := func(path string, v any) error {
		resp, err := client.Get("http://opsvc" + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %s: %s", path, resp.Status, b)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	// unitEvents lists the stored events of a unit.
	unitEvents := func(name string) string {
		resp, err := client.Get("http://opsvc/v1/events?follow=0&unit=" + name)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return string(b)
	}
	// pids waits (bounded) until every unit is active (orch too, with
	// withOrch) and returns their pids.
	pids := func(withOrch bool) map[string]int {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var st unitsReply
			err := getJSON("/v1/units", &st)
			out := make(map[string]int)
			for _, u := range st.Units {
				if u.State == "active" && u.PID > 0 && (withOrch || u.Name != "orch") {
					out[u.Name] = u.PID
				}
			}
			want := total
			if !withOrch {
				want--
			}
			if err == nil && len(out) == want {
				return out
			}
			if time.Now().After(deadline) {
				var names []string
				for _, u := range st.Units {
					if out[u.Name] == 0 {
						names = append(names, u.Name+" "+u.State)
					}
				}
				for _, u := range st.Units {
					if out[u.Name] == 0 {
						t.Logf("%s: events:\n%s\nlog:\n%s", u.Name, unitEvents(u.Name), tail(readFile(filepath.Join(dir, "state", "logs", u.Name+".log")), 2000))
					}
				}
				t.Fatalf("%d of %d units active after 60 s (%v); not: %v", len(out), total, err, names)
			}
			time.Sleep(50 * time.Millisecond) // polling the daemon's state, bounded
		}
	}

	// The subscriber: follows the events, and on a disconnect follows again
	// from the last seq it saw, as a client does.
	var (
		evMu     sync.Mutex
		events   []loadEvent
		reconns  int
		subCtx   context.Context
		stopSub  context.CancelFunc
		subDone  = make(chan struct{})
		newEvent = make(chan struct{}, 1)
	)
	subCtx, stopSub = context.WithCancel(context.Background())
	defer stopSub()
	go func() {
		defer close(subDone)
		var last uint64
		for subCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(subCtx, "GET", "http://opsvc/v1/events?follow=1&since="+strconv.FormatUint(last, 10), nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				time.Sleep(5 * time.Millisecond) // the daemon is switching; ask again, bounded by the test
				continue
			}
			dec := json.NewDecoder(bufio.NewReader(resp.Body))
			for {
				var e loadEvent
				if err := dec.Decode(&e); err != nil {
					break
				}
				last = e.Seq
				evMu.Lock()
				events = append(events, e)
				evMu.Unlock()
				select {
				case newEvent <- struct{}{}:
				default:
				}
			}
			resp.Body.Close()
			evMu.Lock()
			reconns++
			evMu.Unlock()
		}
	}()
	// waitEvent waits (bounded) for an event that matches.
	waitEvent := func(what string, match func(loadEvent) bool) loadEvent {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			evMu.Lock()
			for _, e := range events {
				if match(e) {
					evMu.Unlock()
					return e
				}
			}
			evMu.Unlock()
			select {
			case <-newEvent:
			case <-deadline:
				evMu.Lock()
				n, rc := len(events), reconns
				var last uint64
				if n > 0 {
					last = events[n-1].Seq
				}
				evMu.Unlock()
				var stored []string
				if resp, err := client.Get("http://opsvc/v1/events?follow=0"); err == nil {
					dec := json.NewDecoder(resp.Body)
					for {
						var e loadEvent
						if dec.Decode(&e) != nil {
							break
						}
						if e.Unit == "orch" || e.Unit == "" {
							stored = append(stored, fmt.Sprintf("%d %s %s %v", e.Seq, e.Type, e.Unit, e.Data))
						}
					}
					resp.Body.Close()
				} else {
					stored = append(stored, err.Error())
				}
				t.Fatalf("no %s within 60 s; the subscriber saw %d events up to seq %d, reconnected %d times; stored events of orch and the daemon:\n%s",
					what, n, last, rc, strings.Join(stored, "\n"))
			}
		}
	}

	// caughtUp returns the daemon's last event seq once the subscriber has
	// seen it.
	caughtUp := func() uint64 {
		t.Helper()
		resp, err := client.Get("http://opsvc/v1/events?follow=0")
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		dec := json.NewDecoder(resp.Body)
		for {
			var e loadEvent
			if dec.Decode(&e) != nil {
				break
			}
			last = max(last, e.Seq)
		}
		resp.Body.Close()
		waitEvent(fmt.Sprintf("event %d at the subscriber", last), func(e loadEvent) bool { return e.Seq >= last })
		return last
	}
	before := pids(false)
	// The orchestrator comes last, once the rest runs: its session lasts
	// 6 s from its start, and the re-exec comes right after that start.
	write("orch", orchUnit)
	if resp, err := client.Post("http://opsvc/v1/reload", "application/json", nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	started := waitEvent("session.started of orch", func(e loadEvent) bool { return e.Type == "session.started" && e.Unit == "orch" })
	chainID, _ := started.Data["chain_id"].(string)
	before["orch"] = started.PID
	before0 := caughtUp()

	// The switch.
	exe, _ := os.Executable()
	rx := exec.Command(exe, "--socket", sock, "daemon-reexec")
	rx.Args[0] = "opsvc"
	rx.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := rx.CombinedOutput()
	if err != nil {
		t.Fatalf("opsvc daemon-reexec: %v\n%s", err, out)
	}
	select {
	case err := <-exited:
		t.Fatalf("the daemon exited during the re-exec: %v", err)
	default:
	}
	after := pids(true)
	for name, pid := range before {
		if after[name] != pid {
			t.Errorf("%s: pid %d before the re-exec, %d after", name, pid, after[name])
		}
	}

	// An IPC worker's command is answered by the new image.
	send := exec.Command(exe, "--socket", sock, "send", "ipc0", "ping")
	send.Args[0] = "opsvc"
	send.Env = rx.Env
	if out, err := send.CombinedOutput(); err != nil || !strings.Contains(string(out), strconv.Itoa(before["ipc0"])) {
		t.Errorf("opsvc send ipc0 after the re-exec: %v\n%s", err, out)
	}

	// The session ends as it would have, and is recorded so.
	fin := waitEvent("session.finished of orch", func(e loadEvent) bool { return e.Type == "session.finished" && e.Unit == "orch" })
	if st, _ := fin.Data["status"].(string); st == "interrupted" || fin.Data["error"] != "" && fin.Data["error"] != nil {
		t.Errorf("the session did not finish cleanly across the re-exec: %v", fin.Data)
	}
	var chain struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Sessions []struct {
			Status string `json:"status"`
			Turns  int    `json:"turns"`
		} `json:"sessions"`
	}
	if err := getJSON("/v1/chains/"+chainID, &chain); err != nil {
		t.Fatal(err)
	}
	if chain.Status == "interrupted" || len(chain.Sessions) == 0 || chain.Sessions[0].Status == "interrupted" || chain.Sessions[0].Turns != 6 {
		t.Errorf("chain record after the re-exec: %+v", chain)
	}

	// Output keeps flowing: every printer prints 60 more lines (2.4 s, past
	// the IPC workers' watchdog) after the switch.
	marks := make(map[string]int)
	for i := range loadPrinters {
		name := fmt.Sprintf("p%03d", i)
		marks[name] = lastNumber(t, filepath.Join(dir, "state", "logs", name+".log"))
	}
	deadline := time.Now().Add(60 * time.Second)
	for name, m := range marks {
		for lastNumber(t, filepath.Join(dir, "state", "logs", name+".log")) < m+60 {
			if time.Now().After(deadline) {
				t.Fatalf("%s printed nothing new after the re-exec", name)
			}
			time.Sleep(50 * time.Millisecond) // the workers print every 200 ms; bounded
		}
	}
	final := pids(false)
	for name, pid := range before {
		if name != "orch" && final[name] != pid {
			t.Errorf("%s: pid %d before the re-exec, %d 2 s after (a watchdog or a crash?)", name, pid, final[name])
		}
	}

	stopSeq := caughtUp()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	exited <- nil
	stopSub()
	<-subDone

	// No line lost: each printer's numbers run 1, 2, 3… without a gap.
	for i := range loadPrinters {
		name := fmt.Sprintf("p%03d", i)
		checkNumbered(t, filepath.Join(dir, "state", "logs", name+".log"))
	}
	// No event lost: the subscriber saw seqs without a gap, and no event
	// of the workers' ends came in between.
	evMu.Lock()
	defer evMu.Unlock()
	if reconns == 0 {
		t.Log("the subscriber was not disconnected by the re-exec")
	}
	for i := 1; i < len(events); i++ {
		if events[i].Seq != events[i-1].Seq+1 {
			t.Errorf("event seq %d follows %d", events[i].Seq, events[i-1].Seq)
		}
	}
	for _, e := range events {
		switch e.Type {
		case "unit.watchdog", "unit.failed", "daemon.leftovers":
			t.Errorf("event %d %s %s during the run", e.Seq, e.Type, e.Unit)
		case "unit.exited", "unit.restarting", "unit.starting":
			if e.Unit != "orch" && e.Seq > before0 && e.Seq <= stopSeq {
				t.Errorf("event %d %s %s before the stop: a worker did not run through", e.Seq, e.Type, e.Unit)
			}
		}
	}
}

// numbered reads the "n N" lines of a unit's log file.
func numbered(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []int
	for _, l := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(l, " stdout n ")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func lastNumber(t *testing.T, path string) int {
	ns := numbered(t, path)
	if len(ns) == 0 {
		return 0
	}
	return ns[len(ns)-1]
}

func checkNumbered(t *testing.T, path string) {
	t.Helper()
	ns := numbered(t, path)
	if len(ns) == 0 {
		t.Errorf("%s: no numbered line", path)
		return
	}
	for i, n := range ns {
		if n != i+1 {
			t.Errorf("%s: line %d is number %d: lines were lost or repeated", filepath.Base(path), i+1, n)
			return
		}
	}
}

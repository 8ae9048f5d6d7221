package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	opsvc := func() {
		ctx, stop := signalContext()
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(report(err, os.Stderr))
	}
	testscript.Main(goleakM{m}, map[string]func(){
		"opsvc": opsvc,
		// The orchestrator's session guard re-executes the binary under this name.
		"opsvc-session-guard": opsvc,
	})
}

// goleakM checks for leaked goroutines after the tests of this package.
type goleakM struct{ m *testing.M }

func (g goleakM) Run() int {
	code := g.m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script"))
}

// TestTerminal runs opsvc in a real terminal (tmux): colour, the progress
// line of a slow stop, and a worker's control characters shown escaped.
func TestTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux)")
	}
	testscript.Run(t, scriptParams("testdata/terminal"))
}

func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Setup: func(env *testscript.Env) error {
			// Unix socket paths are limited to 108 bytes: keep them short.
			dir, err := os.MkdirTemp("", "ots")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(dir) })
			env.Setenv("OPSVC_SOCKET", filepath.Join(dir, "opsvc.sock"))
			env.Setenv("RUNDIR", dir)
			// A race-built binary sleeps a second at exit unless told not to.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "xdg-config"))
			env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, "xdg-state"))
			env.Setenv("OPSVC_CONFIG", filepath.Join(env.WorkDir, "opsvc.toml"))
			env.Setenv("EXAMPLES", filepath.Join(mustAbs("../../contrib/examples")))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitdaemon": cmdWaitDaemon,
			"groupsgone": cmdGroupsGone,
			"jsonfield":  cmdJSONField,
			"waitevent":  cmdWaitEvent,
			"seqcheck":   cmdSeqCheck,
			"jsonset":    cmdJSONSet,
			"waitfile":   cmdWaitFile,
			"waittmux":   cmdWaitTmux,
		},
	}
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// waitdaemon waits until the daemon on $OPSVC_SOCKET answers GET /v1/units
// (up to 20 s): the socket appears before the first plan has run.
func cmdWaitDaemon(ts *testscript.TestScript, neg bool, args []string) {
	sock := ts.Getenv("OPSVC_SOCKET")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	delay := 5 * time.Millisecond
	for {
		resp, err := client.Get("http://opsvc/v1/units")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("daemon on %s did not answer within 20s: %v", sock, err)
		}
		time.Sleep(delay) // polling an external process's readiness, bounded above
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// groupsgone FILE: FILE holds `opsvc status --json` output; every process
// group of a unit listed there must be gone.
func cmdGroupsGone(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: groupsgone FILE")
	}
	var st struct {
		Units []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"units"`
	}
	if err := json.Unmarshal([]byte(ts.ReadFile(args[0])), &st); err != nil {
		ts.Fatalf("parse %s: %v", args[0], err)
	}
	n := 0
	for _, u := range st.Units {
		if u.PID <= 0 {
			continue
		}
		n++
		if err := groupGone(u.PID); err != nil {
			ts.Fatalf("process group %d of unit %s is still there (kill: %v)", u.PID, u.Name, err)
		}
	}
	if n == 0 {
		ts.Fatalf("no pids in %s", args[0])
	}
}

// jsonfield FILE PATH WANT: a field of a JSON file, by a dotted path with
// numeric indexes (units.0.state), equals WANT.
func cmdJSONField(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: jsonfield FILE PATH WANT")
	}
	got := jsonAt(ts, args[0], args[1])
	if (got == args[2]) == neg {
		ts.Fatalf("%s = %q, want %s%q", args[1], got, map[bool]string{true: "not ", false: ""}[neg], args[2])
	}
}

// jsonAt reads a field of a JSON file by a dotted path with numeric indexes.
func jsonAt(ts *testscript.TestScript, file, path string) string {
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile(file)), &v); err != nil {
		ts.Fatalf("parse %s: %v", file, err)
	}
	cur := v
	for _, k := range splitPath(path) {
		switch x := cur.(type) {
		case map[string]any:
			cur = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				ts.Fatalf("%s: no index %s", path, k)
			}
			cur = x[i]
		default:
			ts.Fatalf("%s: cannot descend into %v", path, cur)
		}
	}
	if s, ok := cur.(string); ok {
		return s
	}
	return fmt.Sprint(cur)
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// waitevent TYPE UNIT [KEY=VALUE...] [#N]: wait (20 s at most) for the N-th
// (first by default) event of TYPE for UNIT ("-" for any) whose data has the
// given values, reading the daemon's event stream from the start.
func cmdWaitEvent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: waitevent TYPE UNIT [KEY=VALUE...]")
	}
	sock := ts.Getenv("OPSVC_SOCKET")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?since=0&type="+args[0], nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		ts.Fatalf("events: %v", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	nth, conds := 1, args[2:]
	if len(conds) > 0 && strings.HasPrefix(conds[len(conds)-1], "#") {
		nth, _ = strconv.Atoi(conds[len(conds)-1][1:])
		conds = conds[:len(conds)-1]
	}
	for {
		var e struct {
			Seq  uint64         `json:"seq"`
			Type string         `json:"type"`
			Unit string         `json:"unit"`
			Data map[string]any `json:"data"`
		}
		if err := dec.Decode(&e); err != nil {
			ts.Fatalf("no %s event for %s within 20s (%v)", args[0], args[1], err)
		}
		if args[1] != "-" && e.Unit != args[1] {
			continue
		}
		match := true
		for _, kv := range conds {
			k, v, _ := strings.Cut(kv, "=")
			if fmt.Sprint(e.Data[k]) != v {
				match = false
			}
		}
		if match {
			if nth--; nth > 0 {
				continue
			}
			ts.Logf("event %d %s %s", e.Seq, e.Type, e.Unit)
			return
		}
	}
}

// seqcheck FILE [FIRST]: FILE is NDJSON events whose seqs run FIRST (1 by
// default), FIRST+1, … without a gap.
func cmdSeqCheck(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: seqcheck FILE [FIRST]")
	}
	want := uint64(1)
	if len(args) == 2 {
		n, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			ts.Fatalf("bad FIRST %q", args[1])
		}
		want = n
	}
	for _, line := range strings.Split(strings.TrimSpace(ts.ReadFile(args[0])), "\n") {
		var e struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			ts.Fatalf("bad line %q: %v", line, err)
		}
		if e.Seq != want {
			ts.Fatalf("seq %d where %d was due", e.Seq, want)
		}
		want++
	}
	ts.Logf("events up to seq %d", want-1)
}

// jsonset FILE PATH VAR: set $VAR to a field of a JSON file.
func cmdJSONSet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: jsonset FILE PATH VAR")
	}
	ts.Setenv(args[2], jsonAt(ts, args[0], args[1]))
}

// waitfile FILE REGEXP: wait (up to 20 s) until FILE has a line matching
// REGEXP; a background command's output is only seen this way while it runs.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitfile FILE REGEXP")
	}
	re := regexp.MustCompile("(?m)" + args[1])
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(ts.MkAbs(args[0]))
		if re.Match(data) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no line matching %q in %s within 20s; it holds:\n%s", args[1], args[0], data)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another process writes, bounded above
	}
}

// waittmux PANE REGEXP: wait (up to 20 s) until the tmux pane (on the server
// at $RUNDIR/tmux.sock) shows text matching REGEXP; the capture keeps colour
// as escape sequences. The last capture is written to PANE.screen.
func cmdWaitTmux(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waittmux PANE REGEXP")
	}
	re := regexp.MustCompile("(?m)" + args[1])
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("tmux", "-S", filepath.Join(ts.Getenv("RUNDIR"), "tmux.sock"), "capture-pane", "-p", "-e", "-t", args[0]).Output()
		if err == nil {
			os.WriteFile(ts.MkAbs(args[0]+".screen"), out, 0o644)
		}
		if err == nil && re.Match(out) != neg {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("pane %s: no match for %q within 20s (%v); it shows:\n%q", args[0], args[1], err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling a terminal another process draws, bounded above
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/registry"
)

// fleetAgent is a stand-in agent that logs when each session starts and ends.
const fleetAgent = `#!/bin/sh
cat >/dev/null
echo "S $(date +%s%N) $OPSVC_CHAIN_ID $OPSVC_SESSION_INDEX" >> "$FLEET_LOG"
sleep 0.2
done=false
[ "$OPSVC_SESSION_INDEX" -ge 1 ] && done=true
echo "handoff $OPSVC_SESSION_INDEX" > "$OPSVC_HANDOFF_OUT"
printf '{"session_id":"s%s","turns":1,"cost_usd":0.01,"done":%s}\n' "$OPSVC_SESSION_INDEX" "$done" > "$OPSVC_RESULT"
echo "E $(date +%s%N) $OPSVC_CHAIN_ID $OPSVC_SESSION_INDEX" >> "$FLEET_LOG"
`

type fleetHost struct {
	name, dir, sock string
	cmd             *exec.Cmd
	stderr          *syncBuffer
}

// startFleetHost runs `opsvc daemon` as host name of the fleet on endpoints, with three
// orchestrator units, agent@a, agent@b and agent@c.
func startFleetHost(t *testing.T, name string, endpoints []string, logPath, agent string) *fleetHost {
	t.Helper()
	dir, err := os.MkdirTemp("", "of")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	q := make([]string, len(endpoints))
	for i, e := range endpoints {
		q[i] = strconv.Quote(e)
	}
	toml := fmt.Sprintf("[orchestrator]\nmax_concurrent_sessions = 2\nmax_sessions_per_minute = 0\n\n[cluster]\netcd = [%s]\nnode = %q\nprefix = \"/fleet\"\nlease_ttl = \"2s\"\n",
		strings.Join(q, ", "), name)
	os.WriteFile(filepath.Join(dir, "opsvc.toml"), []byte(toml), 0o644)
	tmpl := fmt.Sprintf("[unit]\ndescription = \"agent %%i\"\n\n[service]\nrestart = \"no\"\nenvironment = { FLEET_LOG = %q }\n\n[orchestrator]\nproject_dir = %q\ntask = \"t\"\nagent = [%q]\nmax_continuations = 1\n",
		logPath, dir, agent)
	os.WriteFile(filepath.Join(units, "agent@.toml"), []byte(tmpl), 0o644)
	for _, i := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(units, "agent@"+i+".toml"), nil, 0o644)
	}
	h := &fleetHost{name: name, dir: dir, sock: filepath.Join(dir, "s.sock"), stderr: &syncBuffer{}}
	h.cmd = daemonCmd(t, dir, "GORACE=atexit_sleep_ms=0")
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, tail(h.stderr.String(), 3000))
		}
		h.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			h.cmd.Process.Kill()
			<-done
		}
	})
	return h
}

// opsvcBin is the copy of this test binary that TestMain puts first in PATH as "opsvc". A daemon
// run from it re-executes itself for its orchestrator units as `opsvc worker orchestrator`, which
// TestMain answers by that name; run from the test binary's own path, the worker would run this
// package's tests instead.
func opsvcBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("opsvc")
	if err != nil || filepath.Base(p) != "opsvc" {
		t.Fatalf("no opsvc in PATH (TestMain puts this binary there): %v", err)
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// opsvc runs the CLI against host h and returns its output.
func (h *fleetHost) opsvc(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"--socket", h.sock}, args...), &out, &errb); err != nil {
		t.Fatalf("%s: opsvc %s: %v\n%s", h.name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

func pollUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s (%s)", within, what, time.Now().Format(time.TimeOnly))
		}
		time.Sleep(500 * time.Millisecond) // external processes: poll with a deadline
	}
}

// TestFleetDaemons: 4 daemons × 3 orchestrators on a 3-member etcd with
// max_concurrent_sessions = 2 never run more than 2 sessions at once, while
// one etcd member is killed; every chain is recorded whole, and every host
// sees every chain with its host; when etcd loses its quorum the daemons say
// so and start no session until it is back.
func TestFleetDaemons(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	work := t.TempDir()
	logPath := filepath.Join(work, "sessions.log")
	agent := filepath.Join(work, "agent.sh")
	if err := os.WriteFile(agent, []byte(fleetAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	var hosts []*fleetHost
	for i := range 4 {
		hosts = append(hosts, startFleetHost(t, fmt.Sprint("host-", i), ec.Endpoints(), logPath, agent))
	}
	const want = 4 * 3 * 2 // hosts × units × sessions
	ended := func() int {
		data, _ := os.ReadFile(logPath)
		return bytes.Count(data, []byte("\nE ")) + map[bool]int{true: 1}[bytes.HasPrefix(data, []byte("E "))]
	}
	// Killing one etcd member of three, while the sessions run, changes
	// nothing: below, every session still runs, never more than 2 at once,
	// and every chain is recorded whole.
	pollUntil(t, 3*time.Minute, "a quarter of the sessions ended", func() bool { return ended() >= want/4 })
	ec.Stop(2, true)
	t.Logf("etcd member 2 killed after %d sessions", ended())
	last := -1
	pollUntil(t, 5*time.Minute, "every session ended", func() bool {
		n := ended()
		if n != last {
			t.Logf("%d of %d sessions ended", n, want)
			last = n
		}
		return n >= want
	})
	ec.Restart(2)

	// Session overlap, from the agents' own log.
	type mark struct {
		at    int64
		delta int
	}
	var marks []mark
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		ns, _ := strconv.ParseInt(fields[1], 10, 64)
		marks = append(marks, mark{ns, map[string]int{"S": 1, "E": -1}[fields[0]]})
	}
	f.Close()
	slices.SortFunc(marks, func(a, b mark) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	most, cur := 0, 0
	for _, m := range marks {
		cur += m.delta
		most = max(most, cur)
	}
	if most > 2 {
		t.Fatalf("%d sessions ran at once across the fleet; max_concurrent_sessions = 2", most)
	}
	t.Logf("%d sessions, at most %d at once", len(marks)/2, most)

	// Every host lists every chain, with the host that ran it.
	var list registry.ChainList
	pollUntil(t, time.Minute, "12 chains complete", func() bool {
		list = registry.ChainList{}
		json.Unmarshal(hosts[3].opsvc(t, "chains", "ls", "--json"), &list)
		n := 0
		for _, c := range list.Chains {
			if c.Status == registry.ChainComplete {
				n++
			}
		}
		return n == 12
	})
	byHost := map[string]int{}
	for _, c := range list.Chains {
		byHost[c.Host]++
		if c.Sessions != 2 {
			t.Errorf("chain %s of %s: %d sessions, want 2", c.ID, c.Host, c.Sessions)
		}
	}
	if len(byHost) != 4 || byHost["host-0"] != 3 {
		t.Fatalf("chains by host %v, want 3 on each of 4", byHost)
	}
	if out := string(hosts[0].opsvc(t, "chains", "ls")); !strings.Contains(out, " HOST ") || !strings.Contains(out, "host-3") {
		t.Errorf("chains ls on host-0:\n%s", out)
	}

	// etcd loses its quorum: the daemon says so, and starts no session.
	ec.Stop(1, false)
	ec.Stop(2, false)
	h := hosts[0]
	pollUntil(t, 30*time.Second, "status says etcd does not answer", func() bool {
		var ul api.UnitList
		json.Unmarshal(h.opsvc(t, "status", "--json"), &ul)
		return strings.Contains(ul.Degraded, "cluster: etcd is unreachable")
	})
	before := ended()
	stopped := time.Now().UnixNano()
	// Without quorum the worker cannot record its chain, so it does not
	// become active yet: ask, without waiting.
	h.opsvc(t, "start", "agent@a", "--no-wait")
	pollUntil(t, 30*time.Second, "the event cluster.unreachable", func() bool {
		return strings.Contains(string(h.opsvc(t, "events", "--since", "0")), "cluster.unreachable")
	})
	restarted := time.Now().UnixNano()
	ec.Restart(1)
	pollUntil(t, time.Minute, "a session after etcd is back", func() bool { return ended() >= before+2 })
	data, _ := os.ReadFile(logPath)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "S" {
			if ns, _ := strconv.ParseInt(f[1], 10, 64); ns > stopped && ns < restarted {
				t.Errorf("a session started while etcd had no quorum: %s", line)
			}
		}
	}
	pollUntil(t, 30*time.Second, "status no longer degraded", func() bool {
		var ul api.UnitList
		json.Unmarshal(h.opsvc(t, "status", "--json"), &ul)
		return !strings.Contains(ul.Degraded, "cluster")
	})

	// A global budget across hosts is overrun by at most one session: with
	// room for 3 more sessions ($0.01 each), the 12 units all start again.
	pollUntil(t, time.Minute, "every chain has ended", func() bool {
		list = registry.ChainList{}
		json.Unmarshal(hosts[0].opsvc(t, "chains", "ls", "--json"), &list)
		for _, c := range list.Chains {
			if c.Status == registry.ChainRunning {
				return false
			}
		}
		return true
	})
	spent := func() float64 {
		var l registry.ChainList
		json.Unmarshal(hosts[0].opsvc(t, "chains", "ls", "--json"), &l)
		total := 0.0
		for _, c := range l.Chains {
			total += c.TotalCostUSD
		}
		return total
	}
	const session = 0.01
	before0 := spent()
	budget := fmt.Sprintf(`{"orchestrator":{"global_budget_usd":%.4f}}`, before0+3*session)
	for _, h := range hosts {
		h.put(t, "/v1/settings", budget)
	}
	for _, h := range hosts {
		h.opsvc(t, "start", "agent@a", "agent@b", "agent@c", "--no-wait")
	}
	pollUntil(t, 2*time.Minute, "every unit has ended its chain or waits for the budget", func() bool {
		for _, h := range hosts {
			var ul api.UnitList
			json.Unmarshal(h.opsvc(t, "status", "--json"), &ul)
			for _, u := range ul.Units {
				if u.State != api.StateInactive && !strings.Contains(u.StatusText, "global_budget_usd") {
					return false
				}
			}
		}
		return true
	})
	over := spent() - before0
	t.Logf("with $%.2f left, the fleet spent $%.2f", 3*session, over)
	if over > 4*session+1e-9 || over < 3*session-1e-9 {
		t.Errorf("with $%.2f of global budget left, the fleet spent $%.2f; want at least that and at most one session ($%.2f) more", 3*session, over, session)
	}
}

// put sends body to the daemon's API at path, and wants 200.
func (h *fleetHost) put(t *testing.T, path, body string) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.sock)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPut, "http://opsvc"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s: PUT %s: %v", h.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: PUT %s: %s: %s", h.name, path, resp.Status, b)
	}
}

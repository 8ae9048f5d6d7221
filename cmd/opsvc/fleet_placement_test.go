//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/cluster/fleetevents"
	"github.com/opsvc/opsvc/cluster/placement/proxytest"
	"github.com/opsvc/opsvc/supervisor"
)

// fleetTTL is the lease TTL of the daemons of these tests.
const fleetTTL = 3 * time.Second

// placementTTL is the lease TTL of TestFleetPlacementAcrossDaemons: with one
// etcd member killed, a host's lease keep-alive fails over to another
// member, and must do so within three quarters of the TTL or the host fences
// itself; on a loaded machine that can take longer than 2.25 s.
const placementTTL = 5 * time.Second

// fleetDaemon is one `opsvc daemon` of a fleet: a host of its own, with its
// state directory, socket and node name.
type fleetDaemon struct {
	t      testing.TB
	name   string
	dir    string
	sock   string
	cmd    *exec.Cmd
	done   chan struct{}
	client *http.Client
}

const fleetWeb = `[unit]
placement = "fleet"
[service]
exec = ["/bin/sleep", "1000"]
stop_timeout = "1s"
`

func startFleetDaemon(t testing.TB, name string, endpoints []string, ttl time.Duration) *fleetDaemon {
	t.Helper()
	return startFleetDaemonWith(t, name, endpoints, ttl, map[string]string{"web": fleetWeb}, "web")
}

// startFleetDaemonWith starts a daemon of the fleet with units (name to
// file), and waits until it answers for unit first; env is added to its
// environment.
func startFleetDaemonWith(t testing.TB, name string, endpoints []string, ttl time.Duration, units map[string]string, first string, env ...string) *fleetDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "ofl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.MkdirAll(filepath.Join(dir, "units"), 0o755)
	for u, body := range units {
		os.WriteFile(filepath.Join(dir, "units", u+".toml"), []byte(body), 0o644)
	}
	q := make([]string, len(endpoints))
	for i, e := range endpoints {
		q[i] = fmt.Sprintf("%q", e)
	}
	cfg := fmt.Sprintf("[cluster]\netcd = [%s]\nprefix = \"/fleettest\"\nnode = %q\nlease_ttl = %q\n", strings.Join(q, ", "), name, ttl.String())
	os.WriteFile(filepath.Join(dir, "opsvc.toml"), []byte(cfg), 0o644)
	d := &fleetDaemon{t: t, name: name, dir: dir, sock: filepath.Join(dir, "s.sock"), done: make(chan struct{})}
	d.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.sock)
	}}}
	d.cmd = exec.Command(opsvcBin(t), "daemon", "--units", filepath.Join(dir, "units"), "--state", filepath.Join(dir, "state"),
		"--socket", d.sock, "--config", filepath.Join(dir, "opsvc.toml"))
	d.cmd.Args[0] = "opsvc"
	d.cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	t.Cleanup(d.stop)
	d.waitFor(15*time.Second, "the daemon answers", func() bool {
		_, err := d.status(first)
		return err == nil
	})
	return d
}

func (d *fleetDaemon) stop() {
	d.client.CloseIdleConnections()
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("%s: the daemon did not stop within 20s of SIGTERM:\n%s", d.name, d.log())
	}
}

func (d *fleetDaemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "daemon.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

func (d *fleetDaemon) status(unit string) (supervisor.UnitStatus, error) {
	var us supervisor.UnitStatus
	resp, err := d.client.Get("http://opsvc/v1/units/" + unit)
	if err != nil {
		return us, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return us, fmt.Errorf("status %d", resp.StatusCode)
	}
	return us, json.NewDecoder(resp.Body).Decode(&us)
}

// opsvc runs the CLI against this daemon and returns its output and exit code.
func (d *fleetDaemon) opsvc(args ...string) (string, int) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, append(args, "--socket", d.sock)...)
	cmd.Args[0] = "opsvc"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return out.String(), code
}

// waitFor polls cond, which reads outside state (daemons, processes), until
// it holds.
func (d *fleetDaemon) waitFor(within time.Duration, what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: not within %v: %s\n%s", d.name, within, what, d.log())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// holder waits until exactly one daemon runs web and the others show it as
// standby on that host; it returns that daemon and web's pid.
func holder(t testing.TB, ds []*fleetDaemon, within time.Duration) (*fleetDaemon, int) {
	t.Helper()
	var got *fleetDaemon
	var pid int
	var last []string
	ds[0].waitFor(within, "exactly one host runs web, and the others show it standby there", func() bool {
		got, pid, last = nil, 0, nil
		sts := make([]supervisor.UnitStatus, len(ds))
		for i, d := range ds {
			us, err := d.status("web")
			if err != nil {
				return false
			}
			sts[i] = us
			last = append(last, fmt.Sprintf("%s: %s (%s) host %q pid %d %q", d.name, us.State, us.Sub, us.Host, us.PID, us.StatusText))
			if us.State == supervisor.Active && us.PID > 0 {
				if got != nil {
					return false
				}
				got, pid = d, us.PID
			}
		}
		if got == nil {
			return false
		}
		for i, d := range ds {
			if d != got && (sts[i].Sub != "standby" || sts[i].Host != got.name || sts[i].StatusText != "running on "+got.name) {
				return false
			}
		}
		return true
	})
	t.Logf("web runs on %s (pid %d); %s", got.name, pid, strings.Join(last, "; "))
	return got, pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// fleetStream follows `opsvc events --fleet --json` of one daemon.
type fleetStream struct {
	mu     sync.Mutex
	events []fleetevents.Event
	cmd    *exec.Cmd
	done   chan struct{}
}

func followFleet(t *testing.T, d *fleetDaemon) *fleetStream {
	exe, _ := os.Executable()
	// -n: the latest summaries first, so that what happens while the
	// follower is still connecting is not missed.
	cmd := exec.Command(exe, "events", "--fleet", "--json", "-n", "100", "--socket", d.sock)
	cmd.Args[0] = "opsvc"
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &fleetStream{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e fleetevents.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				s.mu.Lock()
				s.events = append(s.events, e)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
		cmd.Wait()
	})
	return s
}

func (s *fleetStream) has(node, typ, unit string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.Node == node && e.Type == typ && e.Unit == unit {
			return true
		}
	}
	return false
}

func TestFleetPlacementAcrossDaemons(t *testing.T) {
	c := etcdtest.Start(t, 3)
	// h1 reaches etcd through proxies the test can cut.
	var proxies []*proxytest.Proxy
	var via []string
	for _, m := range c.Members {
		p := proxytest.Start(t, strings.TrimPrefix(m.ClientURL, "http://"))
		proxies = append(proxies, p)
		via = append(via, p.URL())
	}
	h1 := startFleetDaemon(t, "h1", via, placementTTL)
	h2 := startFleetDaemon(t, "h2", c.Endpoints(), placementTTL)
	h3 := startFleetDaemon(t, "h3", c.Endpoints(), placementTTL)
	ds := []*fleetDaemon{h1, h2, h3}
	orphans := []int{}
	t.Cleanup(func() {
		for _, pid := range orphans {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// A fleet unit runs on exactly one host.
	from, _ := holder(t, ds, 20*time.Second)
	if out, code := h2.opsvc("status", "web"); !strings.Contains(out, "Host: "+from.name) {
		t.Errorf("opsvc status web on h2 (exit %d) does not say where web runs:\n%s", code, out)
	}

	// opsvc move hands it over; every host's events show it.
	stream := followFleet(t, h3)
	to := h2
	if from == h2 {
		to = h3
	}
	if out, code := h1.opsvc("move", "web", to.name); code != 0 {
		t.Fatalf("opsvc move web %s: exit %d\n%s", to.name, code, out)
	}
	if got, _ := holder(t, ds, 5*time.Second); got != to {
		t.Fatalf("after opsvc move web %s, web runs on %s", to.name, got.name)
	}
	h3.waitFor(10*time.Second, "events --fleet shows the stop on the old host and the start on the new", func() bool {
		return stream.has(from.name, "unit.stopped", "web") && stream.has(to.name, "unit.ready", "web")
	})
	if out, code := h1.opsvc("move", "web", "nowhere"); code == 0 || !strings.Contains(out, "nowhere") {
		t.Errorf("opsvc move web nowhere: exit %d, want a failure naming the host:\n%s", code, out)
	}

	// Killing one etcd member of three changes nothing.
	_, pid := holder(t, ds, time.Second)
	c.Stop(2, true)
	end := time.Now().Add(3 * placementTTL)
	for time.Now().Before(end) {
		us, err := to.status("web")
		if err != nil || us.PID != pid || us.State != supervisor.Active {
			t.Fatalf("with one etcd member killed, web on %s changed: %+v %v", to.name, us, err)
		}
		time.Sleep(100 * time.Millisecond) // watching for a change over a span
	}
	c.Restart(2)
	holder(t, ds, time.Second)

	// A host cut from etcd stops its fleet units within the lease TTL, and
	// another host takes over.
	if out, code := h2.opsvc("move", "web", "h1"); code != 0 {
		t.Fatalf("opsvc move web h1: exit %d\n%s", code, out)
	}
	_, pid = holder(t, ds, 5*time.Second)
	cut := time.Now()
	for _, p := range proxies {
		p.Cut()
	}
	h1.waitFor(placementTTL, "h1 stops web once cut from etcd", func() bool { return !alive(pid) })
	stopped := time.Since(cut)
	next, _ := holder(t, []*fleetDaemon{h2, h3}, 2*placementTTL)
	took := time.Since(cut)
	t.Logf("cut from etcd: h1 stopped web after %v; %s ran it after %v", stopped.Round(time.Millisecond), next.name, took.Round(time.Millisecond))
	if us, err := h1.status("web"); err != nil || us.PID != 0 || us.Sub != "standby" {
		t.Errorf("h1 cut from etcd: web %+v %v, want standby without a process", us, err)
	}
	for _, p := range proxies {
		p.Mend()
	}
	holder(t, ds, 15*time.Second)

	// kill -9 of the holder's daemon: another host runs web within the
	// lease TTL and the start.
	from, pid = holder(t, ds, time.Second)
	orphans = append(orphans, pid) // its worker outlives the daemon
	killed := time.Now()
	from.cmd.Process.Kill()
	<-from.done
	var rest []*fleetDaemon
	for _, d := range ds {
		if d != from {
			rest = append(rest, d)
		}
	}
	next, _ = holder(t, rest, placementTTL+5*time.Second)
	t.Logf("failover: %s killed (-9), web active on %s after %v", from.name, next.name, time.Since(killed).Round(time.Millisecond))
}

// BenchmarkFleetFailover: kill -9 of the daemon that runs a fleet unit, until
// the unit is active on another host (lease_ttl 3s).
func BenchmarkFleetFailover(b *testing.B) {
	c := etcdtest.Start(b, 3)
	var ds []*fleetDaemon
	for i := range 3 {
		ds = append(ds, startFleetDaemon(b, fmt.Sprintf("h%d", i), c.Endpoints(), fleetTTL))
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		from, pid := holder(b, ds, 20*time.Second)
		b.StartTimer()
		killed := time.Now()
		from.cmd.Process.Kill()
		<-from.done
		var rest []*fleetDaemon
		for _, d := range ds {
			if d != from {
				rest = append(rest, d)
			}
		}
		holder(b, rest, fleetTTL+10*time.Second)
		total += time.Since(killed)
		b.StopTimer()
		syscall.Kill(pid, syscall.SIGKILL) // the dead daemon's worker
		ds = append(rest, startFleetDaemon(b, fmt.Sprintf("h%d", 3+i), c.Endpoints(), fleetTTL))
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/failover")
}

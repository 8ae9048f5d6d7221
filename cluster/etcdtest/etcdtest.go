// Package etcdtest runs a real etcd cluster for tests: members started from
// the etcd binary on loopback ports, in a test's temporary directory.
package etcdtest

import (
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
)

// Binary returns the path of the etcd binary ($OPSVC_ETCD, else etcd on
// PATH), or "" when there is none.
func Binary() string {
	if p := os.Getenv("OPSVC_ETCD"); p != "" {
		return p
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return ""
	}
	return p
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	token   string
	initial string
	Members []*Member
}

// Member is one etcd of a Cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start starts a cluster of n members and waits until every member is
// healthy. It skips the test when no etcd binary is installed, and stops
// every member when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("etcd is not installed (apt-get install etcd-server, or set OPSVC_ETCD to an etcd binary)")
	}
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), token: fmt.Sprintf("opsvc-test-%d", time.Now().UnixNano())}
	ports := freePorts(t, 2*n)
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dir = filepath.Join(c.dir, m.Name)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	t.Cleanup(c.stopAll)
	for _, m := range c.Members {
		if err := c.start(m, "new"); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHealthy()
	return c
}

// Endpoints returns the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

func (c *Cluster) start(m *Member, state string) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(c.dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin,
		"--name", m.Name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("etcdtest: start %s: %v", m.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done, m.log = cmd, done, log
	m.mu.Unlock()
	return nil
}

// Stop stops member i (SIGKILL when kill, else SIGTERM) and waits until it exited.
func (c *Cluster) Stop(i int, kill bool) {
	c.t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the stopped member i again with its data and waits until it
// is healthy.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	if err := c.start(m, "existing"); err != nil {
		c.t.Fatal(err)
	}
	c.waitMember(m, 30*time.Second)
}

// Running reports whether member i runs.
func (c *Cluster) Running(i int) bool {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// PIDs returns the process ids of the running members.
func (c *Cluster) PIDs() []int {
	var out []int
	for _, m := range c.Members {
		m.mu.Lock()
		if m.cmd != nil {
			out = append(out, m.cmd.Process.Pid)
		}
		m.mu.Unlock()
	}
	return out
}

// WaitHealthy waits until every running member says it is healthy (which
// needs a leader), for at most 30s.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	for i, m := range c.Members {
		if c.Running(i) {
			c.waitMember(m, 30*time.Second)
		}
	}
}

func (c *Cluster) waitMember(m *Member, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			c.t.Fatalf("etcdtest: %s exited while starting:\n%s", m.Name, c.logTail(m))
		default:
		}
		resp, err := client.Get(m.ClientURL + "/health")
		if err == nil {
			var h struct {
				Health string `json:"health"`
			}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.Health == "true" {
				return
			}
			last = "health " + h.Health
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond) // polling an outside process with a deadline
	}
	c.t.Fatalf("etcdtest: %s not healthy within %s (%s):\n%s", m.Name, within, last, c.logTail(m))
}

func (c *Cluster) logTail(m *Member) string {
	data, _ := os.ReadFile(filepath.Join(c.dir, m.Name+".log"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(bytes.TrimSpace(data))
}

func (c *Cluster) stopAll() {
	for i := range c.Members {
		c.Stop(i, false)
	}
}

// Ctx returns a context for one call to the cluster in a test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out
}

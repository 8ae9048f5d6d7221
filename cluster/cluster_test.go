package cluster_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/goleak"

	"github.com/opsvc/opsvc/cluster"
	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func settings(endpoints []string) config.ClusterSettings {
	s := config.DefaultSettings().Cluster
	s.Etcd = endpoints
	s.Node = "n-%H"
	s.LeaseTTL = config.Duration(2 * time.Second)
	s.DialTimeout = config.Duration(2 * time.Second)
	return s
}

// TestEtcdAPI checks that this client works with the installed etcd: put,
// get, transactions, leases, watches and elections, and that one member of
// three can die without anything changing.
func TestEtcdAPI(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	ctx := etcdtest.Ctx(t)
	c, err := cluster.Dial(ctx, settings(ec.Endpoints()), cluster.Options{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Node() != "n-h1" || c.Key("a", "b") != "/opsvc/a/b" {
		t.Fatalf("Node %q, Key %q", c.Node(), c.Key("a", "b"))
	}
	cli := c.Etcd()
	w := cli.Watch(ctx, c.Key("w"))
	if _, err := cli.Put(ctx, c.Key("w"), "1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w:
		if len(ev.Events) != 1 || string(ev.Events[0].Kv.Value) != "1" {
			t.Fatalf("watch: %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.Key("t")), "=", 0)).
		Then(clientv3.OpPut(c.Key("t"), "x")).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("txn: %v %v", resp, err)
	}
	resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.Key("t")), "=", 0)).
		Then(clientv3.OpPut(c.Key("t"), "y")).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("second create succeeded: %v %v", resp, err)
	}

	// The host's session: a key under its lease goes when it is revoked.
	s, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, c.Key("leased"), "1", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	e := concurrency.NewElection(s, c.Key("election"))
	if err := e.Campaign(ctx, c.Node()); err != nil {
		t.Fatal(err)
	}
	leader, err := e.Leader(ctx)
	if err != nil || string(leader.Kvs[0].Value) != "n-h1" {
		t.Fatalf("leader %v %v", leader, err)
	}

	// One member of three dies: everything still works.
	ec.Stop(0, true)
	// A put in flight while the others elect a new leader may time out; it
	// succeeds when asked again, as the daemon's calls are.
	for i := range 20 {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := cli.Put(ctx, c.Key("after-kill"), strconv.Itoa(i))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("put %d with one member down: %v", i, err)
			}
		}
	}
	ec.Restart(0)
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, c.Key("leased"))
	if err != nil || len(got.Kvs) != 0 {
		t.Fatalf("leased key after revoke: %v %v", got, err)
	}
	// A new session replaces the revoked one.
	waitFor(t, "session ends after revoke", func() bool {
		select {
		case <-s.Done():
			return true
		default:
			return false
		}
	})
	s2, err := c.Session(ctx)
	if err != nil || s2.Lease() == s.Lease() {
		t.Fatalf("new session: %v (lease %x, old %x)", err, s2.Lease(), s.Lease())
	}
}

// TestDialUnreachable: no etcd answers within dial_timeout, and the error
// says where and what to do.
func TestDialUnreachable(t *testing.T) {
	s := settings([]string{"http://127.0.0.1:1"})
	s.DialTimeout = config.Duration(300 * time.Millisecond)
	_, err := cluster.Dial(context.Background(), s, cluster.Options{Host: "h"})
	if err == nil || !strings.HasPrefix(err.Error(), "opsvc: cannot reach etcd at http://127.0.0.1:1: ") || !strings.Contains(err.Error(), "(check [cluster] etcd") {
		t.Fatalf("err = %v", err)
	}
	s.Etcd = nil
	if _, err := cluster.Dial(context.Background(), s, cluster.Options{Host: "h"}); err == nil {
		t.Fatal("Dial without endpoints succeeds")
	}
}

// TestHealth: a cluster that loses its quorum is reported unreachable, and
// reachable again when it is back.
func TestHealth(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	var (
		mu     sync.Mutex
		events []bool
	)
	changed := make(chan struct{}, 10)
	c, err := cluster.Dial(etcdtest.Ctx(t), settings(ec.Endpoints()), cluster.Options{
		Host:       "h",
		CheckEvery: 100 * time.Millisecond,
		OnHealth: func(h cluster.Health) {
			mu.Lock()
			events = append(events, h.Reachable)
			mu.Unlock()
			changed <- struct{}{}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Reachable(); err != nil {
		t.Fatal(err)
	}
	ec.Stop(1, false)
	ec.Stop(2, false)
	wait(t, changed)
	if err := c.Reachable(); !errors.Is(err, cluster.ErrUnreachable) {
		t.Fatalf("Reachable with 1 of 3 members: %v", err)
	}
	ec.Restart(1)
	wait(t, changed)
	if err := c.Reachable(); err != nil {
		t.Fatalf("Reachable after quorum is back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] || !events[1] {
		t.Fatalf("health events %v, want [false true]", events)
	}
}

// TestNoEtcdLeft: after a cluster's test, none of its processes is left.
func TestNoEtcdLeft(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		ec := etcdtest.Start(t, 3)
		pids = ec.PIDs()
		if len(pids) != 3 {
			t.Fatalf("pids %v", pids)
		}
	})
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			out, _ := exec.Command("ps", "-o", "pid,stat,cmd", "-p", strconv.Itoa(pid)).CombinedOutput()
			t.Errorf("etcd %d still runs after its test:\n%s", pid, out)
		}
	}
}

func wait(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no health change within 30s")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

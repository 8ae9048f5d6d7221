package registry

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	rec "github.com/opsvc/opsvc/worker/chain"
)

// opener opens a registry of the backend under test: every call of one test
// sees the same registry, as a separate host would (node names the host).
type opener func(t *testing.T, opts Options, node string) Backend

// forEachBackend runs test against the file Store and against an EtcdStore
// on a real etcd (skipped, with a note, when etcd is not installed).
func forEachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		test(t, func(t *testing.T, opts Options, _ string) Backend {
			s, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("etcd", func(t *testing.T) {
		ec := etcdtest.Start(t, 1)
		test(t, etcdOpener(ec.Endpoints(), "/test"))
	})
}

// etcdOpener opens EtcdStores under prefix, each with a client of its own.
func etcdOpener(endpoints []string, prefix string) opener {
	return func(t *testing.T, opts Options, node string) Backend {
		t.Helper()
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		s, err := OpenEtcd(EtcdOptions{Client: cli, Prefix: prefix, Node: node, ArchiveCap: opts.ArchiveCap, NewID: opts.NewID,
			WriteFault: opts.WriteFault, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestBackendBasics: create, record, status, find incomplete, lineage and
// summaries read back the same from either backend, and fn's error stores nothing.
func TestBackendBasics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, Options{NewID: seqIDs()}, "h1")
		err := s.Update(func(r *Registry) error {
			a := r.CreateChain("u", "task", "/p", ChainConfig{Model: "opus"}, "", at(0))
			if err := r.RecordSession(a.ID, Session{Index: 0, Status: SessionError, Turns: 2, CostUSD: 0.5, EndedAt: at(1)}, at(1)); err != nil {
				return err
			}
			if err := r.SetStatus(a.ID, ChainInterrupted, at(2)); err != nil {
				return err
			}
			b := r.CreateChain("u", "task", "/p", ChainConfig{}, a.ID, at(3))
			r.CreateChain("u", "task", "/p", ChainConfig{}, b.ID, at(4))
			r.CreateChain("v", "other", "/q", ChainConfig{}, "", at(5))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		boom := fmt.Errorf("boom")
		if err := s.Update(func(r *Registry) error { r.CreateChain("x", "", "", ChainConfig{}, "", at(6)); return boom }); err != boom {
			t.Fatalf("Update returned %v, want fn's error", err)
		}
		r := view(t, s)
		if diff := cmp.Diff([]string{"c1", "c2", "c3", "c4"}, ids(r.Chains)); diff != "" {
			t.Fatalf("chains (-want +got):\n%s", diff)
		}
		if c := r.Find("c1"); c.TotalCostUSD != 0.5 || c.Status != ChainInterrupted || len(c.Sessions) != 1 {
			t.Errorf("c1 read back as %+v", c)
		}
		if diff := cmp.Diff([]string{"c3", "c4"}, ids(r.FindIncomplete(""))); diff != "" {
			t.Errorf("incomplete (-want +got):\n%s", diff)
		}
		lin, err := r.Lineage("c2")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"c1@0", "c2@1", "c3@2"}, ids(lin)); diff != "" {
			t.Errorf("lineage (-want +got):\n%s", diff)
		}
	})
}

// TestBackendArchive: finished chains beyond the cap move to the archive,
// oldest first, and running ones stay.
func TestBackendArchive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, Options{ArchiveCap: 2, NewID: seqIDs()}, "h1")
		if got, err := s.ReadArchive(); err != nil || len(got) != 0 {
			t.Fatalf("empty archive: %v, %v", got, err)
		}
		for i := range 6 {
			err := s.Update(func(r *Registry) error {
				c := r.CreateChain("u", fmt.Sprint("task ", i), "", ChainConfig{}, "", at(i))
				if i == 0 {
					return nil
				}
				return r.SetStatus(c.ID, ChainComplete, at(i))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff([]string{"c1", "c6"}, ids(view(t, s).Chains)); diff != "" {
			t.Errorf("kept (-want +got):\n%s", diff)
		}
		got, err := s.ReadArchive()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"c2", "c3", "c4", "c5"}, ids(got)); diff != "" {
			t.Errorf("archived (-want +got):\n%s", diff)
		}
		if got[0].Task != "task 1" || got[0].Status != ChainComplete {
			t.Errorf("archived chain lost its data: %+v", got[0])
		}
	})
}

// TestEtcdHosts: chains record their host; each host interrupts only its own
// orphans, and resumes no chain another host still runs, but does resume one
// that host left interrupted; every host sees every chain.
func TestEtcdHosts(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	open := etcdOpener(ec.Endpoints(), "/hosts")
	a, b := open(t, Options{}, "a"), open(t, Options{}, "b")
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		s  Backend
		id string
	}{{a, "c-a1"}, {a, "c-a2"}, {b, "c-b1"}} {
		if _, err := c.s.BeginChain("u", rec.Begin{ID: c.id, Task: "t"}, now); err != nil {
			t.Fatal(err)
		}
	}
	r := view(t, b)
	if r.Find("c-a1").Host != "a" || r.Find("c-b1").Host != "b" || r.Summary(r.Find("c-a2")).Host != "a" {
		t.Fatalf("hosts: %+v", r.Summaries())
	}
	// b's worker of u starts and resumes: a's chains still run there.
	got, err := b.BeginChain("u", rec.Begin{ID: "c-b2", Task: "t", Resume: true}, now)
	if err != nil || got.RestartedFrom != "c-b1" {
		t.Fatalf("b resumed %+v, %v; want its own c-b1", got, err)
	}
	ids, err := a.InterruptOrphans("", now.Add(time.Second), "gone", now)
	if err != nil || !slices.Equal(ids, []string{"c-a1", "c-a2"}) {
		t.Fatalf("a interrupted %v, %v; want its own c-a1, c-a2", ids, err)
	}
	if st := view(t, a).Find("c-b2").Status; st != ChainRunning {
		t.Fatalf("b's chain is %s after a's InterruptOrphans", st)
	}
	// Now that a left them interrupted, b may take the newest over.
	got, err = b.BeginChain("u", rec.Begin{ID: "c-b3", Task: "t", Resume: true}, now)
	if err != nil || got.RestartedFrom != "c-b2" {
		t.Fatalf("b resumed %+v, %v; want c-b2 (its own, running, newest)", got, err)
	}
	got, err = b.BeginChain("u", rec.Begin{ID: "c-b4", Task: "t", Resume: true}, now)
	if err != nil || got.RestartedFrom != "c-b3" {
		t.Fatalf("b resumed %+v, %v", got, err)
	}
}

// TestEtcdNoLostUpdates: 4 hosts, each with its own etcd client on a
// 3-member cluster, update one chain and their own at once; no update is lost.
func TestEtcdNoLostUpdates(t *testing.T) {
	ec := etcdtest.Start(t, 3)
	open := etcdOpener(ec.Endpoints(), "/race")
	const hosts, updates = 4, 60
	first := open(t, Options{}, "h0")
	if err := first.Update(func(r *Registry) error {
		r.Chains = append(r.Chains, rec.New(sharedID, "u", "", "", ChainConfig{}, "", time.Now()))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, hosts)
	for i := range hosts {
		s := open(t, Options{}, fmt.Sprint("h", i))
		wg.Go(func() {
			own := fmt.Sprintf("own-%d", i)
			for n := range updates {
				err := s.Update(func(r *Registry) error {
					if n == 0 {
						r.Chains = append(r.Chains, rec.New(own, "u", "", "", ChainConfig{}, "", time.Now()))
					}
					if err := bump(r, own, 0, time.Now()); err != nil {
						return err
					}
					return bump(r, sharedID, i, time.Now())
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := view(t, first)
	if got := r.Find(sharedID).TotalTurns; got != hosts*updates {
		t.Errorf("shared chain: %d turns, want %d: updates were lost", got, hosts*updates)
	}
	for i := range hosts {
		c := r.Find(fmt.Sprintf("own-%d", i))
		if c == nil || c.TotalTurns != updates || c.Host != fmt.Sprint("h", i) {
			t.Errorf("host %d's chain: %+v", i, c)
		}
	}
}

// TestEtcdUnreachable: with etcd gone, Update fails with a storage error
// (reported to WriteFault), and works again when etcd is back.
func TestEtcdUnreachable(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	var (
		mu     sync.Mutex
		faults []string
	)
	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := OpenEtcd(EtcdOptions{Client: cli, Prefix: "/down", Node: "h", Timeout: time.Second, WriteFault: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			faults = append(faults, err.Error())
		} else {
			faults = append(faults, "ok")
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ec.Stop(0, false)
	if _, err := s.BeginChain("u", rec.Begin{ID: "c", Task: "t"}, time.Now()); err == nil || !strings.Contains(err.Error(), "registry: read chains from etcd") {
		t.Fatalf("begin without etcd: %v", err)
	}
	ec.Restart(0)
	// The client reconnects on its own, after a back-off.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.BeginChain("u", rec.Begin{ID: "c", Task: "t"}, time.Now())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("begin after etcd is back: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(faults) < 2 || faults[len(faults)-1] != "ok" || !strings.Contains(faults[0], "etcd") {
		t.Fatalf("write faults %q", faults)
	}
}

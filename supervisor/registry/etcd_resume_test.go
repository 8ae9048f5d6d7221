package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/cluster/placement"
	rec "github.com/opsvc/opsvc/worker/chain"
)

// fleetHost is one host of a fleet in these tests: its registry, and its
// etcd session, under which it campaigns for fleet units.
type fleetHost struct {
	store *EtcdStore
	sess  *concurrency.Session
}

func newFleetHost(t *testing.T, endpoints []string, prefix, node string) *fleetHost {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := OpenEtcd(EtcdOptions{Client: cli, Prefix: prefix, Node: node, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return &fleetHost{store: s, sess: sess}
}

// hold makes h campaign for unit as the placement does, and returns once h
// holds it.
func (h *fleetHost) hold(t *testing.T, prefix, unit string) {
	t.Helper()
	e := concurrency.NewElection(h.sess, placement.Dir(prefix)+unit)
	if err := e.Campaign(etcdtest.Ctx(t), `{"node":"`+h.store.Node()+`","active":false}`); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdResumeAfterHostLost: a chain of a fleet unit that its host still
// runs is its; once that host has lost the unit (its lease is gone), the
// unit's new holder resumes the chain, exactly once across the fleet, with
// restarted_from and the handoff; the old chain is interrupted and takes no
// more changes from what is left of the old host.
func TestEtcdResumeAfterHostLost(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	const prefix, unit = "/resume", "orch"
	a := newFleetHost(t, ec.Endpoints(), prefix, "h1")
	b := newFleetHost(t, ec.Endpoints(), prefix, "h2")
	c := newFleetHost(t, ec.Endpoints(), prefix, "h3")

	handoff := filepath.Join(t.TempDir(), "handoff-0")
	if err := os.WriteFile(handoff, []byte("next: the tests"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.hold(t, prefix, unit)
	begin := rec.Begin{Task: "t", ProjectDir: "/p", Resume: true}
	first, err := a.store.BeginChain(unit, begin, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.RecordSession(unit, rec.RecordSession{ChainID: first.ID, Session: Session{Index: 0, Status: SessionComplete, HandoffFile: handoff}}, at(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.RecordSession(unit, rec.RecordSession{ChainID: first.ID, Session: Session{Index: 1, Status: SessionRunning}}, at(2)); err != nil {
		t.Fatal(err)
	}
	var hold string
	a.store.View(func(r *Registry) error {
		if ch := r.Find(first.ID); ch != nil {
			hold = ch.Hold
		}
		return nil
	})
	if hold == "" {
		t.Fatalf("chain %s of a fleet unit records no hold", first.ID)
	}

	// While h1 holds the unit, its running chain is h1's.
	got, err := b.store.BeginChain(unit, begin, at(3))
	if err != nil {
		t.Fatal(err)
	}
	if got.RestartedFrom != "" {
		t.Fatalf("h2 resumed %s while h1 still held the unit", got.RestartedFrom)
	}
	if _, err := b.store.FinishChain(unit, rec.Finish{ChainID: got.ID, Status: ChainFailed}, at(3)); err != nil {
		t.Fatal(err)
	}

	// h1 loses the unit (its lease goes); h2 and h3 campaign, h2 first, so
	// h2 holds it: h3 may not resume h1's chain, h2 resumes it once, though
	// it asks twice at once.
	if err := a.sess.Close(); err != nil {
		t.Fatal(err)
	}
	b.hold(t, prefix, unit)
	stand := make(chan error, 1)
	cctx, stopStanding := context.WithCancel(context.Background())
	defer stopStanding()
	go func() {
		e := concurrency.NewElection(c.sess, placement.Dir(prefix)+unit)
		stand <- e.Campaign(cctx, `{"node":"h3","active":false}`)
	}()
	if got, err := c.store.BeginChain(unit, begin, at(4)); err != nil || got.RestartedFrom != "" {
		t.Fatalf("h3, which does not hold the unit, began %+v, %v; want no resume", got, err)
	}
	var (
		wg    sync.WaitGroup
		begun [2]rec.Begun
		errs  [2]error
	)
	for i := range begun {
		wg.Go(func() { begun[i], errs[i] = b.store.BeginChain(unit, begin, at(5)) })
	}
	wg.Wait()
	resumed := 0
	for i := range begun {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if begun[i].RestartedFrom == first.ID {
			resumed++
			if begun[i].Handoff != handoff {
				t.Errorf("the resume carried handoff %q, want %s", begun[i].Handoff, handoff)
			}
		} else if begun[i].RestartedFrom != begun[1-i].ID {
			// The later one continues the earlier: a running chain of this host.
			t.Errorf("h2's second chain resumed %q, want h2's first, %s", begun[i].RestartedFrom, begun[1-i].ID)
		}
	}
	if resumed != 1 {
		t.Fatalf("h1's chain was resumed %d times (%+v), want once", resumed, begun)
	}
	b.store.View(func(r *Registry) error {
		old := r.Find(first.ID)
		if old.Status != ChainInterrupted || old.Reason == "" || old.Sessions[1].Status != SessionInterrupted {
			t.Errorf("h1's chain after the resume: %s (%q), session 1 %s; want interrupted with a reason, and its running session too", old.Status, old.Reason, old.Sessions[1].Status)
		}
		lin, err := r.Lineage(first.ID)
		if err != nil || len(lin) != 3 || lin[1].Host != "h2" || lin[1].Depth != 1 || lin[1].RestartedFrom != first.ID {
			t.Errorf("lineage of %s: %+v %v; want it, and h2's two chains below it", first.ID, lin, err)
		}
		return nil
	})

	// What is left of h1 can no longer change the chain.
	_, err = a.store.RecordSession(unit, rec.RecordSession{ChainID: first.ID, Session: Session{Index: 1, Status: SessionComplete}}, at(6))
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("h1 recorded a session of its resumed chain: %v; want ErrNotAllowed", err)
	}
	if _, err := a.store.FinishChain(unit, rec.Finish{ChainID: first.ID, Status: ChainComplete}, at(6)); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("h1 completed its resumed chain: %v; want ErrNotAllowed", err)
	}
	if _, err := a.store.FinishChain(unit, rec.Finish{ChainID: first.ID, Status: ChainInterrupted, Reason: "stopping"}, at(6)); err != nil {
		t.Errorf("h1 marked its resumed chain interrupted (as it was): %v", err)
	}
	stopStanding()
	<-stand
}

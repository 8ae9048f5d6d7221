package fleetevents_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/cluster/fleetevents"
	"github.com/opsvc/opsvc/supervisor/bus"
)

func TestEveryHostsEventsMergeWithTheirHost(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	buses := map[string]*bus.Bus{}
	for _, node := range []string{"h1", "h2"} {
		b, err := bus.Open(t.TempDir(), bus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		buses[node] = b
		p := fleetevents.NewPublisher(cli, "/fe", node, t.Logf)
		wg.Go(func() {
			if err := p.Run(ctx, b); err != nil {
				t.Errorf("%s: publish: %v", node, err)
			}
		})
	}

	got := make(chan fleetevents.Event, 100)
	ready := make(chan struct{})
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	wg.Go(func() {
		err := fleetevents.Follow(fctx, cli, "/fe", 0, func() { close(ready) }, func(e fleetevents.Event) error {
			select {
			case got <- e:
			case <-fctx.Done():
			}
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("follow: %v", err)
		}
	})
	<-ready
	// The publishers subscribe as they start: publish until both hosts'
	// events arrive, a few times at most.
	seen := map[string]bool{}
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !seen["h1"] || !seen["h2"] {
		select {
		case e := <-got:
			if e.Type != "unit.ready" || e.Unit != "web" {
				t.Fatalf("unexpected event %+v (only unit state changes are shared)", e)
			}
			seen[e.Node] = true
		case <-tick.C:
			for _, b := range buses {
				b.Publish(bus.Event{Type: "unit.ready", Unit: "web"})
				b.Publish(bus.Event{Type: "unit.log", Unit: "web", Data: map[string]any{"text": "not shared"}})
			}
		case <-deadline:
			t.Fatalf("events seen from %v within 15s, want h1 and h2", seen)
		}
	}

	// Read back: the last n kept, oldest first (at least one from each host
	// was kept).
	var back []fleetevents.Event
	err = fleetevents.Follow(ctx, cli, "/fe", 2, func() {}, func(e fleetevents.Event) error {
		back = append(back, e)
		if len(back) == 2 {
			return errors.New("enough")
		}
		return nil
	})
	if err == nil || err.Error() != "enough" || len(back) != 2 {
		t.Fatalf("read back %d events (%v), want the last 2", len(back), err)
	}
	for i := 1; i < len(back); i++ {
		if back[i].Time.Before(back[i-1].Time) {
			t.Errorf("read back out of order: %v before %v", back[i-1].Time, back[i].Time)
		}
	}
}

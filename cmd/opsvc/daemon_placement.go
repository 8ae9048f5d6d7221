package main

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/opsvc/opsvc/cluster/fleetevents"
	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/bus"
)

// fleetUnits places this host's fleet units and shares its units' state
// changes with the fleet; nil for a single host.
type fleetUnits struct {
	placer *placement.Placement
	events *fleetevents.Source
	pub    *fleetevents.Publisher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// fleetClient is what fleet placement needs of the daemon's etcd client.
type fleetClient interface {
	Etcd() *clientv3.Client
	Prefix() string
	Node() string
	LeaseTTL() time.Duration
}

func newFleetUnits(cl fleetClient, logf func(string, ...any)) *fleetUnits {
	if cl == nil {
		return nil
	}
	return &fleetUnits{
		placer: placement.New(cl.Etcd(), placement.Options{Prefix: cl.Prefix(), Node: cl.Node(), TTL: cl.LeaseTTL(), Logf: logf}),
		events: &fleetevents.Source{Client: cl.Etcd(), Prefix: cl.Prefix()},
		pub:    fleetevents.NewPublisher(cl.Etcd(), cl.Prefix(), cl.Node(), logf),
	}
}

// placerOpt is the supervisor's Placer: nil for a single host.
func (f *fleetUnits) placerOpt() supervisor.Placer {
	if f == nil {
		return nil
	}
	return f.placer
}

// eventsOpt is the supervisor's FleetEvents: nil for a single host.
func (f *fleetUnits) eventsOpt() supervisor.FleetEvents {
	if f == nil {
		return nil
	}
	return f.events
}

// start campaigns and publishes until stop.
func (f *fleetUnits) start(b *bus.Bus, logf func(string, ...any)) {
	if f == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Go(func() { f.placer.Run(ctx) })
	f.wg.Go(func() {
		if err := f.pub.Run(ctx, b); err != nil {
			logf("fleet events: %v", err)
		}
	})
}

// stop gives this host's fleet units up at once (its units have stopped)
// and ends the publishing.
func (f *fleetUnits) stop() {
	if f == nil || f.cancel == nil {
		return
	}
	f.cancel()
	f.wg.Wait()
}

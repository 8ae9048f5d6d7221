package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opsvc/opsvc/cluster"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/bus"
)

// Events about the daemon's link to the fleet's etcd.
const (
	typeClusterUnreachable = "cluster.unreachable"
	typeClusterReachable   = "cluster.reachable"
)

// fleetLink is the daemon's connection to the fleet's etcd ([cluster] in
// opsvc.toml), and where it reports the connection's health.
type fleetLink struct {
	client *cluster.Client

	mu     sync.Mutex
	bus    *bus.Bus
	logf   func(string, ...any)
	notify []func()
}

// joinFleet connects to etcd when opsvc.toml has [cluster] etcd; it returns
// nil, nil for a single host. The error reads as an opsvc error without the
// leading "opsvc: ".
func joinFleet(ctx context.Context, p config.Paths, s config.Settings) (*fleetLink, error) {
	if !s.Cluster.Enabled() {
		return nil, nil
	}
	f := &fleetLink{}
	cl, err := cluster.Dial(ctx, s.Cluster, cluster.Options{ConfigDir: filepath.Dir(p.Config), OnHealth: f.health})
	if err != nil {
		return nil, errorText(err)
	}
	f.client = cl
	return f, nil
}

type textError string

func (e textError) Error() string { return string(e) }

func errorText(err error) error { return textError(strings.TrimPrefix(err.Error(), "opsvc: ")) }

// attach sends the health changes to b and logf from now on, and calls each
// of wake after each change.
func (f *fleetLink) attach(b *bus.Bus, logf func(string, ...any), wake ...func()) {
	f.mu.Lock()
	f.bus, f.logf, f.notify = b, logf, wake
	f.mu.Unlock()
	if h := f.client.Health(); !h.Reachable {
		f.health(h)
	}
}

func (f *fleetLink) health(h cluster.Health) {
	f.mu.Lock()
	b, logf, wake := f.bus, f.logf, f.notify
	f.mu.Unlock()
	if b == nil {
		return
	}
	data := map[string]any{"node": f.client.Node(), "since": h.Since}
	if h.Reachable {
		logf("etcd answers again: the fleet's registry and session leases are back")
		b.Publish(bus.Event{Type: typeClusterReachable, Data: data})
	} else {
		data["error"] = h.Err
		data["hint"] = "local units keep running; no new session starts until etcd answers again"
		logf("etcd does not answer (%s): local units keep running, no new session starts until it does", h.Err)
		b.Publish(bus.Event{Type: typeClusterUnreachable, Data: data})
	}
	for _, w := range wake {
		w()
	}
}

func (f *fleetLink) close() {
	if f != nil {
		f.client.Close()
	}
}

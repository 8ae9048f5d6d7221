// Package fleetevents shares unit state changes between the daemons of a
// fleet. Each daemon publishes a small summary of its units' state changes
// under PREFIX/events/NODE/ (each key expires after KeepFor, and a daemon
// publishes at most Rate a second); any daemon can then follow every host's
// stream through one etcd watch.
package fleetevents

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/opsvc/opsvc/supervisor/bus"
)

// Event is one host's event as the fleet sees it.
type Event struct {
	Node string `json:"node"`
	bus.Event
}

// Bounds of what a daemon publishes.
const (
	KeepFor   = 2 * time.Minute // a summary's key expires after this
	Rate      = 20              // summaries a second, at most (with bursts of Burst)
	Burst     = 100             //
	maxValue  = 2048            // a summary longer than this is cut to its type and unit
	maxText   = 200             // a string in a summary's data is cut to this
	maxKeys   = 8               // keys of a summary's data
	maxReplay = 1000            // summaries read back at most before following
)

// Types are the event types published: state changes of units, and the
// daemon's start and stop.
var publishedTypes = []string{
	"unit.starting", "unit.started", "unit.ready", "unit.exited", "unit.restarting",
	"unit.stopping", "unit.stopped", "unit.failed", "unit.watchdog", "unit.killed",
	"daemon.ready", "daemon.stopping",
}

// Types returns the event types a daemon publishes to the fleet.
func Types() []string { return append([]string(nil), publishedTypes...) }

func dir(prefix string) string { return strings.TrimSuffix(prefix, "/") + "/events/" }

// Publisher writes this host's summaries to etcd.
type Publisher struct {
	cli    *clientv3.Client
	prefix string
	node   string
	logf   func(string, ...any)
}

// NewPublisher returns a publisher for node.
func NewPublisher(cli *clientv3.Client, prefix, node string, logf func(string, ...any)) *Publisher {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Publisher{cli: cli, prefix: prefix, node: node, logf: logf}
}

// Run publishes the events of b until ctx ends. While etcd cannot be
// written, summaries are dropped (the daemon's own log keeps every event),
// and the number dropped is published once it can be again.
func (p *Publisher) Run(ctx context.Context, b *bus.Bus) error {
	sub, err := b.Subscribe(b.LastSeq(), bus.Filter{Types: publishedTypes}, true)
	if err != nil {
		return err
	}
	defer sub.Close()
	var (
		lease   clientv3.LeaseID
		granted time.Time
		n       uint64
		dropped int
		tokens  = float64(Burst)
		last    = time.Now()
	)
	for {
		var e bus.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-sub.C():
			if !ok {
				return nil
			}
		}
		now := time.Now()
		tokens = min(Burst, tokens+now.Sub(last).Seconds()*Rate)
		last = now
		if tokens < 1 {
			dropped++
			continue
		}
		tokens--
		if lease == 0 || now.Sub(granted) > KeepFor/2 {
			// A new lease every half KeepFor: a key lives at most KeepFor.
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			l, err := p.cli.Grant(gctx, int64(KeepFor/time.Second))
			cancel()
			if err != nil {
				dropped++
				continue
			}
			lease, granted = l.ID, now
		}
		e = trim(e)
		if dropped > 0 {
			// How many summaries before this one could not be published.
			if e.Data == nil {
				e.Data = map[string]any{}
			}
			e.Data["fleet_dropped"] = dropped
		}
		n++
		val := encode(Event{Node: p.node, Event: e})
		key := fmt.Sprintf("%s%s/%020d-%020d", dir(p.prefix), p.node, now.UnixNano(), n)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.cli.Put(pctx, key, val, clientv3.WithLease(lease))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			dropped++
			lease = 0
			continue
		}
		dropped = 0
	}
}

// trim keeps a summary small: a few scalar data values, strings cut.
func trim(e bus.Event) bus.Event {
	e.Data = boundData(e.Data)
	e.Source = ""
	return e
}

func boundData(d map[string]any) map[string]any {
	if len(d) == 0 {
		return nil
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]any{}
	for _, k := range keys {
		if len(out) >= maxKeys {
			break
		}
		switch v := d[k].(type) {
		case string:
			if len(v) > maxText {
				v = v[:maxText] + "…"
			}
			out[k] = v
		case bool, float64, int, int64, uint64, json.Number:
			out[k] = v
		}
	}
	return out
}

func encode(e Event) string {
	b, _ := json.Marshal(e)
	if len(b) > maxValue {
		e.Data = nil
		b, _ = json.Marshal(e)
	}
	return string(b)
}

// Follow calls ready once etcd answered, then fn with the last n summaries
// kept in etcd (oldest first), then with every new one, until ctx ends, fn
// fails, or the watch fails.
func Follow(ctx context.Context, cli *clientv3.Client, prefix string, n int, ready func(), fn func(Event) error) error {
	d := dir(prefix)
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if n <= 0 {
		opts = append(opts, clientv3.WithCountOnly())
	} else {
		// The newest keys of every host: read back at most maxReplay, by
		// creation, and keep the last n by time.
		opts = append(opts, clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(int64(min(n, maxReplay))))
	}
	resp, err := cli.Get(gctx, d, opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot read the fleet's events from etcd: %w", err)
	}
	ready()
	var first []Event
	for _, kv := range resp.Kvs {
		if e, ok := decode(kv); ok {
			first = append(first, e)
		}
	}
	sort.SliceStable(first, func(i, j int) bool { return first[i].Time.Before(first[j].Time) })
	for _, e := range first {
		if err := fn(e); err != nil {
			return err
		}
	}
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	for wr := range cli.Watch(wctx, d, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete()) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("the watch of the fleet's events ended: %w", err)
		}
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT {
				continue
			}
			if e, ok := decode(ev.Kv); ok {
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return ctx.Err()
}

func decode(kv *mvccpb.KeyValue) (Event, bool) {
	var e Event
	if len(kv.Value) > maxValue || json.Unmarshal(kv.Value, &e) != nil || e.Node == "" {
		return e, false
	}
	return e, true
}

// Source follows the fleet's events for the daemon's API.
type Source struct {
	Client *clientv3.Client
	Prefix string
}

// Follow is Follow on the source's client and prefix.
func (s *Source) Follow(ctx context.Context, n int, ready func(), fn func(Event) error) error {
	return Follow(ctx, s.Client, s.Prefix, n, ready, fn)
}

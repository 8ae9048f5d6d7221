package placement

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxValue bounds the value of a candidate or move key that is read; a
// longer one is ignored.
const maxValue = 1024

// candidate is one host campaigning for a unit: its key in the unit's
// election, and what it says of itself.
type candidate struct {
	key    string
	rev    int64  // create revision: the first one holds the unit
	Node   string `json:"node"`
	Active bool   `json:"active"` // the unit is active on that host
}

// value is what a host writes in its candidate key.
func value(node string, active bool) string {
	b, _ := json.Marshal(candidate{Node: node, Active: active})
	return string(b)
}

// view is the placement keys of every unit, kept current by a watch.
type view struct {
	mu    sync.Mutex
	cands map[string][]candidate // by unit, first created first
	moves map[string]string      // unit -> the host it is to move to
	wake  chan struct{}          // capacity 1: the view changed (for the session)
	bcast chan struct{}          // closed when the view changes (for anyone), then replaced
}

func newView() *view {
	return &view{cands: map[string][]candidate{}, moves: map[string]string{}, wake: make(chan struct{}, 1), bcast: make(chan struct{})}
}

func (v *view) signal() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
	v.mu.Lock()
	close(v.bcast)
	v.bcast = make(chan struct{})
	v.mu.Unlock()
}

// changed returns a channel closed at the next change of the view.
func (v *view) changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bcast
}

// leader returns the host that holds unit, if any.
func (v *view) leader(unit string) (candidate, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cs := v.cands[unit]
	if len(cs) == 0 {
		return candidate{}, false
	}
	return cs[0], true
}

// isCandidate says whether node campaigns for unit.
func (v *view) isCandidate(unit, node string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.cands[unit] {
		if c.Node == node {
			return true
		}
	}
	return false
}

// moveTarget is the host unit is to move to, when that host campaigns for it.
func (v *view) moveTarget(unit string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	to := v.moves[unit]
	if to == "" {
		return ""
	}
	for _, c := range v.cands[unit] {
		if c.Node == to {
			return to
		}
	}
	return ""
}

// apply records one key's change. On v.mu.
func (v *view) applyLocked(k *mvccpb.KeyValue, deleted bool, placementDir, movesDir string) {
	key := string(k.Key)
	switch {
	case strings.HasPrefix(key, placementDir):
		unit, _, ok := strings.Cut(strings.TrimPrefix(key, placementDir), "/")
		if !ok || unit == "" {
			return
		}
		cs := v.cands[unit]
		for i, c := range cs {
			if c.key == key {
				cs = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		if !deleted {
			var c candidate
			if len(k.Value) > maxValue || json.Unmarshal(k.Value, &c) != nil || c.Node == "" {
				c = candidate{Node: "?"}
			}
			c.key, c.rev = key, k.CreateRevision
			cs = append(cs, c)
			sort.Slice(cs, func(i, j int) bool { return cs[i].rev < cs[j].rev })
		}
		if len(cs) == 0 {
			delete(v.cands, unit)
		} else {
			v.cands[unit] = cs
		}
	case strings.HasPrefix(key, movesDir):
		unit := strings.TrimPrefix(key, movesDir)
		if deleted || len(k.Value) > maxValue {
			delete(v.moves, unit)
		} else {
			v.moves[unit] = string(k.Value)
		}
	}
}

// watch keeps the view current until ctx ends: it reads the placement and
// move keys, then follows their changes; after an error it reads them again.
func (p *Placement) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := p.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.logf("placement: watch: %v (reading again)", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay):
		}
	}
}

// retryDelay is the pause before a failed etcd step is tried again.
const retryDelay = 500 * time.Millisecond

func (p *Placement) watchOnce(ctx context.Context) error {
	pd, md := p.placementDir(), p.movesDir()
	gctx, cancel := context.WithTimeout(ctx, p.ttl)
	resp, err := p.cli.Txn(gctx).Then(
		clientv3.OpGet(pd, clientv3.WithPrefix()),
		clientv3.OpGet(md, clientv3.WithPrefix()),
	).Commit()
	cancel()
	if err != nil {
		return err
	}
	v := p.view
	v.mu.Lock()
	v.cands, v.moves = map[string][]candidate{}, map[string]string{}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			v.applyLocked(kv, false, pd, md)
		}
	}
	v.mu.Unlock()
	v.signal()

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	// One watch over both directories: their keys share the prefix
	// PREFIX/placement.
	wch := p.cli.Watch(wctx, p.prefix+"/placement", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) == 0 {
			continue
		}
		v.mu.Lock()
		for _, ev := range wr.Events {
			v.applyLocked(ev.Kv, ev.Type == mvccpb.DELETE, pd, md)
		}
		v.mu.Unlock()
		v.signal()
	}
	return ctx.Err()
}

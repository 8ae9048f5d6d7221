// Package placement runs each fleet unit on one host of the fleet at a time.
//
// Every host campaigns in one etcd election per fleet unit it wants to run
// (PREFIX/placement/UNIT, etcd's concurrency.Election), under one session
// lease of the fleet's lease TTL. The winner runs the unit; the others show
// it as standby. A host gives a unit up before its lease can expire when it
// cannot renew it (fencing): it learns nothing new from etcd for 3/4 of the
// TTL, it stops its fleet units, and the next host takes over once the lease
// has expired. A move (PREFIX/placement-moves/UNIT = HOST) makes the holder
// hand the unit over once it has stopped, and every other host let HOST win.
//
// The daemon's loop never waits for etcd: it tells Placement what it wants
// and runs (SetLocal), and reads what it may run (Holds) when Changed fires.
package placement

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Local is what the daemon knows of one fleet unit on this host.
type Local struct {
	Want    bool // the daemon would run it here: defined, and not stopped here
	Running bool // a process of it runs here
	Active  bool // it is active here
}

// Hold is where a fleet unit runs, as this host sees it.
type Hold struct {
	Held         bool   // this host holds the unit: it may run it
	Holder       string // the host that holds it; "" when none is known
	HolderActive bool   // the holder says the unit is active there
	Note         string // when not held: why, in a few words ("running on web-2")
	// StopBy is, for a unit this host held when it lost its etcd session,
	// when the lease may expire: the unit must be gone by then.
	StopBy time.Time
}

// Options configure a Placement.
type Options struct {
	Prefix string        // key prefix of the fleet ("/opsvc")
	Node   string        // this host's name
	TTL    time.Duration // the session lease's time to live
	Logf   func(format string, args ...any)
}

// Placement campaigns for this host's fleet units. Make it with New, run it
// with Run.
type Placement struct {
	cli    *clientv3.Client
	prefix string
	node   string
	ttl    time.Duration
	logf   func(string, ...any)
	view   *view

	mu      sync.Mutex
	local   map[string]Local
	holds   map[string]Hold
	problem string        // why this host has no etcd session; "" when it has one
	localCh chan struct{} // capacity 1: local changed
	changed chan struct{} // capacity 1: holds changed
}

// New returns a Placement on cli.
func New(cli *clientv3.Client, opts Options) *Placement {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.TTL < time.Second {
		opts.TTL = time.Second
	}
	return &Placement{
		cli:     cli,
		prefix:  strings.TrimSuffix(opts.Prefix, "/"),
		node:    opts.Node,
		ttl:     opts.TTL,
		logf:    opts.Logf,
		view:    newView(),
		local:   map[string]Local{},
		holds:   map[string]Hold{},
		problem: "connecting to etcd",
		localCh: make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
	}
}

// Node is this host's name.
func (p *Placement) Node() string { return p.node }

func (p *Placement) placementDir() string { return p.prefix + "/placement/" }
func (p *Placement) movesDir() string     { return p.prefix + "/placement-moves/" }

// SetLocal tells what this host wants and runs of every fleet unit (units
// not named are neither wanted nor running). It never waits.
func (p *Placement) SetLocal(m map[string]Local) {
	p.mu.Lock()
	p.local = maps.Clone(m)
	p.mu.Unlock()
	select {
	case p.localCh <- struct{}{}:
	default:
	}
}

// Changed fires when Holds may say something new.
func (p *Placement) Changed() <-chan struct{} { return p.changed }

// Holds returns where each fleet unit runs, for the units this host was told
// of and those that have a holder.
func (p *Placement) Holds() map[string]Hold {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.holds)
}

// Problem says why this host has no etcd session, or "".
func (p *Placement) Problem() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.problem
}

// Run campaigns until ctx ends; then it gives up every unit at once
// (revoking its lease), so another host takes them over without waiting for
// the lease to expire. The daemon ends Run after its units have stopped.
func (p *Placement) Run(ctx context.Context) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { p.watch(wctx) })
	defer wg.Wait()
	for ctx.Err() == nil {
		why, stopBy := p.session(ctx)
		p.lost(why, stopBy)
		if ctx.Err() != nil {
			return
		}
		p.logf("placement: %s; this host runs no fleet unit until it has a new session", why)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay):
		}
	}
}

// lost records that this host holds nothing; what it held must be gone by
// stopBy.
func (p *Placement) lost(why string, stopBy time.Time) {
	p.mu.Lock()
	p.problem = why
	for u, h := range p.holds {
		if h.Held {
			h.StopBy = stopBy
		}
		h.Held, h.Note = false, "no etcd session here: "+why
		p.holds[u] = h
	}
	p.mu.Unlock()
	p.signal()
}

func (p *Placement) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// unitState is the session's record of one unit.
type unitState struct {
	campaign  context.CancelFunc    // a campaign runs and is wanted; nil when none
	inflight  bool                  // a campaign's goroutine has not returned (its key is in use)
	elect     *concurrency.Election // held: the election won
	active    bool                  // what the candidate key says
	resigning bool                  // a resign runs
	proclaim  bool                  // a proclaim runs
	gen       int                   // numbers campaigns, so a stale result is known
}

type campaignResult struct {
	unit  string
	gen   int
	elect *concurrency.Election
	err   error
}

type opResult struct {
	unit   string
	elect  *concurrency.Election // resign: the election given up
	kind   string                // "resign" or "proclaim"
	err    error
	active bool
}

// session holds one etcd session until it ends, and says why it ended and
// by when what it held must be gone: before its lease may expire.
func (p *Placement) session(ctx context.Context) (string, time.Time) {
	ttlSec := int64((p.ttl + time.Second - 1) / time.Second)
	start := time.Now()
	gctx, gcancel := context.WithTimeout(ctx, p.ttl)
	lease, err := p.cli.Grant(gctx, ttlSec)
	gcancel()
	if err != nil {
		return "cannot reach etcd: " + err.Error(), time.Time{}
	}
	ttl := time.Duration(lease.TTL) * time.Second
	fenceAfter := ttl * 3 / 4
	renewed := start
	stopBy := func() time.Time { return renewed.Add(ttl * 7 / 8) }

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	sess, err := concurrency.NewSession(p.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(lease.TTL)), concurrency.WithContext(sctx))
	if err != nil {
		return "cannot keep an etcd lease: " + err.Error(), stopBy()
	}
	// A second listener on the same lease: the time of each renewal, for
	// fencing before the lease can expire.
	renewals, err := p.cli.KeepAlive(sctx, lease.ID)
	if err != nil {
		return "cannot keep an etcd lease: " + err.Error(), stopBy()
	}
	fence := time.NewTimer(fenceAfter - time.Since(start))
	defer fence.Stop()

	p.mu.Lock()
	p.problem = ""
	p.mu.Unlock()
	p.signal()

	units := map[string]*unitState{}
	results := make(chan campaignResult)
	ops := make(chan opResult)
	var bg sync.WaitGroup // resigns and proclaims, bounded by the TTL
	defer func() {
		if ctx.Err() != nil {
			// The daemon stops, its units have stopped: let the others
			// take over now.
			rctx, cancel := context.WithTimeout(context.Background(), p.ttl)
			p.cli.Revoke(rctx, lease.ID)
			cancel()
		}
		scancel() // campaigns under way end, and give their result to nobody
		bg.Wait()
	}()

	for {
		p.step(sctx, sess, units, results, ops, &bg)
		select {
		case <-ctx.Done():
			return "the daemon is stopping", stopBy()
		case <-sess.Done():
			return "the etcd lease of this host expired", stopBy()
		case _, ok := <-renewals:
			if !ok {
				return "the etcd lease of this host could not be renewed", stopBy()
			}
			renewed = time.Now()
			resetTimer(fence, fenceAfter)
		case <-fence.C:
			return fmt.Sprintf("etcd did not renew this host's lease for %v", fenceAfter), stopBy()
		case <-p.localCh:
		case <-p.view.wake:
		case r := <-results:
			st := units[r.unit]
			if st != nil {
				st.inflight = false
			}
			if st == nil || st.gen != r.gen || st.campaign == nil {
				if r.err == nil {
					// Won after it was called off: give it back before
					// campaigning again (a campaign uses the same key).
					if st == nil {
						st = &unitState{}
						units[r.unit] = st
					}
					st.resigning = true
					p.resign(sctx, r.unit, r.elect, ops, &bg)
				}
				continue
			}
			st.campaign = nil
			if r.err != nil {
				if sctx.Err() == nil {
					p.logf("placement: campaign for %s: %v", r.unit, r.err)
				}
				continue
			}
			st.elect, st.active = r.elect, false
			p.logf("placement: this host holds %s", r.unit)
		case r := <-ops:
			st := units[r.unit]
			if st == nil {
				continue
			}
			switch r.kind {
			case "resign":
				st.resigning = false
				if r.err != nil {
					p.logf("placement: give up %s: %v (trying again)", r.unit, r.err)
					if st.elect == nil {
						st.elect = r.elect // still the leader: held, until given up
					}
					continue
				}
				st.elect = nil
				p.logf("placement: this host gave %s up", r.unit)
			case "proclaim":
				st.proclaim = false
				if r.err == nil {
					st.active = r.active
				}
			}
		}
	}
}

// step brings the campaigns in line with what the daemon wants and runs,
// and what etcd says; it publishes the holds.
func (p *Placement) step(ctx context.Context, sess *concurrency.Session, units map[string]*unitState, results chan campaignResult, ops chan opResult, bg *sync.WaitGroup) {
	p.mu.Lock()
	local := p.local
	p.mu.Unlock()
	names := map[string]bool{}
	for u := range local {
		names[u] = true
	}
	for u := range units {
		names[u] = true
	}
	holds := make(map[string]Hold, len(names))
	for u := range names {
		l := local[u]
		st := units[u]
		if st == nil {
			st = &unitState{}
			units[u] = st
		}
		moveTo := p.view.moveTarget(u)
		movingAway := moveTo != "" && moveTo != p.node
		switch {
		case st.elect != nil:
			// Held: keep it while wanted and not moving; give it up once
			// nothing of it runs here.
			keep := l.Want && !movingAway
			if !keep && !l.Running && !st.resigning {
				p.resign(ctx, u, st.elect, ops, bg)
				st.resigning = true
			}
			if keep && moveTo == p.node {
				p.moveDone(ctx, u, bg)
			}
			if keep && l.Active != st.active && !st.proclaim && !st.resigning {
				st.proclaim = true
				e, active := st.elect, l.Active
				bg.Go(func() {
					pctx, cancel := context.WithTimeout(ctx, p.ttl)
					err := e.Proclaim(pctx, value(p.node, active))
					cancel()
					select {
					case ops <- opResult{unit: u, kind: "proclaim", err: err, active: active}:
					case <-ctx.Done():
					}
				})
			}
		case st.campaign != nil:
			if !l.Want || l.Running || movingAway {
				st.campaign()
				st.campaign = nil
			}
		case !st.resigning && !st.inflight && l.Want && !l.Running && !movingAway:
			st.gen++
			st.inflight = true
			cctx, cancel := context.WithCancel(ctx)
			st.campaign = cancel
			gen, e := st.gen, concurrency.NewElection(sess, p.placementDir()+u)
			go func() {
				err := e.Campaign(cctx, value(p.node, false))
				select {
				case results <- campaignResult{unit: u, gen: gen, elect: e, err: err}:
				case <-ctx.Done(): // the session ended: its lease goes, and its keys with it
				}
			}()
		}
		h := Hold{}
		if c, ok := p.view.leader(u); ok {
			h.Holder, h.HolderActive = c.Node, c.Active
		}
		switch {
		case st.elect != nil && l.Want && !movingAway && !st.resigning:
			h.Held, h.Holder, h.HolderActive = true, p.node, l.Active
		case st.elect != nil || st.resigning:
			h.Note = "giving it up"
			if movingAway {
				h.Note = "moving to " + moveTo
			}
		case movingAway:
			h.Note = "moving to " + moveTo
		case h.Holder != "" && h.Holder != p.node:
			h.Note = "running on " + h.Holder
			if !h.HolderActive {
				h.Note = "starting on " + h.Holder
			}
		case !l.Want:
			h.Note = "not wanted on this host"
		default:
			h.Note = "waiting for its election"
		}
		holds[u] = h
		if st.elect == nil && st.campaign == nil && !st.inflight && !st.resigning && !l.Want {
			delete(units, u)
		}
	}
	p.mu.Lock()
	same := maps.Equal(p.holds, holds)
	p.holds = holds
	p.mu.Unlock()
	if !same {
		p.signal()
	}
}

// resign gives a held unit up, off the session's goroutine.
func (p *Placement) resign(ctx context.Context, unit string, e *concurrency.Election, ops chan opResult, bg *sync.WaitGroup) {
	bg.Go(func() {
		rctx, cancel := context.WithTimeout(ctx, p.ttl)
		err := e.Resign(rctx)
		cancel()
		select {
		case ops <- opResult{unit: unit, kind: "resign", err: err, elect: e}:
		case <-ctx.Done():
		}
	})
}

// moveDone removes a move to this host once this host holds the unit.
func (p *Placement) moveDone(ctx context.Context, unit string, bg *sync.WaitGroup) {
	key := p.movesDir() + unit
	bg.Go(func() {
		dctx, cancel := context.WithTimeout(ctx, p.ttl)
		defer cancel()
		p.cli.Txn(dctx).If(clientv3.Compare(clientv3.Value(key), "=", p.node)).Then(clientv3.OpDelete(key)).Commit()
	})
}

// ErrNotCandidate is returned by Move when the host does not campaign for
// the unit.
var ErrNotCandidate = errors.New("the host does not campaign for the unit")

// Move asks the fleet to run unit on host, and waits until host holds it
// and says it is active there, or ctx ends. The move is forgotten after
// moveTTL if it does not happen.
func (p *Placement) Move(ctx context.Context, unit, host string) error {
	if !p.view.isCandidate(unit, host) {
		return fmt.Errorf("%w: %s does not run opsvc with %s wanted (see opsvc status %s there)", ErrNotCandidate, host, unit, unit)
	}
	if c, ok := p.view.leader(unit); ok && c.Node == host && c.Active {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, p.ttl)
	lease, err := p.cli.Grant(lctx, int64(moveTTL/time.Second))
	if err == nil {
		_, err = p.cli.Put(lctx, p.movesDir()+unit, host, clientv3.WithLease(lease.ID))
	}
	cancel()
	if err != nil {
		return fmt.Errorf("cannot write the move to etcd: %w", err)
	}
	for {
		changed := p.view.changed()
		if c, ok := p.view.leader(unit); ok && c.Node == host && c.Active {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// moveTTL is how long a move stays asked for.
const moveTTL = 60 * time.Second

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

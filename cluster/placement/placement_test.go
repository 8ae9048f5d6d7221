package placement_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/cluster/placement/proxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const ttl = 3 * time.Second

// host is one daemon of the fleet as far as placement goes: a Placement,
// and a loop that runs the unit at once while it is held and stops it at
// once when not, recording when it ran.
type host struct {
	t      *testing.T
	name   string
	cli    *clientv3.Client
	p      *placement.Placement
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	want    bool
	running bool
	runs    []span // when the unit ran here
	changed chan struct{}
}

type span struct{ from, to time.Time }

func newHost(t *testing.T, name string, endpoints []string) *host {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, name: name, cli: cli, want: true, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	h.p = placement.New(cli, placement.Options{Prefix: "/test", Node: name, TTL: ttl, Logf: func(f string, a ...any) { t.Logf(name+": "+f, a...) }})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		var wg sync.WaitGroup
		wg.Go(func() { h.p.Run(ctx) })
		h.loop(ctx)
		wg.Wait()
	}()
	t.Cleanup(h.stop)
	return h
}

// loop is the daemon's side: run while held.
func (h *host) loop(ctx context.Context) {
	h.tell()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.setRunning(false)
			h.mu.Unlock()
			return
		case <-h.p.Changed():
		}
		held := h.p.Holds()["u"].Held
		h.mu.Lock()
		h.setRunning(held && h.want)
		h.mu.Unlock()
		h.tell()
	}
}

func (h *host) setRunning(r bool) {
	if r == h.running {
		return
	}
	h.running = r
	now := time.Now()
	if r {
		h.runs = append(h.runs, span{from: now})
	} else {
		h.runs[len(h.runs)-1].to = now
	}
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *host) tell() {
	h.mu.Lock()
	l := placement.Local{Want: h.want, Running: h.running, Active: h.running}
	h.mu.Unlock()
	h.p.SetLocal(map[string]placement.Local{"u": l})
}

func (h *host) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
	h.cli.Close()
}

func (h *host) isRunning() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running
}

// waitFor polls cond (state kept by other goroutines) until it holds.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runner returns the one host that runs the unit once exactly one does and
// every host names it as the holder.
func runner(t *testing.T, hosts []*host, within time.Duration) *host {
	t.Helper()
	var got *host
	waitFor(t, within, "exactly one host runs the unit, and all name it", func() bool {
		got = nil
		n := 0
		for _, h := range hosts {
			if h.isRunning() {
				got = h
				n++
			}
		}
		if n != 1 {
			return false
		}
		for _, h := range hosts {
			hd := h.p.Holds()["u"]
			if hd.Holder != got.name || !hd.HolderActive {
				return false
			}
		}
		return true
	})
	return got
}

// noOverlap checks that no two hosts ran the unit at the same time.
func noOverlap(t *testing.T, hosts []*host) {
	t.Helper()
	var all []span
	var who []string
	for _, h := range hosts {
		h.mu.Lock()
		for _, s := range h.runs {
			if s.to.IsZero() {
				s.to = time.Now()
			}
			all = append(all, s)
			who = append(who, h.name)
		}
		h.mu.Unlock()
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].from.Before(all[j].to) && all[j].from.Before(all[i].to) {
				t.Errorf("%s and %s ran the unit at once: %v–%v and %v–%v", who[i], who[j],
					all[i].from.Format("15:04:05.000"), all[i].to.Format("15:04:05.000"), all[j].from.Format("15:04:05.000"), all[j].to.Format("15:04:05.000"))
			}
		}
	}
}

func TestOneHostRunsAFleetUnit(t *testing.T) {
	c := etcdtest.Start(t, 3)
	var hosts []*host
	for _, n := range []string{"a", "b", "c"} {
		hosts = append(hosts, newHost(t, n, c.Endpoints()))
	}
	r := runner(t, hosts, 10*time.Second)
	for _, h := range hosts {
		hd := h.p.Holds()["u"]
		if (h == r) != hd.Held {
			t.Errorf("%s: held = %v, want %v", h.name, hd.Held, h == r)
		}
		if h != r && hd.Note != "running on "+r.name {
			t.Errorf("%s: note %q, want running on %s", h.name, hd.Note, r.name)
		}
	}

	// The holder stops (its daemon ends): another takes over at once.
	r.stop()
	var rest []*host
	for _, h := range hosts {
		if h != r {
			rest = append(rest, h)
		}
	}
	runner(t, rest, ttl)
	noOverlap(t, hosts)
}

func TestPartitionedHolderGivesUpBeforeAnotherTakesOver(t *testing.T) {
	c := etcdtest.Start(t, 3)
	var proxies []*proxytest.Proxy
	var via []string
	for _, m := range c.Members {
		p := proxytest.Start(t, m.ClientURL[len("http://"):])
		proxies = append(proxies, p)
		via = append(via, p.URL())
	}
	a := newHost(t, "a", via)
	waitFor(t, 10*time.Second, "a runs the unit", a.isRunning)
	b := newHost(t, "b", c.Endpoints())
	runner(t, []*host{a, b}, 10*time.Second)

	cut := time.Now()
	for _, p := range proxies {
		p.Cut()
	}
	waitFor(t, ttl, "a gives the unit up", func() bool { return !a.isRunning() })
	gaveUp := time.Since(cut)
	waitFor(t, 3*ttl, "b runs the unit", b.isRunning)
	tookOver := time.Since(cut)
	t.Logf("a gave the unit up %v after the cut; b ran it %v after", gaveUp.Round(time.Millisecond), tookOver.Round(time.Millisecond))
	if gaveUp >= ttl {
		t.Errorf("a gave up %v after the cut, not within the lease TTL %v", gaveUp, ttl)
	}
	noOverlap(t, []*host{a, b})
	if p := a.p.Problem(); p == "" {
		t.Error("a reports no problem while cut from etcd")
	}

	// Mended: a comes back as a standby.
	for _, p := range proxies {
		p.Mend()
	}
	waitFor(t, 10*time.Second, "a sees b as the holder again", func() bool {
		hd := a.p.Holds()["u"]
		return a.p.Problem() == "" && hd.Holder == "b" && !hd.Held
	})
	noOverlap(t, []*host{a, b})
}

func TestMoveHandsTheUnitToTheNamedHost(t *testing.T) {
	c := etcdtest.Start(t, 3)
	hosts := []*host{newHost(t, "a", c.Endpoints()), newHost(t, "b", c.Endpoints()), newHost(t, "c", c.Endpoints())}
	r := runner(t, hosts, 10*time.Second)
	// To the host last in line, whichever it is.
	var to *host
	for _, h := range hosts {
		if h != r {
			to = h
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A host that has just started may not campaign yet: the move says so
	// (ErrNotCandidate) until it does.
	for {
		err := r.p.Move(ctx, "u", to.name)
		if err == nil {
			break
		}
		if !errors.Is(err, placement.ErrNotCandidate) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // polling etcd for the candidate
	}
	if got := runner(t, hosts, 5*time.Second); got != to {
		t.Fatalf("after the move %s runs the unit, want %s", got.name, to.name)
	}
	noOverlap(t, hosts)

	err := r.p.Move(ctx, "u", "nowhere")
	if !errors.Is(err, placement.ErrNotCandidate) {
		t.Errorf("move to a host that does not run the unit: %v, want ErrNotCandidate", err)
	}
}

func TestOneEtcdMemberDownChangesNothing(t *testing.T) {
	c := etcdtest.Start(t, 3)
	hosts := []*host{newHost(t, "a", c.Endpoints()), newHost(t, "b", c.Endpoints())}
	r := runner(t, hosts, 10*time.Second)
	c.Stop(0, true)
	// Watch for 3 lease TTLs: the holder keeps the unit throughout.
	deadline := time.After(3 * ttl)
	for {
		select {
		case <-r.changed:
			if !r.isRunning() {
				t.Fatalf("%s gave the unit up after one etcd member of three was killed", r.name)
			}
			continue
		case <-deadline:
		}
		break
	}
	if got := runner(t, hosts, time.Second); got != r {
		t.Fatalf("%s runs the unit, want %s still", got.name, r.name)
	}
	noOverlap(t, hosts)
}

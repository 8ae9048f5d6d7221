package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opsvc/opsvc/config"
)

// Grant is the answer to a request for a session lease.
type Grant struct {
	Granted bool
	LeaseID string
	Reason  string // why not, when not granted
	RetryMS int64  // when to ask again, when not granted
	// BudgetLeftUSD is what the unit may still spend today under the daily
	// budgets; negative when neither limits it.
	BudgetLeftUSD float64
}

// Leases are the session leases of the whole fleet, kept in etcd under
// PREFIX/sessions/ and PREFIX/budget/:
//
//   - max_concurrent_sessions is a semaphore: each running session holds a
//     key PREFIX/sessions/active/NODE/ID put with its host's lease, so a host
//     that dies frees its slots when its lease expires;
//   - max_sessions_per_minute is a window of the grant times of the last
//     minute, in one key;
//   - the daily budgets are counters, PREFIX/budget/DAY/total and
//     PREFIX/budget/DAY/unit/UNIT, raised when a session ends.
//
// Every grant and every booking is one transaction that holds only if the
// keys it decided on did not change since it read them; otherwise it reads
// again. A session never starts without a grant, and none is granted while
// etcd does not answer. Each call blocks on the network: make it off any loop.
type Leases struct {
	c *Client

	flushMu sync.Mutex // one flush at a time: a call waits for the check's

	mu      sync.Mutex
	pending []booking // releases not yet done (etcd did not answer)
	stale   []string  // markers of done releases, deleted by the next one
}

// booking is a release to do: a session's slot to end and its cost to book.
type booking struct {
	unit string
	id   string
	day  string
	usd  float64
}

// maxPending bounds the releases kept while etcd does not answer.
const maxPending = 10000

// NewLeases returns the fleet's session leases through c.
func NewLeases(c *Client) *Leases {
	l := &Leases{c: c}
	c.afterCheck(func(ctx context.Context) {
		l.mu.Lock()
		n := len(l.pending)
		l.mu.Unlock()
		if n > 0 {
			l.flush(ctx)
		}
	})
	return l
}

func (l *Leases) genKey() string             { return l.c.Key("sessions", "gen") }
func (l *Leases) startsKey() string          { return l.c.Key("sessions", "starts") }
func (l *Leases) activePrefix() string       { return l.c.Key("sessions", "active") + "/" }
func (l *Leases) totalKey(day string) string { return l.c.Key("budget", day, "total") }
func (l *Leases) unitKey(day, unit string) string {
	return l.c.Key("budget", day, "unit", unit)
}

// activeSlot is the value of an active session's key.
type activeSlot struct {
	Node    string    `json:"node"`
	Unit    string    `json:"unit"`
	ChainID string    `json:"chain_id,omitempty"`
	Granted time.Time `json:"granted"`
}

// Acquire asks for a session lease for unit under s. It returns a refusal,
// not an error, when a limit is reached or etcd does not answer.
func (l *Leases) Acquire(ctx context.Context, s config.OrchestratorSettings, unit, chainID string) Grant {
	if err := l.c.Reachable(); err != nil {
		return unreachable(err)
	}
	l.flush(ctx)
	sess, err := l.c.Session(ctx)
	if err != nil {
		return unreachable(err)
	}
	id := l.c.node + "/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64()&0xffffff, 16)
	for attempt := 0; ; attempt++ {
		var (
			g    Grant
			done bool
		)
		err := l.retry(ctx, func() (err error) {
			g, done, err = l.tryAcquire(ctx, s, unit, chainID, id, sess.Lease())
			return err
		})
		if err != nil {
			l.c.setHealth(err)
			return unreachable(err)
		}
		if done {
			return g
		}
		if attempt > 100 || ctx.Err() != nil {
			return Grant{Reason: "other hosts kept taking session slots at the same moment", RetryMS: 100}
		}
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt+1, 20)))))
	}
}

func unreachable(err error) Grant {
	return Grant{Reason: fmt.Sprintf("no session starts while etcd does not answer (%v)", err), RetryMS: 1000}
}

func (l *Leases) tryAcquire(ctx context.Context, s config.OrchestratorSettings, unit, chainID, id string, lease clientv3.LeaseID) (Grant, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, l.c.Timeout())
	defer cancel()
	now := time.Now()
	day := now.UTC().Format("2006-01-02")
	resp, err := l.c.cli.Txn(cctx).Then(
		clientv3.OpGet(l.activePrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(l.startsKey()),
		clientv3.OpGet(l.genKey()),
		clientv3.OpGet(l.totalKey(day)),
		clientv3.OpGet(l.unitKey(day, unit)),
		clientv3.OpGet(l.activePrefix()+id),
	).Commit()
	if err != nil {
		return Grant{}, false, err
	}
	// An earlier try whose answer was lost may have taken the slot already.
	taken := len(resp.Responses[5].GetResponseRange().Kvs) > 0
	active := resp.Responses[0].GetResponseRange().Count
	startsKV := resp.Responses[1].GetResponseRange().Kvs
	genKV := resp.Responses[2].GetResponseRange().Kvs
	spent := floatOf(resp.Responses[3].GetResponseRange().Kvs)
	byUnit := floatOf(resp.Responses[4].GetResponseRange().Kvs)

	var starts []int64
	var startsRev, genRev int64
	if len(startsKV) > 0 {
		startsRev = startsKV[0].ModRevision
		_ = json.Unmarshal(startsKV[0].Value, &starts)
	}
	if len(genKV) > 0 {
		genRev = genKV[0].ModRevision
	}
	keep := starts[:0]
	for _, t := range starts {
		if now.Sub(time.Unix(0, t)) < time.Minute {
			keep = append(keep, t)
		}
	}
	starts = keep

	switch {
	case taken:
	case s.GlobalBudgetUSD > 0 && spent >= s.GlobalBudgetUSD:
		return Grant{Reason: fmt.Sprintf("global_budget_usd %.2f spent today across the fleet", s.GlobalBudgetUSD), RetryMS: untilTomorrow(now)}, true, nil
	case s.PerWorkerBudgetUSD > 0 && byUnit >= s.PerWorkerBudgetUSD:
		return Grant{Reason: fmt.Sprintf("per_worker_budget_usd %.2f spent today by %s across the fleet", s.PerWorkerBudgetUSD, unit), RetryMS: untilTomorrow(now)}, true, nil
	case s.MaxConcurrentSessions > 0 && active >= int64(s.MaxConcurrentSessions):
		return Grant{Reason: fmt.Sprintf("max_concurrent_sessions (%d) running across the fleet", s.MaxConcurrentSessions), RetryMS: 250}, true, nil
	case s.MaxSessionsPerMinute > 0 && len(starts) >= s.MaxSessionsPerMinute:
		wait := time.Minute - now.Sub(time.Unix(0, starts[len(starts)-s.MaxSessionsPerMinute]))
		return Grant{Reason: fmt.Sprintf("max_sessions_per_minute (%d) reached across the fleet", s.MaxSessionsPerMinute), RetryMS: wait.Milliseconds() + 1}, true, nil
	}
	g := Grant{Granted: true, LeaseID: id, BudgetLeftUSD: -1}
	if s.GlobalBudgetUSD > 0 {
		g.BudgetLeftUSD = s.GlobalBudgetUSD - spent
	}
	if s.PerWorkerBudgetUSD > 0 && (g.BudgetLeftUSD < 0 || s.PerWorkerBudgetUSD-byUnit < g.BudgetLeftUSD) {
		g.BudgetLeftUSD = s.PerWorkerBudgetUSD - byUnit
	}
	if taken {
		return g, true, nil
	}
	starts = append(starts, now.UnixNano())
	if s.MaxSessionsPerMinute > 0 && len(starts) > s.MaxSessionsPerMinute {
		starts = starts[len(starts)-s.MaxSessionsPerMinute:]
	}
	startsData, _ := json.Marshal(starts)
	slot, _ := json.Marshal(activeSlot{Node: l.c.node, Unit: unit, ChainID: chainID, Granted: now.UTC()})
	put, err := l.c.cli.Txn(cctx).If(
		clientv3.Compare(clientv3.ModRevision(l.genKey()), "=", genRev),
		clientv3.Compare(clientv3.ModRevision(l.startsKey()), "=", startsRev),
		clientv3.Compare(clientv3.CreateRevision(l.activePrefix()+id), "=", 0),
	).Then(
		clientv3.OpPut(l.genKey(), ""),
		clientv3.OpPut(l.startsKey(), string(startsData)),
		clientv3.OpPut(l.activePrefix()+id, string(slot), clientv3.WithLease(lease)),
	).Commit()
	if err != nil {
		return Grant{}, false, err
	}
	if !put.Succeeded {
		return Grant{}, false, nil
	}
	return g, true, nil
}

func floatOf(kvs []*kvT) float64 {
	if len(kvs) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(string(kvs[0].Value), 64)
	return v
}

func untilTomorrow(now time.Time) int64 {
	u := now.UTC()
	next := time.Date(u.Year(), u.Month(), u.Day()+1, 0, 0, 0, 0, time.UTC)
	return next.Sub(u).Milliseconds()
}

// Release ends the lease id of unit and books its cost to today's budgets,
// in one transaction: no other host sees the slot free before the cost is
// booked. When etcd does not answer, the release is kept and done by a later
// call or by the client's next check that etcd answers: the slot frees then
// (or when this host's lease expires), and the cost is booked exactly once.
func (l *Leases) Release(ctx context.Context, unit, id string, costUSD float64) error {
	if strings.Contains(id, "..") || !strings.HasPrefix(id, l.c.node+"/") {
		return fmt.Errorf("opsvc: release session lease: no lease %q on this host (release only what session.acquire granted)", id)
	}
	b := booking{unit: unit, id: id, day: time.Now().UTC().Format("2006-01-02"), usd: costUSD}
	if err := l.retry(ctx, func() error { return l.release(ctx, b) }); err != nil {
		l.keep(b)
		l.c.setHealth(err)
		return fmt.Errorf("opsvc: release session lease: %w: %s (its slot frees and its cost is booked when etcd answers)", ErrUnreachable, why(err))
	}
	return l.flush(ctx)
}

// release ends b's slot and books its cost, once: the transaction that does
// it also puts a marker PREFIX/sessions/released/ID, so a try whose answer was
// lost is not done twice. The marker lives with this host's lease and is
// deleted by the next release. When the slot is gone already (this host's
// lease expired during an outage), the cost is booked alone.
func (l *Leases) release(ctx context.Context, b booking) error {
	sess, err := l.c.Session(ctx)
	if err != nil {
		return err
	}
	slot, marker := l.activePrefix()+b.id, l.c.Key("sessions", "released", b.id)
	tk, uk := l.totalKey(b.day), l.unitKey(b.day, b.unit)
	for {
		cctx, cancel := context.WithTimeout(ctx, l.c.Timeout())
		resp, err := l.c.cli.Txn(cctx).Then(clientv3.OpGet(tk), clientv3.OpGet(uk), clientv3.OpGet(slot), clientv3.OpGet(marker)).Commit()
		if err != nil {
			cancel()
			return err
		}
		tkv, ukv := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		skv, mkv := resp.Responses[2].GetResponseRange().Kvs, resp.Responses[3].GetResponseRange().Kvs
		if len(mkv) > 0 {
			cancel()
			l.released(marker, nil)
			return nil // an earlier try whose answer was lost did it all
		}
		l.mu.Lock()
		stale := l.stale
		l.mu.Unlock()
		cmp := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(tk), "=", modRev(tkv)),
			clientv3.Compare(clientv3.ModRevision(uk), "=", modRev(ukv)),
			clientv3.Compare(clientv3.ModRevision(slot), "=", modRev(skv)),
			clientv3.Compare(clientv3.CreateRevision(marker), "=", 0),
		}
		ops := []clientv3.Op{clientv3.OpPut(marker, "", clientv3.WithLease(sess.Lease()))}
		if b.usd != 0 {
			ops = append(ops,
				clientv3.OpPut(tk, strconv.FormatFloat(floatOf(tkv)+b.usd, 'g', -1, 64)),
				clientv3.OpPut(uk, strconv.FormatFloat(floatOf(ukv)+b.usd, 'g', -1, 64)))
		}
		if len(skv) > 0 {
			ops = append(ops, clientv3.OpDelete(slot), clientv3.OpPut(l.genKey(), ""))
		}
		for _, k := range stale {
			ops = append(ops, clientv3.OpDelete(k))
		}
		put, err := l.c.cli.Txn(cctx).If(cmp...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return err
		}
		if put.Succeeded {
			l.released(marker, stale)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// released records marker as the one the next release deletes, and that the
// markers in gone were deleted.
func (l *Leases) released(marker string, gone []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	left := l.stale[:0:0]
	for _, k := range l.stale {
		if !slices.Contains(gone, k) && k != marker {
			left = append(left, k)
		}
	}
	if len(left) < maxPending {
		left = append(left, marker)
	}
	l.stale = left
}

// keep holds a cost for booking later.
func (l *Leases) keep(b booking) {
	l.mu.Lock()
	if len(l.pending) < maxPending {
		l.pending = append(l.pending, b)
	}
	l.mu.Unlock()
}

// retry runs f again while it fails because a member went away or did not
// answer in time (another member or a new leader answers the next call),
// within ctx and one dial_timeout from the first failure.
func (l *Leases) retry(ctx context.Context, f func() error) error {
	var (
		err   error
		until time.Time
	)
	for i := 0; ; i++ {
		if err = f(); err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if i == 0 {
			until = time.Now().Add(l.c.Timeout())
		}
		if i == 8 || time.Now().After(until) {
			return err
		}
		time.Sleep(time.Duration(50*(i+1)) * time.Millisecond)
	}
}

// transient reports whether err is a lost connection to one member or a
// call without an answer in time (a leader election): trying again is safe,
// as every write holds only if what it read did not change.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ee rpctypes.EtcdError // what the client makes of a server's answer, e.g. "leader changed"
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded)
}

// ReleaseUnit drops every lease of unit on this host (its worker is gone).
func (l *Leases) ReleaseUnit(ctx context.Context, unit string) error {
	cctx, cancel := context.WithTimeout(ctx, l.c.Timeout())
	defer cancel()
	resp, err := l.c.cli.Get(cctx, l.activePrefix()+l.c.node+"/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		var a activeSlot
		if json.Unmarshal(kv.Value, &a) == nil && a.Unit == unit {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err = l.c.cli.Txn(cctx).Then(append(ops, clientv3.OpPut(l.genKey(), ""))...).Commit()
	return err
}

// flush does the pending releases; what cannot be done now stays pending.
func (l *Leases) flush(ctx context.Context) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	todo := l.pending
	l.pending = nil
	l.mu.Unlock()
	for i, b := range todo {
		if err := l.retry(ctx, func() error { return l.release(ctx, b) }); err != nil {
			l.mu.Lock()
			l.pending = append(todo[i:], l.pending...)
			l.mu.Unlock()
			return fmt.Errorf("opsvc: release a session lease: %w: %s (it is done when etcd answers)", ErrUnreachable, why(err))
		}
	}
	return nil
}

func modRev(kvs []*kvT) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

// Spent returns what the fleet spent today, in all and by unit.
func (l *Leases) Spent(ctx context.Context) (total float64, byUnit map[string]float64, err error) {
	day := time.Now().UTC().Format("2006-01-02")
	cctx, cancel := context.WithTimeout(ctx, l.c.Timeout())
	defer cancel()
	resp, err := l.c.cli.Get(cctx, l.c.Key("budget", day)+"/", clientv3.WithPrefix())
	if err != nil {
		return 0, nil, err
	}
	byUnit = map[string]float64{}
	unitPrefix := l.unitKey(day, "")
	for _, kv := range resp.Kvs {
		v, _ := strconv.ParseFloat(string(kv.Value), 64)
		switch k := string(kv.Key); {
		case k == l.totalKey(day):
			total = v
		case strings.HasPrefix(k, unitPrefix):
			byUnit[strings.TrimPrefix(k, unitPrefix)] = v
		}
	}
	return total, byUnit, nil
}

// Active counts the sessions running across the fleet.
func (l *Leases) Active(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, l.c.Timeout())
	defer cancel()
	resp, err := l.c.cli.Get(cctx, l.activePrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

type kvT = mvccpb.KeyValue

// Reachable reports whether etcd answered the last check (see Client.Reachable).
func (l *Leases) Reachable() error { return l.c.Reachable() }

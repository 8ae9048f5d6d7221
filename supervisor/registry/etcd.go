package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/opsvc/opsvc/cluster/placement"
	rec "github.com/opsvc/opsvc/worker/chain"
)

// EtcdOptions configure an EtcdStore.
type EtcdOptions struct {
	// Client is the connection to the fleet's etcd.
	Client *clientv3.Client
	// Prefix is the fleet's key prefix ("/opsvc"): chains are kept under
	// PREFIX/chains/ID, archived ones under PREFIX/archive/ID.
	Prefix string
	// Node is this daemon's name in the fleet: chains it creates record it as
	// their host, and InterruptOrphans touches only its chains.
	Node string
	// ArchiveCap is how many chains the fleet keeps under PREFIX/chains/
	// (see Options.ArchiveCap).
	ArchiveCap int
	// Timeout bounds each call to etcd; 0 means 5s.
	Timeout time.Duration
	// NewID makes chain ids; nil means NewChainID.
	NewID func(now time.Time) string
	// WriteFault, if set, is told of each failed change (nil after one that
	// succeeded), as Options.WriteFault.
	WriteFault func(error)
}

// maxArchivePerUpdate bounds the chains one Update moves to the archive, so
// that its transaction stays well within etcd's limit on operations (128 by
// default); the next Updates move the rest.
const maxArchivePerUpdate = 32

// maxAttempts bounds how often Update runs fn again after another writer
// came first.
const maxAttempts = 200

// EtcdStore is the registry of a fleet, kept in etcd: each chain one key.
// Every Update reads the chains, runs fn, and writes what fn changed in one
// transaction that holds only if none of the keys it writes changed since
// they were read (compare-and-swap on their mod revisions); otherwise it
// reads again and runs fn again. So the daemons of every host may update it
// at once and no update is lost. It is safe for concurrent use.
type EtcdStore struct {
	cli        *clientv3.Client
	prefix     string
	chains     string // PREFIX/chains/
	archive    string // PREFIX/archive/
	node       string
	archiveCap int
	timeout    time.Duration
	newID      func(time.Time) string
	writeFault func(error)
}

var _ Backend = (*EtcdStore)(nil)

// OpenEtcd returns the registry kept in etcd under opts.Prefix. It reads nothing yet.
func OpenEtcd(opts EtcdOptions) (*EtcdStore, error) {
	if opts.Client == nil {
		return nil, errors.New("registry: open in etcd: no etcd client (set [cluster] etcd in opsvc.toml)")
	}
	prefix := strings.TrimSuffix(opts.Prefix, "/")
	s := &EtcdStore{
		cli:        opts.Client,
		prefix:     prefix,
		chains:     prefix + "/chains/",
		archive:    prefix + "/archive/",
		node:       opts.Node,
		archiveCap: opts.ArchiveCap,
		timeout:    opts.Timeout,
		newID:      opts.NewID,
		writeFault: opts.WriteFault,
	}
	if s.archiveCap == 0 {
		s.archiveCap = DefaultArchiveCap
	}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	return s, nil
}

// Node returns the host name chains created through s record.
func (s *EtcdStore) Node() string { return s.node }

// read is the registry as etcd holds it at one revision, and what each chain
// was stored as.
type read struct {
	r      *Registry
	stored map[string]storedChain // by chain id
	// keys is the placement's election keys at the same revision, when
	// they were asked for.
	keys placement.Keys
}

type storedChain struct {
	data   []byte
	modRev int64
}

func (s *EtcdStore) read(ctx context.Context, withKeys bool) (read, error) {
	ops := []clientv3.Op{clientv3.OpGet(s.chains, clientv3.WithPrefix())}
	if withKeys {
		ops = append(ops, clientv3.OpGet(placement.Dir(s.prefix), clientv3.WithPrefix()))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return read{}, fmt.Errorf("registry: read chains from etcd: %w", err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	// The order of creation: a chain's key is created once.
	slices.SortStableFunc(kvs, func(a, b *kvT) int { return cmpInt64(a.CreateRevision, b.CreateRevision) })
	out := read{r: &Registry{NewID: s.newID, Host: s.node}, stored: make(map[string]storedChain, len(kvs))}
	var bad []error
	for _, kv := range kvs {
		var c Chain
		if err := json.Unmarshal(kv.Value, &c); err != nil || c.ID == "" {
			// One bad key does not hide the others; it is left as it is.
			bad = append(bad, fmt.Errorf("%s: %v", kv.Key, errOr(err, "no id")))
			continue
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		out.r.Chains = append(out.r.Chains, &c)
		out.stored[c.ID] = storedChain{data: kv.Value, modRev: kv.ModRevision}
	}
	if len(bad) > 0 && len(out.r.Chains) == 0 && len(kvs) > 0 {
		return read{}, fmt.Errorf("%w: %w", ErrCorrupt, errors.Join(bad...))
	}
	if withKeys {
		out.keys = placement.KeysFrom(s.prefix, resp.Responses[1].GetResponseRange().Kvs)
	}
	return out, nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Update runs fn on the fleet's registry and stores what it changed (see
// EtcdStore). fn runs again, on a fresh read, when another writer changed a
// chain fn changed in the meantime.
func (s *EtcdStore) Update(fn func(*Registry) error) error {
	return s.updateWith(false, func(r *Registry, _ placement.Keys) error { return fn(r) })
}

// updateWith is Update, with the placement's election keys read at the
// same revision as the chains, when withKeys: then a running chain of
// another host that has lost its fleet unit to this host is lost (see
// Registry.Lost), and a change that counts on it holds only while this host
// still holds the unit.
func (s *EtcdStore) updateWith(withKeys bool, fn func(*Registry, placement.Keys) error) error {
	err := s.update(withKeys, fn)
	if s.writeFault != nil && !isFnError(err) {
		s.writeFault(err)
	}
	return unwrapFn(err)
}

// fnError marks fn's own error, which is returned as is.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func isFnError(err error) bool { var fe fnError; return errors.As(err, &fe) }

func unwrapFn(err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

func (s *EtcdStore) update(withKeys bool, fn func(*Registry, placement.Keys) error) error {
	for attempt := 0; ; attempt++ {
		ok, err := s.try(withKeys, fn)
		if err != nil || ok {
			return err
		}
		if attempt+1 >= maxAttempts {
			return fmt.Errorf("registry: other hosts kept changing the same chains; gave up after %d tries (try again)", maxAttempts)
		}
		// Another writer came first: back off a little, at random, so that
		// writers that collided do not collide again.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt+1, 20)))))
	}
}

// try makes one attempt: it reports false when another writer came first.
func (s *EtcdStore) try(withKeys bool, fn func(*Registry, placement.Keys) error) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rd, err := s.read(ctx, withKeys)
	if err != nil {
		return false, err
	}
	r := rd.r
	// The holds of this host that a lost chain was judged by: the change
	// holds only if they are still this host's.
	fences := map[string]int64{}
	if withKeys {
		r.Lost = func(c *Chain) bool {
			if c.Host == s.node || c.Hold == "" || rd.keys.Live(c.Hold, c.HoldRev) {
				return false
			}
			h, ok := rd.keys.Holder(c.Unit)
			if !ok || h.Node != s.node {
				return false
			}
			fences[h.Key] = h.Rev
			return true
		}
	}
	if err := fn(r, rd.keys); err != nil {
		return false, fnError{err}
	}
	archived := r.Archive(s.archiveCap)
	if len(archived) > maxArchivePerUpdate {
		for i := range archived[maxArchivePerUpdate:] {
			c := archived[maxArchivePerUpdate+i]
			r.Chains = append(r.Chains, &c) // unchanged: kept for a later Update
		}
		archived = archived[:maxArchivePerUpdate]
	}

	var (
		cmps []clientv3.Cmp
		ops  []clientv3.Op
	)
	touched := make(map[string]bool)
	keep := make(map[string]bool, len(r.Chains))
	for _, c := range r.Chains {
		if c == nil {
			continue
		}
		keep[c.ID] = true
		old, existed := rd.stored[c.ID]
		if !existed && c.Host == "" {
			c.Host = s.node
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		data, err := json.Marshal(c)
		if err != nil {
			return false, fmt.Errorf("registry: encode chain %s: %w", c.ID, err)
		}
		switch {
		case !existed:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.chains+c.ID), "=", 0))
			ops = append(ops, clientv3.OpPut(s.chains+c.ID, string(data)))
			// A chain resumed by two hosts at once: both touch the chain
			// they resume, so one of them tries again.
			if p, ok := rd.stored[c.RestartedFrom]; ok && !touched[c.RestartedFrom] {
				touched[c.RestartedFrom] = true
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.chains+c.RestartedFrom), "=", p.modRev))
			}
		case !bytes.Equal(old.data, data):
			touched[c.ID] = true
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.chains+c.ID), "=", old.modRev))
			ops = append(ops, clientv3.OpPut(s.chains+c.ID, string(data)))
		}
	}
	// A resumed chain that did not change is written again as it was, so
	// that its mod revision moves and a concurrent resume of it conflicts.
	for id := range touched {
		if !keep[id] {
			continue
		}
		if c := r.Find(id); c != nil && bytes.Equal(mustJSON(c), rd.stored[id].data) {
			ops = append(ops, clientv3.OpPut(s.chains+id, string(rd.stored[id].data)))
		}
	}
	archivedIDs := make(map[string]bool, len(archived))
	for i := range archived {
		c := &archived[i]
		archivedIDs[c.ID] = true
		data, err := json.Marshal(c)
		if err != nil {
			return false, fmt.Errorf("registry: encode chain %s: %w", c.ID, err)
		}
		ops = append(ops, clientv3.OpPut(s.archive+c.ID, string(data)))
	}
	for id, old := range rd.stored {
		if keep[id] {
			continue
		}
		// Archived, or dropped by fn: it goes only if nobody changed it since.
		if !touched[id] {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.chains+id), "=", old.modRev))
		}
		ops = append(ops, clientv3.OpDelete(s.chains+id))
	}
	if len(ops) == 0 {
		return true, nil
	}
	for key, rev := range fences {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", rev))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("registry: write chains to etcd: %w", err)
	}
	return resp.Succeeded, nil
}

func mustJSON(c *Chain) []byte {
	data, _ := json.Marshal(c)
	return data
}

// View runs fn on the fleet's registry as etcd holds it now; changes fn
// makes are not stored.
func (s *EtcdStore) View(fn func(*Registry) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rd, err := s.read(ctx, false)
	if err != nil {
		return err
	}
	return fn(rd.r)
}

// ReadArchive returns the archived chains, oldest archived first.
func (s *EtcdStore) ReadArchive() ([]Chain, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.archive, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: read the archive from etcd: %w", err)
	}
	kvs := resp.Kvs
	slices.SortStableFunc(kvs, func(a, b *kvT) int { return cmpInt64(a.CreateRevision, b.CreateRevision) })
	var (
		out  []Chain
		errs []error
	)
	for _, kv := range kvs {
		var c Chain
		if err := json.Unmarshal(kv.Value, &c); err != nil || c.ID == "" {
			errs = append(errs, fmt.Errorf("%s: %v", kv.Key, errOr(err, "no id")))
			continue
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		out = append(out, c)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%w: %w (those keys are skipped and left as they are)", ErrCorrupt, errors.Join(errs...))
	}
	return out, nil
}

// BeginChain starts a chain of unit as p asks (see Registry.Begin). A chain of a fleet unit this
// host holds records the hold (Chain.Hold). With p.Resume, a chain of the unit that another host
// still marks running is resumed too once that host has lost the unit to this one (its hold is
// gone): exactly once across the fleet, as every resume is a compare-and-swap on the chain resumed.
func (s *EtcdStore) BeginChain(unit string, p rec.Begin, now time.Time) (rec.Begun, error) {
	var out rec.Begun
	err := s.updateWith(true, func(r *Registry, keys placement.Keys) error {
		var err error
		out, err = r.Begin(unit, p, now)
		if err != nil {
			return err
		}
		if c := r.Find(out.ID); c != nil && c.Host == "" { // made just now
			if h, ok := keys.Holder(unit); ok && h.Node == s.node {
				c.Hold, c.HoldRev = h.Key, h.Rev
			}
		}
		return nil
	})
	return out, err
}

// RecordSession records a session of one of unit's chains (see Registry.RecordFor).
func (s *EtcdStore) RecordSession(unit string, p rec.RecordSession, now time.Time) (rec.Totals, error) {
	var out rec.Totals
	err := s.Update(func(r *Registry) error {
		var err error
		out, err = r.RecordFor(unit, p, now)
		return err
	})
	return out, err
}

// FinishChain gives one of unit's chains its final status, or interrupted (see Registry.FinishFor).
func (s *EtcdStore) FinishChain(unit string, p rec.Finish, now time.Time) (rec.Totals, error) {
	var out rec.Totals
	err := s.Update(func(r *Registry) error {
		var err error
		out, err = r.FinishFor(unit, p, now)
		return err
	})
	return out, err
}

// InterruptOrphans marks interrupted the running chains of unit ("" for all) that this host ran
// and that started before before; other hosts' chains are theirs to end.
func (s *EtcdStore) InterruptOrphans(unit string, before time.Time, reason string, now time.Time) ([]string, error) {
	var ids []string
	err := s.Update(func(r *Registry) error {
		ids = nil
		mine := &Registry{NewID: r.NewID, Host: r.Host}
		for _, c := range r.Chains {
			if c.Host == s.node {
				mine.Chains = append(mine.Chains, c)
			}
		}
		for _, c := range mine.InterruptOrphans(unit, before, reason, now) {
			ids = append(ids, c.ID)
		}
		return nil
	})
	return ids, err
}

type kvT = mvccpb.KeyValue

package placement

import (
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Dir is the directory of the fleet's election keys under prefix: each
// host campaigning for UNIT holds the key Dir(prefix)+UNIT+"/"+LEASE.
func Dir(prefix string) string { return strings.TrimSuffix(prefix, "/") + "/placement/" }

// Key is one host's key in a unit's election.
type Key struct {
	Key  string // PREFIX/placement/UNIT/LEASE
	Rev  int64  // its create revision: the oldest key of a unit holds it
	Node string // the host that campaigns with it
}

// Keys is the election keys of a fleet as etcd held them at one revision:
// who held each fleet unit, and which keys lived.
type Keys struct {
	cands map[string][]candidate // by unit, oldest first
	live  map[string]int64       // key -> create revision
}

// KeysFrom reads the election keys among kvs, the keys under Dir(prefix)
// read at one revision.
func KeysFrom(prefix string, kvs []*mvccpb.KeyValue) Keys {
	v := newView()
	k := Keys{live: make(map[string]int64, len(kvs))}
	dir := Dir(prefix)
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), dir) {
			v.applyLocked(kv, false, dir, "\x00")
			k.live[string(kv.Key)] = kv.CreateRevision
		}
	}
	k.cands = v.cands
	return k
}

// Holder returns the key of the host that held unit, if any.
func (k Keys) Holder(unit string) (Key, bool) {
	cs := k.cands[unit]
	if len(cs) == 0 {
		return Key{}, false
	}
	return Key{Key: cs[0].key, Rev: cs[0].rev, Node: cs[0].Node}, true
}

// Live says whether key lived, as created at rev: a key that was deleted
// and made again (a host that gave a unit up and campaigned again with the
// same lease) is another key.
func (k Keys) Live(key string, rev int64) bool {
	r, ok := k.live[key]
	return ok && r == rev
}

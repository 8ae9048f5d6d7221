package registry

import (
	"time"

	rec "github.com/opsvc/opsvc/worker/chain"
)

// Backend is where the registry is kept: *Store, the file of one host, or a
// store shared by the hosts of a fleet (package cluster's etcd registry). Its
// callers see no difference: every Update is atomic and no update is lost,
// whichever process or host makes it.
type Backend interface {
	// Update runs fn on the registry and stores what it changed, atomically;
	// if fn returns an error nothing is stored. fn may run more than once (a
	// shared store runs it again when another writer came first), so it must
	// only change the registry it is given.
	Update(fn func(*Registry) error) error
	// View runs fn on the registry; changes fn makes are not stored.
	View(fn func(*Registry) error) error
	// ReadArchive returns the archived chains, oldest first.
	ReadArchive() ([]Chain, error)
	// BeginChain, RecordSession and FinishChain answer an orchestrator
	// worker's requests (see Store.BeginChain).
	BeginChain(unit string, p rec.Begin, now time.Time) (rec.Begun, error)
	RecordSession(unit string, p rec.RecordSession, now time.Time) (rec.Totals, error)
	FinishChain(unit string, p rec.Finish, now time.Time) (rec.Totals, error)
	// InterruptOrphans marks interrupted the running chains of unit ("" for
	// all) that started before before and that this host ran.
	InterruptOrphans(unit string, before time.Time, reason string, now time.Time) ([]string, error)
}

var _ Backend = (*Store)(nil)

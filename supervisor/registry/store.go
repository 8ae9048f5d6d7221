package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/opsvc/opsvc/config/atomicfile"
)

// File names inside the state directory.
const (
	FileName    = "registry.json"          // the registry
	LockName    = "registry.lock"          // sidecar lock file (the data file's inode changes on every write)
	ArchiveName = "registry-archive.jsonl" // archived chains, one JSON object per line, append only
)

// Version is the registry.json schema version this package writes. It reads older versions too
// (see migrate), and refuses newer ones with a *VersionError, leaving the file as it is.
const Version = 2

// VersionError is the error about a registry.json written by a newer opsvc.
type VersionError struct {
	Path    string
	Version int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("registry: %s has schema version %d, newer than this opsvc's %d (run the opsvc that wrote it, or upgrade this one; the file is left as it is)", e.Path, e.Version, Version)
}

// DefaultArchiveCap is how many chains registry.json keeps when
// Options.ArchiveCap is 0.
const DefaultArchiveCap = 1000

const defaultMode fs.FileMode = 0o644

// ErrCorrupt is wrapped by the error returned when registry.json (or a line
// of the archive) cannot be read as a registry.
var ErrCorrupt = errors.New("registry: corrupt registry file")

// CorruptError reports a registry.json that could not be read. The file has
// been renamed to Aside (unless Aside is empty: the rename failed) and the
// next Update or View starts from an empty registry.
type CorruptError struct {
	Path  string // the registry file
	Aside string // where its content was kept; "" if it could not be moved
	Err   error  // what is wrong with it
}

func (e *CorruptError) Error() string {
	if e.Aside == "" {
		return fmt.Sprintf("registry: %s is corrupt (%v) and could not be moved aside (move it away by hand to start an empty registry)", e.Path, e.Err)
	}
	return fmt.Sprintf("registry: %s was corrupt (%v); kept it as %s and started an empty registry (repair it and move it back while opsvc is stopped to restore the chains)", e.Path, e.Err, e.Aside)
}

// Unwrap returns ErrCorrupt and the cause.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// Options configure a Store.
type Options struct {
	// ArchiveCap is how many chains registry.json keeps; finished chains
	// beyond it (oldest first) move to registry-archive.jsonl. 0 means
	// DefaultArchiveCap; a negative value never archives.
	ArchiveCap int
	// Now is the clock used to name a corrupt file kept aside; nil means time.Now.
	Now func() time.Time
	// NewID makes chain ids (Registry.NewID); nil means NewChainID.
	NewID func(now time.Time) string
	// WriteFault, if set, is called after every write of the registry or its archive: with
	// the error when it failed (a full disk, say), with nil when it succeeded. The daemon
	// passes it on to the bus, which reports the first failure and the recovery.
	WriteFault func(error)
}

// Store is the registry of one state directory. Every Update is a
// read-modify-write under an exclusive flock on the sidecar lock file, so many
// Stores, in one process or many, may share a directory without losing an
// update. A Store holds no open file between calls and is safe for
// concurrent use.
type Store struct {
	dir        string
	path       string
	lockPath   string
	archiveCap int
	now        func() time.Time
	newID      func(time.Time) string
	writeFault func(error)

	// cache maps a chain's line in registry.json, as last read or written,
	// to its decoded chain: most lines are unchanged between updates, and
	// decoding them again is most of an update's cost. Callers get copies.
	mu    sync.Mutex
	cache map[string]*Chain
	byID  map[string]string // chain id → its cached line
}

// Open returns the Store of the state directory dir, creating the directory
// if needed. It reads nothing yet.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("registry: open: empty state directory (set --state or OPSVC_STATE)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", dir, err)
	}
	s := &Store{
		dir:        dir,
		path:       filepath.Join(dir, FileName),
		lockPath:   filepath.Join(dir, LockName),
		archiveCap: opts.ArchiveCap,
		now:        opts.Now,
		newID:      opts.NewID,
		writeFault: opts.WriteFault,
	}
	if s.archiveCap == 0 {
		s.archiveCap = DefaultArchiveCap
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the path of registry.json.
func (s *Store) Path() string { return s.path }

func (s *Store) lock() *flock.Flock {
	// A fresh Flock (and so a fresh file description) per call: flock locks
	// belong to the open file, so goroutines of one process exclude each
	// other exactly as processes do.
	return flock.New(s.lockPath, flock.SetPermissions(defaultMode))
}

// Update runs fn on the registry under the exclusive lock and writes the
// result back (temp file, fsync, rename, fsync of the directory), archiving
// finished chains beyond the cap first. The lock is held across the read, fn
// and the write, so concurrent updates from any process are serialised and
// none is lost. If fn returns an error nothing is written and that error is
// returned. fn must not keep the registry or its chains after it returns.
func (s *Store) Update(fn func(*Registry) error) error {
	lk := s.lock()
	if err := lk.Lock(); err != nil {
		return fmt.Errorf("registry: lock %s: %w", s.lockPath, err)
	}
	defer lk.Unlock()

	r, old, mode, err := s.read()
	if err != nil {
		return s.keepAsideIfCorrupt(err)
	}
	if err := fn(r); err != nil {
		return err
	}
	if archived := r.Archive(s.archiveCap); len(archived) > 0 {
		// The archive is appended and synced before registry.json drops the
		// chains: a crash in between leaves a chain in both, never in neither.
		if err := s.appendArchive(archived); err != nil {
			s.reportWrite(err)
			return err
		}
	}
	err = s.write(r, old, mode)
	s.reportWrite(err)
	return err
}

func (s *Store) reportWrite(err error) {
	if s.writeFault != nil {
		s.writeFault(err)
	}
}

// View runs fn on the registry under the shared lock; changes fn makes are
// not written. Many Views run at once; a View waits for a running Update.
func (s *Store) View(fn func(*Registry) error) error {
	lk := s.lock()
	if err := lk.RLock(); err != nil {
		return fmt.Errorf("registry: lock %s: %w", s.lockPath, err)
	}
	defer lk.Unlock()

	r, _, _, err := s.read()
	var bad *badData
	if errors.As(err, &bad) {
		// Moving the file aside is a change: do it under the exclusive
		// lock, after reading again (a writer may have replaced the file).
		if err := lk.Unlock(); err != nil {
			return fmt.Errorf("registry: unlock %s: %w", s.lockPath, err)
		}
		if err := lk.Lock(); err != nil {
			return fmt.Errorf("registry: lock %s: %w", s.lockPath, err)
		}
		r, _, _, err = s.read()
	}
	if err != nil {
		return s.keepAsideIfCorrupt(err)
	}
	return fn(r)
}

// badData is what read returns for a registry.json it cannot parse.
type badData struct{ err error }

func (b *badData) Error() string { return b.err.Error() }
func (b *badData) Unwrap() error { return b.err }

// fileFormat is the JSON shape of registry.json.
type fileFormat struct {
	Version *int     `json:"version"`
	Chains  []*Chain `json:"chains"`
}

// read loads registry.json. A missing or empty file is an empty registry;
// unreadable content is a *badData error. It returns the raw bytes (to skip
// writing an unchanged registry) and the file mode to keep.
func (s *Store) read() (*Registry, []byte, fs.FileMode, error) {
	r := &Registry{NewID: s.newID}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil, defaultMode, nil
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("registry: read %s: %w", s.path, err)
	}
	defer f.Close()
	mode := defaultMode
	if fi, err := f.Stat(); err == nil {
		mode = fi.Mode().Perm()
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("registry: read %s: %w", s.path, err)
	}
	chains, err := s.decodeCached(data)
	var newer *VersionError
	if errors.As(err, &newer) {
		newer.Path = s.path
		return nil, nil, 0, newer
	}
	if err != nil {
		return nil, nil, 0, &badData{err}
	}
	r.Chains = chains
	return r, data, mode, nil
}

// header is how write starts registry.json; lines follow, one chain each.
func header() string { return fmt.Sprintf("{\"version\":%d,\"chains\":[", Version) }

// decodeCached decodes registry.json as write lays it out, one chain per
// line, taking unchanged lines from the cache; anything else goes through
// decode.
func (s *Store) decodeCached(data []byte) ([]*Chain, error) {
	body, ok := bytes.CutPrefix(data, []byte(header()))
	if !ok {
		return decode(data)
	}
	body, ok = bytes.CutSuffix(body, []byte("\n]}\n"))
	if !ok {
		return decode(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]*Chain)
	var chains []*Chain
	for _, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte(","))
		if len(line) == 0 {
			continue
		}
		c, ok := s.cache[string(line)]
		if !ok {
			c = new(Chain)
			if err := json.Unmarshal(line, c); err != nil || c.ID == "" {
				return decode(data) // for its error message
			}
			if c.Sessions == nil {
				c.Sessions = []Session{}
			}
		}
		next[string(line)] = c
		chains = append(chains, copyChain(c))
	}
	s.cache = next
	s.byID = make(map[string]string, len(next))
	for line, c := range next {
		s.byID[c.ID] = line
	}
	return chains, nil
}

// cachedLine returns the line of a chain that equals one read or written
// last, so it needs no encoding.
func (s *Store) cachedLine(c *Chain) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line, ok := s.byID[c.ID]
	if !ok {
		return nil, false
	}
	if old := s.cache[line]; old == nil || !sameChain(old, c) {
		return nil, false
	}
	return []byte(line), true
}

// sameChain is a strict equality (== on every field): a false "different"
// only costs an encoding.
func sameChain(a, b *Chain) bool {
	if len(a.Sessions) != len(b.Sessions) {
		return false
	}
	for i := range a.Sessions {
		if a.Sessions[i] != b.Sessions[i] {
			return false
		}
	}
	return a.ID == b.ID && a.Unit == b.Unit && a.Task == b.Task && a.Status == b.Status &&
		a.StartedAt == b.StartedAt && a.UpdatedAt == b.UpdatedAt && a.ProjectDir == b.ProjectDir &&
		a.RestartedFrom == b.RestartedFrom && a.Config == b.Config && a.TotalCostUSD == b.TotalCostUSD &&
		a.TotalTurns == b.TotalTurns && a.TotalDurationMS == b.TotalDurationMS &&
		a.ConsecutiveErrors == b.ConsecutiveErrors && a.Branch == b.Branch && a.Reason == b.Reason &&
		a.EndedAt == b.EndedAt && a.Host == b.Host && a.Hold == b.Hold && a.HoldRev == b.HoldRev
}

// remember puts freshly written lines in the cache.
func (s *Store) remember(lines map[string]*Chain) {
	s.mu.Lock()
	s.cache = lines
	s.byID = make(map[string]string, len(lines))
	for line, c := range lines {
		s.byID[c.ID] = line
	}
	s.mu.Unlock()
}

func copyChain(c *Chain) *Chain {
	cp := *c
	cp.Sessions = append(make([]Session, 0, len(c.Sessions)), c.Sessions...)
	return &cp
}

// decode parses the content of registry.json.
func decode(data []byte) ([]*Chain, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var ff fileFormat
	if err := json.Unmarshal(data, &ff); err != nil {
		return nil, err
	}
	if ff.Version == nil {
		return nil, errors.New("no \"version\" field")
	}
	switch v := *ff.Version; {
	case v > Version:
		return nil, &VersionError{Version: v}
	case v < 1:
		return nil, fmt.Errorf("version %d, but this opsvc reads versions 1 to %d", v, Version)
	}
	for i, c := range ff.Chains {
		if c == nil {
			return nil, fmt.Errorf("chain %d is null", i)
		}
		if c.ID == "" {
			return nil, fmt.Errorf("chain %d has no id", i)
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		migrate(*ff.Version, c)
	}
	return ff.Chains, nil
}

// migrate brings a chain read from a registry.json of an older version up to Version. Version 1
// summed the sessions' own durations into total_duration_ms; version 2 has the wall-clock time
// from the chain's start to its end (its last update, for a chain that ended under version 1).
func migrate(version int, c *Chain) {
	if version < 2 && c.Status != ChainRunning && c.EndedAt.IsZero() {
		c.EndAt(c.UpdatedAt)
	}
}

// keepAsideIfCorrupt turns a *badData error into a *CorruptError after moving
// registry.json to registry.json.corrupt-<UTC time>; it must be called under
// the exclusive lock. Other errors are returned as they are.
func (s *Store) keepAsideIfCorrupt(err error) error {
	var bad *badData
	if !errors.As(err, &bad) {
		return err
	}
	ce := &CorruptError{Path: s.path, Err: bad.err}
	base := s.path + ".corrupt-" + s.now().UTC().Format("20060102T150405.000000000") + "Z"
	aside := base
	for i := 2; ; i++ {
		// Never overwrite an earlier kept-aside file.
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(s.path, aside); err != nil {
		ce.Err = fmt.Errorf("%w; moving it aside: %v", bad.err, err)
		return ce
	}
	_ = atomicfile.SyncDir(s.dir)
	ce.Aside = aside
	return ce
}

// write replaces registry.json with r, unless its encoding equals old.
func (s *Store) write(r *Registry, old []byte, mode fs.FileMode) error {
	// One chain per line: readable with grep and cheaper than indenting.
	var buf bytes.Buffer
	buf.Grow(len(old) + 1024)
	buf.WriteString(header())
	lines := make(map[string]*Chain, len(r.Chains))
	first := true
	for _, c := range r.Chains {
		if c == nil {
			continue
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		line, ok := s.cachedLine(c)
		if !ok {
			var err error
			if line, err = json.Marshal(c); err != nil {
				return fmt.Errorf("registry: encode chain %s: %w", c.ID, err)
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.WriteString("\n")
		buf.Write(line)
		lines[string(line)] = copyChain(c)
	}
	buf.WriteString("\n]}\n")
	data := buf.Bytes()
	if bytes.Equal(data, old) {
		return nil
	}
	if err := atomicfile.Write(s.path, data, mode); err != nil {
		return fmt.Errorf("registry: write %s: %w", s.path, err)
	}
	s.remember(lines)
	return nil
}

// appendArchive appends chains to the archive, one per line, and fsyncs it.
// A last line left unterminated by a crash is closed first so that it stays
// a line of its own.
func (s *Store) appendArchive(chains []Chain) error {
	path := filepath.Join(s.dir, ArchiveName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, defaultMode)
	if err != nil {
		return fmt.Errorf("registry: archive chains: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("registry: archive chains: %w", err)
	}
	var buf bytes.Buffer
	if size := fi.Size(); size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			return fmt.Errorf("registry: archive chains: read %s: %w", path, err)
		}
		if last[0] != '\n' {
			buf.WriteByte('\n')
		}
	}
	for i := range chains {
		line, err := json.Marshal(&chains[i])
		if err != nil {
			return fmt.Errorf("registry: archive chain %s: %w", chains[i].ID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("registry: archive chains: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("registry: archive chains: sync %s: %w", path, err)
	}
	if fi.Size() == 0 {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("registry: archive chains: sync %s: %w", s.dir, err)
		}
	}
	return nil
}

// ReadArchive returns the archived chains, oldest first, under the shared
// lock. A chain archived twice (a crash between the archive append and the
// registry write) is returned once, as last written. Lines that cannot be
// read are skipped and reported in an error wrapping ErrCorrupt, returned
// together with the chains that could be read. A missing archive is empty.
func (s *Store) ReadArchive() ([]Chain, error) {
	lk := s.lock()
	if err := lk.RLock(); err != nil {
		return nil, fmt.Errorf("registry: lock %s: %w", s.lockPath, err)
	}
	defer lk.Unlock()

	path := filepath.Join(s.dir, ArchiveName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: read archive: %w", err)
	}
	defer f.Close()

	var (
		out  []Chain
		at   = make(map[string]int)
		errs []error
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c Chain
		if err := json.Unmarshal(line, &c); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", path, n, err))
			continue
		}
		if c.ID == "" {
			errs = append(errs, fmt.Errorf("%s:%d: chain has no id", path, n))
			continue
		}
		if c.Sessions == nil {
			c.Sessions = []Session{}
		}
		migrate(1, &c) // a line archived by a version 1 registry has no ended_at; others are left as they are
		if i, ok := at[c.ID]; ok {
			out[i] = c
			continue
		}
		at[c.ID] = len(out)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("registry: read archive %s: %w", path, err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%w: %w (those lines are skipped; the file is left as it is)", ErrCorrupt, errors.Join(errs...))
	}
	return out, nil
}

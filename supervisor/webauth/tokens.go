package webauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
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
	FileName = "tokens.json"
	lockName = "tokens.lock"
)

// tokenBytes is the entropy of a token; it is written as unpadded base64url
// (43 characters).
const tokenBytes = 32

// maxFileSize bounds what is read of the tokens file.
const maxFileSize = 4 << 10

// Tokens are the two secrets of the TCP listener.
type Tokens struct {
	Admin     string    `json:"admin"`
	ReadOnly  string    `json:"read_only"`
	RotatedAt time.Time `json:"rotated_at"`
}

// Role returns what token grants: RoleAdmin, RoleReadOnly, or RoleNone. Both
// tokens are always compared, in constant time.
func (t Tokens) Role(token string) Role {
	a := subtle.ConstantTimeCompare([]byte(token), []byte(t.Admin))
	r := subtle.ConstantTimeCompare([]byte(token), []byte(t.ReadOnly))
	switch {
	case token == "":
		return RoleNone
	case a == 1:
		return RoleAdmin
	case r == 1:
		return RoleReadOnly
	}
	return RoleNone
}

// secret returns the token of role, the key of its session cookies.
func (t Tokens) secret(r Role) string {
	switch r {
	case RoleAdmin:
		return t.Admin
	case RoleReadOnly:
		return t.ReadOnly
	}
	return ""
}

func (t Tokens) check() error {
	for _, tok := range []struct{ name, v string }{{"admin", t.Admin}, {"read_only", t.ReadOnly}} {
		b, err := base64.RawURLEncoding.DecodeString(tok.v)
		if err != nil || len(b) != tokenBytes {
			return fmt.Errorf("the %s token is not %d bytes of base64url", tok.name, tokenBytes)
		}
	}
	if t.Admin == t.ReadOnly {
		return errors.New("the admin and read-only tokens are the same")
	}
	return nil
}

func newTokens(now time.Time) Tokens {
	return Tokens{Admin: newToken(), ReadOnly: newToken(), RotatedAt: now.UTC().Round(time.Second)}
}

func newToken() string {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Store is the tokens file of a state directory. Its readers see the tokens
// as they are on disk: a rotation by another process (opsvc token --rotate)
// takes effect at the next request. It is safe for concurrent use.
type Store struct {
	dir string
	now func() time.Time

	mu     sync.Mutex
	cached cached
}

type cached struct {
	fi     os.FileInfo // of the file the tokens were read from; nil = none yet
	tokens Tokens
}

// NewStore returns the tokens file of the state directory dir. It does no
// I/O.
func NewStore(dir string) *Store {
	return &Store{dir: dir, now: time.Now}
}

// Path is the tokens file.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Read returns the tokens on disk. A missing file is an error matching
// fs.ErrNotExist; a corrupt one is never replaced silently.
func (s *Store) Read() (Tokens, error) {
	t, _, err := readFile(s.Path())
	return t, err
}

// Current returns the tokens on disk, re-reading the file only when it
// changed since the last call (one stat otherwise). Every request over TCP
// calls it, so a rotation takes effect at once.
func (s *Store) Current() (Tokens, error) {
	fi, err := os.Lstat(s.Path())
	if err != nil {
		return Tokens{}, fmt.Errorf("webauth: read tokens: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cached; c.fi != nil && os.SameFile(c.fi, fi) && c.fi.ModTime().Equal(fi.ModTime()) && c.fi.Size() == fi.Size() {
		return c.tokens, nil
	}
	t, rfi, err := readFile(s.Path())
	if err != nil {
		s.cached = cached{}
		return Tokens{}, err
	}
	s.cached = cached{fi: rfi, tokens: t}
	return t, nil
}

// Ensure returns the tokens, creating the file (mode 0600) with two fresh
// tokens when there is none. A corrupt file is an error, not replaced.
func (s *Store) Ensure() (Tokens, error) {
	t, err := s.Read()
	if !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	unlock, err := s.lock()
	if err != nil {
		return Tokens{}, err
	}
	defer unlock()
	// Another process may have created it meanwhile.
	if t, err := s.Read(); !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	t = newTokens(s.now())
	if err := s.write(t); err != nil {
		return Tokens{}, err
	}
	return t, nil
}

// Rotate replaces both tokens at once (a corrupt file too). The old tokens,
// and every session cookie made from them, stop working as soon as the file
// is renamed into place.
func (s *Store) Rotate() (Tokens, error) {
	unlock, err := s.lock()
	if err != nil {
		return Tokens{}, err
	}
	defer unlock()
	t := newTokens(s.now())
	if err := s.write(t); err != nil {
		return Tokens{}, err
	}
	return t, nil
}

// lock takes the sidecar lock that orders the writers of the file.
func (s *Store) lock() (func(), error) {
	lk := flock.New(filepath.Join(s.dir, lockName), flock.SetPermissions(0o600))
	if err := lk.Lock(); err != nil {
		return nil, fmt.Errorf("webauth: lock tokens: %w", err)
	}
	return func() { lk.Unlock() }, nil
}

// write replaces the file atomically: a temp file (0600) in the same
// directory, fsynced, given the owner of the file it replaces (or of the
// directory), renamed over it, then the directory fsynced.
func (s *Store) write(t Tokens) error {
	path := s.Path()
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("webauth: write tokens: %w", err)
	}
	data = append(data, '\n')
	ownerFrom := path
	if _, err := os.Lstat(path); err != nil {
		ownerFrom = s.dir
	}
	chown := func(tmp *os.File) error { return chownLike(tmp, ownerFrom) }
	if err := atomicfile.WriteWith(path, data, 0o600, chown); err != nil {
		return fmt.Errorf("webauth: write tokens %s: %w", path, err)
	}
	return nil
}

// readFile reads and checks a tokens file. Only a regular file is read, and
// at most maxFileSize bytes of it.
func readFile(path string) (Tokens, os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens %s: not a regular file (run opsvc token --rotate)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens: %w", err)
	}
	if len(data) > maxFileSize {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens %s: larger than %d bytes (run opsvc token --rotate)", path, maxFileSize)
	}
	var t Tokens
	if err := json.Unmarshal(data, &t); err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens %s: %v (run opsvc token --rotate)", path, err)
	}
	if err := t.check(); err != nil {
		return Tokens{}, nil, fmt.Errorf("webauth: read tokens %s: %v (run opsvc token --rotate)", path, err)
	}
	return t, fi, nil
}

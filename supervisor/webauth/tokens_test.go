package webauth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStoreEnsureCreatesOnce(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	if _, err := s.Read(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a new directory = %v, want not exist", err)
	}
	first, err := s.Ensure()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.check(); err != nil {
		t.Fatalf("new tokens: %v", err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	again, err := NewStore(dir).Ensure()
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("a second Ensure replaced the tokens: %+v, then %+v", first, again)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != FileName || names[1] != lockName {
		t.Errorf("files in the state directory = %v, want only %s and %s", names, FileName, lockName)
	}
}

// TestStoreEnsureConcurrent: many first starts at once agree on one pair.
func TestStoreEnsureConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	got := make([]Tokens, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = NewStore(dir).Ensure() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("Ensure %d returned other tokens than Ensure 0", i)
		}
	}
	if onDisk, _ := NewStore(dir).Read(); onDisk != got[0] {
		t.Error("the file holds other tokens than Ensure returned")
	}
}

func TestStoreRotate(t *testing.T) {
	dir := t.TempDir()
	daemon := NewStore(dir)
	old, err := daemon.Ensure()
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := daemon.Current(); err != nil || cur != old {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	// Another process rotates: the daemon's store sees it at its next call.
	fresh, err := NewStore(dir).Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Admin == old.Admin || fresh.ReadOnly == old.ReadOnly || fresh.Admin == fresh.ReadOnly {
		t.Fatalf("rotate did not replace both tokens: old %+v, new %+v", old, fresh)
	}
	cur, err := daemon.Current()
	if err != nil {
		t.Fatal(err)
	}
	if cur != fresh {
		t.Errorf("Current after a rotation = %+v, want %+v", cur, fresh)
	}
	if cur.Role(old.Admin) != RoleNone || cur.Role(old.ReadOnly) != RoleNone {
		t.Error("an old token still has a role")
	}
	if cur.Role(fresh.Admin) != RoleAdmin || cur.Role(fresh.ReadOnly) != RoleReadOnly {
		t.Error("the new tokens do not have their roles")
	}
	if fi, err := os.Stat(daemon.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after rotate = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// badFile writes a tokens file the store must refuse.
type badFile struct {
	name  string
	write func(path string) error
}

func TestStoreBadFiles(t *testing.T) {
	tests := []badFile{
		{"not json", func(p string) error { return os.WriteFile(p, []byte("admin=x\n"), 0o600) }},
		{"short token", func(p string) error {
			return os.WriteFile(p, []byte(`{"admin":"abc","read_only":"`+newToken()+`"}`), 0o600)
		}},
		{"same tokens", func(p string) error {
			tok := newToken()
			return os.WriteFile(p, []byte(`{"admin":"`+tok+`","read_only":"`+tok+`"}`), 0o600)
		}},
		{"too large", func(p string) error {
			big := make([]byte, maxFileSize+10)
			for i := range big {
				big[i] = ' '
			}
			return os.WriteFile(p, big, 0o600)
		}},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	tests = append(tests, specialFiles()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := NewStore(dir)
			if err := tt.write(s.Path()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Ensure(); err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Ensure = %v, want an error about the file", err)
			}
			if _, err := s.Current(); err == nil {
				t.Fatal("Current accepted the file")
			}
			if tt.name == "directory" {
				return
			}
			// Rotate replaces whatever is there.
			fresh, err := s.Rotate()
			if err != nil {
				t.Fatal(err)
			}
			if cur, err := s.Current(); err != nil || cur != fresh {
				t.Errorf("after Rotate: %+v, %v", cur, err)
			}
		})
	}
}

func TestTokensRole(t *testing.T) {
	tk := newTokens(time.Now())
	for _, tt := range []struct {
		tok  string
		want Role
	}{
		{tk.Admin, RoleAdmin}, {tk.ReadOnly, RoleReadOnly}, {"", RoleNone},
		{tk.Admin[:42], RoleNone}, {tk.Admin + "x", RoleNone}, {newToken(), RoleNone},
	} {
		if got := tk.Role(tt.tok); got != tt.want {
			t.Errorf("Role(%q) = %v, want %v", tt.tok, got, tt.want)
		}
	}
	for _, r := range []Role{RoleNone, RoleReadOnly, RoleAdmin, RoleLocal} {
		if back, ok := ParseRole(r.String()); !ok || back != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), back, ok)
		}
	}
	if _, ok := ParseRole("root"); ok {
		t.Error(`ParseRole("root") succeeded`)
	}
}

func TestStoreMissingDirectory(t *testing.T) {
	s := NewStore(filepath.Join(t.TempDir(), "missing"))
	if _, err := s.Current(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Current = %v, want not exist", err)
	}
}

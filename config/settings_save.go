package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
	"github.com/gofrs/flock"
)

const settingsHeader = "# opsvc daemon settings. PUT /v1/settings rewrites this file; comments are not kept.\n\n"

// SaveSettings validates s and writes it to path as TOML: under an exclusive
// flock on path+".lock", to a temp file in the same directory that is
// fsynced and renamed over path, then the directory is fsynced. Readers see
// the old file or the new one, never a part. The mode of an existing file is
// kept (0644 for a new one).
func SaveSettings(path string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err // each problem names its field; nothing is written
	}
	if s.Control.AllowUIDs == nil {
		s.Control.AllowUIDs = []int{} // written as [] rather than left out
	}
	var buf bytes.Buffer
	buf.WriteString(settingsHeader)
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("config: save settings %s: encode: %w", path, err)
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	lk := flock.New(path+".lock", flock.SetPermissions(0o644))
	if err := lk.Lock(); err != nil {
		return fmt.Errorf("config: save settings %s: lock: %w", path, err)
	}
	defer lk.Unlock()

	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("config: save settings %s: sync %s: %w", path, dir, err)
	}
	return nil
}

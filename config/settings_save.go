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

	"github.com/opsvc/opsvc/config/atomicfile"
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
	if err := atomicfile.Write(path, buf.Bytes(), mode); err != nil {
		return fmt.Errorf("config: save settings %s: %w", path, err)
	}
	return nil
}

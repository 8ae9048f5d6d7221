//go:build unix

package config

import (
	"path/filepath"
	"syscall"
	"testing"
)

// TestSettingsNotRegular: a FIFO (which would block the read until a
// writer came) or a device is refused at once.
func TestSettingsNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "opsvc.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        "config: read settings " + fifo + ": is a named pipe (FIFO), not a regular file (point --config or OPSVC_CONFIG at a short TOML file)",
		"/dev/zero": "config: read settings /dev/zero: is a character device, not a regular file (point --config or OPSVC_CONFIG at a short TOML file)",
	} {
		if _, err := LoadSettings(path); err == nil || err.Error() != want {
			t.Errorf("LoadSettings(%s) = %v\nwant %s", path, err, want)
		}
	}
}

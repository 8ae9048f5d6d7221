//go:build !windows

package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultPaths(t *testing.T) {
	tests := []struct {
		name string
		euid int
		env  map[string]string
		want Paths
	}{
		{"root", 0, nil, Paths{"/etc/opsvc/units", "/var/lib/opsvc", "/run/opsvc/opsvc.sock", "/etc/opsvc/opsvc.toml"}},
		{"user xdg", 1000, map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/r"},
			Paths{"/c/opsvc/units", "/s/opsvc", "/r/opsvc/opsvc.sock", "/c/opsvc/opsvc.toml"}},
		{"user home", 1000, map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "/r"},
			Paths{"/home/u/.config/opsvc/units", "/home/u/.local/state/opsvc", "/r/opsvc/opsvc.sock", "/home/u/.config/opsvc/opsvc.toml"}},
		{"systemd dirs", 0, map[string]string{"RUNTIME_DIRECTORY": "/run/opsvc", "STATE_DIRECTORY": "/var/lib/opsvc2:/x", "CONFIGURATION_DIRECTORY": "/etc/opsvc2"},
			Paths{"/etc/opsvc2/units", "/var/lib/opsvc2", "/run/opsvc/opsvc.sock", "/etc/opsvc2/opsvc.toml"}},
		{"env wins over systemd", 0, map[string]string{"STATE_DIRECTORY": "/var/lib/x", "OPSVC_STATE": "/st", "OPSVC_SOCKET": "/so.sock", "OPSVC_UNITS": "/u", "OPSVC_CONFIG": "/c.toml"},
			Paths{"/u", "/st", "/so.sock", "/c.toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultPaths(tt.euid, func(k string) string { return tt.env[k] })
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DefaultPaths (-want +got):\n%s", diff)
			}
		})
	}
}

// Package config holds the daemon's settings (opsvc.toml) and paths. It never starts processes.
package config

//go:build !windows

package config

// platformPaths: the root and XDG defaults of DefaultPaths apply.
func platformPaths(int, Env) (Paths, bool) { return Paths{}, false }

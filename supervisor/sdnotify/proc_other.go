//go:build !linux

package sdnotify

// IsDescendant reports whether pid is a descendant of ancestor. This platform has no /proc to walk, so
// it is always false.
func IsDescendant(pid, ancestor int) bool { return false }

//go:build !unix

package registry

// syncDir is a no-op where directories cannot be fsynced (windows: a rename
// is made durable by the file system itself).
func syncDir(string) error { return nil }

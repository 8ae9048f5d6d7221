//go:build !unix && !windows

package unit

import (
	"io/fs"
	"strings"
)

// executable reports whether fi is a regular file; without execute bits,
// whether it runs is decided when the unit starts.
func executable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular()
}

// isPath reports whether exec[0] names a path rather than a command in PATH.
func isPath(name string) bool { return strings.Contains(name, "/") }

// execNames are the files a program path p may be.
func execNames(p string) []string { return []string{p} }

//go:build !unix

package unit

import "io/fs"

// executable reports whether fi is a regular file; without execute bits,
// whether it runs is decided when the unit starts.
func executable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular()
}

//go:build unix

package unit

import "io/fs"

// executable reports whether fi is a regular file with an execute bit set.
func executable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

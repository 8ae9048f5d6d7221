//go:build !unix

package regfile

import "os"

// openNonblocking opens path for reading. Where there are no FIFOs on
// paths, a plain open does not wait.
func openNonblocking(path string) (*os.File, error) {
	return os.Open(path)
}

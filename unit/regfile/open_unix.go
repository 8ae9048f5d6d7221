//go:build unix

package regfile

import (
	"os"
	"syscall"
)

// openNonblocking opens path for reading without waiting: opening a FIFO
// with no writer, or a device that waits for carrier, returns at once.
func openNonblocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
}

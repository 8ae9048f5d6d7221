//go:build unix

package webauth

import "syscall"

// specialFiles are tokens files that are not regular files. A FIFO would
// block a reader that opened it; it is refused unopened.
func specialFiles() []badFile {
	return []badFile{{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }}}
}

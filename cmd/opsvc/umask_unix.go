//go:build unix

package main

import "syscall"

// withUmask runs f with the process's umask set to mask, so that a file it
// creates never exists with wider permissions.
func withUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

//go:build unix

package unit

import "syscall"

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }

//go:build unix

package main

import "syscall"

// groupGone is nil once no process is left in process group pgid.
func groupGone(pgid int) error {
	if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
		if err == nil {
			return syscall.EEXIST
		}
		return err
	}
	return nil
}

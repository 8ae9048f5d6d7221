//go:build !unix

package worker

import (
	"os"
	"syscall"
)

// ownGroup starts a process as usual: there are no process groups here.
func ownGroup() *syscall.SysProcAttr { return nil }

// killGroup kills the process pgid.
func killGroup(pgid int) {
	if p, err := os.FindProcess(pgid); err == nil {
		_ = p.Kill()
	}
}

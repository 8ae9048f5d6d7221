//go:build !unix

package main

import (
	"os"
	"syscall"
)

func newGroup() *syscall.SysProcAttr { return nil }

// termGroup has no signal to send here: the child is killed.
func termGroup(pid int) { killGroup(pid) }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

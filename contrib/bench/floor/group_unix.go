//go:build unix

package main

import "syscall"

// newGroup puts a child in a process group of its own.
func newGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// termGroup sends SIGTERM (and SIGCONT, for a stopped child) to a child's
// group; a group already gone is no error.
func termGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGTERM)
	syscall.Kill(-pid, syscall.SIGCONT)
}

// killGroup sends SIGKILL to a child's group.
func killGroup(pid int) { syscall.Kill(-pid, syscall.SIGKILL) }

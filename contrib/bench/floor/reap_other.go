//go:build !linux

package main

import "os/exec"

// reaper waits for each child from its keeper's goroutine.
type reaper struct{}

func (reaper) wait(cmd *exec.Cmd) { cmd.Wait() }

func (reaper) stop() {}

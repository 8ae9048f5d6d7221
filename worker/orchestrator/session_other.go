//go:build !unix

package orchestrator

import "syscall"

// canExecute says why path cannot be run, or nil: here nothing but the file's existence, which
// the caller checked.
func canExecute(string) error { return nil }

// signal kills the guard: there are no process groups here, and sessions do not run yet (see
// startGuarded).
func (g *guarded) signal(syscall.Signal) {
	if g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
	}
}

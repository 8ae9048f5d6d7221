//go:build unix

package orchestrator

import "syscall"

// canExecute says why path cannot be run by this process, or nil.
func canExecute(path string) error { return syscall.Access(path, 1) } // X_OK

// signal sends sig to the session's process group; a group already gone is no error. The guard
// leads its own group, so its pid is the group's id.
func (g *guarded) signal(sig syscall.Signal) {
	_ = syscall.Kill(-g.cmd.Process.Pid, sig)
}

//go:build unix

package supervisor

import "syscall"

// Credential is the user and groups a worker runs as.
type Credential = syscall.Credential

// userSwitching reports whether workers can run as another user.
func userSwitching() error { return nil }

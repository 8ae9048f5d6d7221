package main

import (
	"os"

	"github.com/opsvc/opsvc/supervisor"
)

// fdStore keeps the workers' files in the service manager's file descriptor
// store when the daemon runs under one ($NOTIFY_SOCKET set); nil otherwise.
func fdStore(stateDir string, logf func(string, ...any)) *supervisor.FDStore {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	return supervisor.NewFDStore(stateDir, logf)
}

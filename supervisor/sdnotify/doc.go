// Package sdnotify receives sd_notify messages on a unit's notify socket and sends the daemon's own to
// its service manager. It never starts, signals or judges processes: access rules belong to the caller.
package sdnotify

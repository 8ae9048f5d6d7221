// Package api holds the shapes of opsvc's wire: one Go type for the data of
// every event type on the bus, and one for every body of the control API's
// requests and answers. The daemon, the CLI and the tests all use these
// types, and docs/events.md and docs/api.md list them.
//
// It never does I/O and imports nothing of the daemon (no package under
// supervisor), so a client can use it without pulling the daemon in.
package api

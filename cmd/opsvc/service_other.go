//go:build !windows

package main

// runDaemonEntry is `opsvc daemon`.
func runDaemonEntry(c *cli) error { return runDaemon(c) }

// runService: the Service Control Manager is Windows only.
func runService(c *cli) error {
	return fail(exitUsage, "service: only on Windows (under systemd, install contrib/opsvc.service)")
}

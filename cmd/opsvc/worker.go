package main

import (
	"github.com/opsvc/opsvc/worker/orchestrator"
)

// runWorker is `opsvc worker KIND`: the built-in workers the daemon starts.
func runWorker(c *cli) error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "worker: name a kind (opsvc worker orchestrator)")
	}
	switch c.args.pos[0] {
	case "orchestrator":
		if code := orchestrator.Main(c.ctx, c.stderr); code != 0 {
			return &exitError{code: code}
		}
		return nil
	}
	return fail(exitUsage, "worker: unknown kind %q (known: orchestrator)", c.args.pos[0])
}

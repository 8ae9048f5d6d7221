package main

// runWorker is `opsvc worker KIND`: the built-in workers the daemon starts.
func runWorker(c *cli) error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "worker: name a kind (opsvc worker orchestrator)")
	}
	switch c.args.pos[0] {
	}
	return fail(exitUsage, "worker: unknown kind %q (known: orchestrator)", c.args.pos[0])
}

func (c *cli) chains() error {
	return fail(exitFailure, "chains: no registry in this build")
}

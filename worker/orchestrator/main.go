package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
)

// Main is `opsvc worker orchestrator`: it reads its unit from the environment the daemon sets
// (OPSVC_UNIT, OPSVC_STATE, OPSVC_ORCHESTRATOR, the IPC channel), runs one chain and returns the
// exit status: 0 when the chain ended or was interrupted and recorded, or when the daemon went
// away; 1 when the worker could not do its work. Started with OPSVC_SESSION_GUARD set, it is a session's guard instead (see the
// package documentation) and returns the agent's exit status.
func Main(ctx context.Context, stderr io.Writer) int {
	if os.Getenv(envGuard) != "" {
		return guardMain(stderr)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "opsvc worker orchestrator: "+format+"\n", args...)
	}
	fail := func(format string, args ...any) int {
		logf(format, args...)
		return 1
	}
	raw := os.Getenv(EnvConfig)
	if raw == "" {
		return fail("%s is not set (opsvc runs this worker for units with an [orchestrator] table: start such a unit instead)", EnvConfig)
	}
	var cfg unit.Orchestrator
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fail("%s is not the JSON of an [orchestrator] table: %v", EnvConfig, err)
	}
	name := os.Getenv(worker.EnvUnit)
	if name == "" {
		return fail("%s is not set (opsvc sets it to the unit's name)", worker.EnvUnit)
	}
	state := os.Getenv(EnvState)
	if state == "" {
		return fail("%s is not set (opsvc sets it to its state directory)", EnvState)
	}
	env := os.Environ() // before ConnectWith removes the channel's variables; Run drops them anyway
	conn, err := worker.ConnectWith(worker.Options{OnEOF: func() {}, Stderr: stderr})
	if err != nil {
		return fail("%v", err)
	}
	defer conn.Close()
	if !conn.Supervised() {
		logf("chains are recorded by the daemon: this chain runs unrecorded, and resume finds nothing")
	}
	err = Run(ctx, Options{
		Conn:     conn,
		Config:   cfg,
		Unit:     name,
		StateDir: state,
		Env:      env,
		Logf:     logf,
		Stdout:   os.Stdout,
		Stderr:   stderr,
	})
	if err != nil {
		return fail("%v", err)
	}
	return 0
}

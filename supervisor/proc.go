package supervisor

import (
	"io"
	"os"
	"syscall"
)

// Spec is everything needed to start one process of a unit.
type Spec struct {
	Unit       string
	Argv       []string // Argv[0] is an absolute path or a name looked up in PATH of Env
	Env        []string
	Dir        string
	Credential *Credential // nil = the daemon's own user
	Stdout     io.Writer   // worker output is copied here line by line; never blocks the worker
	Stderr     io.Writer
	// StderrToStdout gives the process one output pipe for both streams
	// (Stdout's); Stderr is then not used where the runner can share it.
	StderrToStdout bool
	ExtraFiles     []*os.File // fd 3 onwards in the child; the runner closes them after the fork
	// OnExit is called once the main process has been reaped (Done is then
	// closed). It must not block.
	OnExit func()
}

// Process is a started process and its process group.
type Process interface {
	PID() int
	// Signal sends sig to the whole process group; a group that is gone is not an error.
	Signal(sig syscall.Signal) error
	// Done is closed once the main process has been reaped; Exit is then valid.
	Done() <-chan struct{}
	Exit() ExitStatus
}

// Runner starts processes. The real one forks; tests of pure timing logic may
// fake it.
type Runner interface {
	Start(spec Spec) (Process, error)
}

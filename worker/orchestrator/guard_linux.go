package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envGuard, set in the environment of a re-executed worker binary, makes Main act as a session's
// guard; its value is the agent's argv as a JSON array.
const envGuard = "OPSVC_SESSION_GUARD"

// selfExe is the running binary, even when its file has been replaced or removed since.
const selfExe = "/proc/self/exe"

// lifelineFD is the guard's end of its lifeline pipe.
const lifelineFD = 3

// waitDelay bounds how long output pipes held open by a process that left the session's group
// keep a finished session waiting.
const waitDelay = 2 * time.Second

// startGuarded starts exe as the guard of a session running argv (an absolute path first), in a
// new process group, in dir, with env, stdin, stdout and stderr.
func startGuarded(exe string, argv []string, dir string, env []string, stdin io.Reader, stdout, stderr io.Writer) (*guarded, error) {
	spec, err := json.Marshal(argv)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{"opsvc-session-guard", "worker", "orchestrator"},
		Env:         append(env[:len(env):len(env)], envGuard+"="+string(spec)),
		Dir:         dir,
		Stdin:       stdin,
		Stdout:      stdout,
		Stderr:      stderr,
		ExtraFiles:  []*os.File{r},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   waitDelay,
	}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, err
	}
	g := &guarded{cmd: cmd, lifeline: w, exited: make(chan struct{})}
	go func() {
		defer close(g.exited)
		waitExited(cmd.Process.Pid)
	}()
	return g, nil
}

// waitExited waits for the child pid to exit without reaping it, so that its process group id
// stays its own until the group has been killed.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// guardMain is a session's guard: it runs the agent in its own process group (which the worker
// made for it), passes the agent's exit status on, and kills the whole group when the worker dies.
func guardMain(stderr io.Writer) int {
	// The agent's parent-death signal follows the thread that started it: keep it.
	runtime.LockOSThread()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "opsvc session guard: "+format+"\n", args...)
		return 127
	}
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv(envGuard)), &argv); err != nil || len(argv) == 0 {
		return fail("%s is not an agent command (only the orchestrator worker sets it)", envGuard)
	}
	os.Unsetenv(envGuard)
	if unix.Getpgrp() != unix.Getpid() {
		return fail("not the leader of its own process group (only the orchestrator worker starts a guard)")
	}
	var st unix.Stat_t
	if err := unix.Fstat(lifelineFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fail("fd %d is not the worker's lifeline pipe (only the orchestrator worker starts a guard)", lifelineFD)
	}
	unix.CloseOnExec(lifelineFD)
	lifeline := os.NewFile(lifelineFD, "opsvc-lifeline")

	// SIGINT and the like reach the agent through the group; the guard waits for it. Caught
	// signals are reset for the agent by exec.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)

	cmd := &exec.Cmd{
		Path:        argv[0],
		Args:        argv,
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if err := cmd.Start(); err != nil {
		return fail("start agent: %v", err)
	}
	go func() {
		// The worker holds the other end until the session is over: EOF means it is gone, and
		// the session goes with it.
		_, _ = io.Copy(io.Discard, lifeline)
		_ = unix.Kill(0, unix.SIGKILL)
	}()
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

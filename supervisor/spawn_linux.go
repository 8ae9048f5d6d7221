package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A fork copies the forking process's table of open files into the child,
// and the child's execve closes every copied descriptor again, one by one.
// A daemon running thousands of workers holds a pipe and a pidfd for each:
// with 10,000 workers a start then costs milliseconds of kernel time in the
// child, and the daemon waits for it (the child runs on the CPU the daemon
// was woken on). So past spawnAbove workers, starts of runs tracked without
// a cgroup go through a spawn helper: a small process started from the
// daemon's own binary, holding a handful of files, that forks each worker
// as the daemon's child (CLONE_PARENT). The daemon reaps the worker as any
// other; it opens the worker's pidfd itself, which is safe because the
// worker, its child, cannot be reaped by anyone else.
//
// Runs with a cgroup are forked by the daemon into their cgroup
// (CLONE_INTO_CGROUP, which the kernel does not allow together with
// CLONE_PARENT and a child's exit signal): moving a worker in after the fork
// would let it run, and fork, outside its cgroup for as long as the move
// takes, which is a wait for an RCU grace period (about 10 ms here).

// spawnAbove is the number of running workers from which starts go through
// the spawn helper; below it the daemon forks them itself, which costs less
// than the round trip to the helper.
const spawnAbove = 512

// spawnHelperEnv set to "3" makes a process started from this binary a spawn
// helper serving the socket on descriptor 3 (see init).
const spawnHelperEnv = "OPSVC_SPAWN_HELPER"

// spawnMaxMsg bounds a request (arguments and environment included); a
// larger one is forked by the daemon itself.
const spawnMaxMsg = 1 << 20

// spawnMaxFDs bounds the descriptors passed with a request: the worker's
// stdin, stdout, stderr and the files it inherits.
const spawnMaxFDs = 64

// spawnReq asks the helper to start a process.
type spawnReq struct {
	Path    string
	Argv    []string
	Env     []string
	Dir     string
	Files   int // the descriptors passed become the child's 0, 1, 2, ...
	Setpgid bool
	Cred    *syscall.Credential `json:",omitempty"`
}

// spawnRep is the helper's answer.
type spawnRep struct {
	PID   int `json:",omitempty"`
	Errno int `json:",omitempty"` // the fork or exec failed with this error
}

func init() {
	// A spawn helper does nothing else: it serves its socket until the
	// daemon closes it, then exits.
	if os.Getenv(spawnHelperEnv) == "3" {
		os.Exit(serveSpawns(3))
	}
}

// serveSpawns answers spawn requests on the socket fd until it closes.
func serveSpawns(fd int) int {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_SEQPACKET {
		fmt.Fprintln(os.Stderr, "opsvc: spawn helper: descriptor 3 is not the daemon's socket (this mode is started by the daemon only)")
		return 2
	}
	buf := make([]byte, spawnMaxMsg)
	oob := make([]byte, unix.CmsgSpace(4*spawnMaxFDs))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return 0 // the daemon closed its end, or is gone
		}
		fds := receivedFDs(oob[:oobn])
		rep := spawnOne(buf[:n], fds)
		for _, f := range fds {
			unix.Close(f)
		}
		b, _ := json.Marshal(rep)
		for {
			err = unix.Sendmsg(fd, b, nil, nil, 0)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			return 0
		}
	}
}

// receivedFDs are the descriptors passed in a message's control data.
func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// spawnOne forks one request's process as a child of the helper's parent.
func spawnOne(msg []byte, fds []int) spawnRep {
	var req spawnReq
	if err := json.Unmarshal(msg, &req); err != nil || req.Files < 0 || req.Files > len(fds) {
		return spawnRep{Errno: int(unix.EINVAL)}
	}
	files := make([]uintptr, req.Files)
	for i := range files {
		files[i] = uintptr(fds[i])
	}
	attr := &syscall.ProcAttr{Dir: req.Dir, Env: req.Env, Files: files, Sys: &syscall.SysProcAttr{
		Setpgid:    req.Setpgid,
		Credential: req.Cred,
		Cloneflags: syscall.CLONE_PARENT,
	}}
	pid, err := syscall.ForkExec(req.Path, req.Argv, attr)
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EINVAL
		}
		return spawnRep{Errno: int(errno)}
	}
	return spawnRep{PID: pid}
}

// spawner is the daemon's end of a spawn helper.
type spawner struct {
	fd    int // the socket; requests and answers alternate on it
	pid   int
	pidfd int // the helper's, to end it and wait for it whoever reaped it
	rep   []byte
}

// errSpawnerGone: the helper did not answer; it is ended and the daemon
// forks the process itself. errSpawnSkip: the request does not suit the
// helper (too large); the daemon forks that process itself.
var (
	errSpawnerGone = errors.New("spawn helper gone")
	errSpawnSkip   = errors.New("spawn helper skipped")
)

// maxSpawnStarts bounds how often a runner starts a spawn helper; past it,
// the daemon forks every worker itself.
const maxSpawnStarts = 3

// startSpawner starts a helper from the binary the process runs. Called on a
// fork thread under forkMu held shared, so that no reaper takes the helper
// before its pidfd is open.
func startSpawner(devnull int) (*spawner, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// A request is one message: the socket must hold the largest.
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, spawnMaxMsg+64<<10)
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"opsvc-spawn-helper"}, &syscall.ProcAttr{
		Env:   []string{spawnHelperEnv + "=3", "GOMAXPROCS=1"},
		Files: []uintptr{uintptr(devnull), uintptr(devnull), 2, uintptr(fds[1])},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	unix.Close(fds[1])
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		unix.Close(fds[0])
		unix.Kill(pid, unix.SIGKILL)
		return nil, err
	}
	return &spawner{fd: fds[0], pid: pid, pidfd: pidfd, rep: make([]byte, 4096)}, nil
}

// spawn starts a process through the helper. It returns errSpawnerGone
// (wrapped) when the request did not reach the helper or no answer came;
// the caller then closes the spawner and forks the process itself.
func (s *spawner) spawn(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	req := spawnReq{Path: path, Argv: argv, Env: attr.Env, Dir: attr.Dir, Files: len(attr.Files)}
	if attr.Sys != nil {
		req.Setpgid, req.Cred = attr.Sys.Setpgid, attr.Sys.Credential
	}
	fds := make([]int, 0, len(attr.Files))
	for _, f := range attr.Files {
		fds = append(fds, int(f))
	}
	if len(fds) > spawnMaxFDs {
		return 0, fmt.Errorf("%w: %d files to pass", errSpawnSkip, len(fds))
	}
	msg, err := json.Marshal(req)
	if err != nil || len(msg) > spawnMaxMsg {
		return 0, fmt.Errorf("%w: request of %d bytes", errSpawnSkip, len(msg))
	}
	for {
		err = unix.Sendmsg(s.fd, msg, unix.UnixRights(fds...), nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EMSGSIZE {
		return 0, fmt.Errorf("%w: request of %d bytes", errSpawnSkip, len(msg))
	}
	if err != nil {
		return 0, fmt.Errorf("%w: send: %v", errSpawnerGone, err)
	}
	var n int
	for {
		n, _, _, _, err = unix.Recvmsg(s.fd, s.rep, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: no answer: %v", errSpawnerGone, err)
	}
	var rep spawnRep
	if err := json.Unmarshal(s.rep[:n], &rep); err != nil {
		return 0, fmt.Errorf("%w: answer: %v", errSpawnerGone, err)
	}
	if rep.Errno != 0 {
		return 0, syscall.Errno(rep.Errno)
	}
	return rep.PID, nil
}

// close ends the helper and waits for it, unless a reaper of the process
// already did (the pidfd names it whatever became of its pid).
func (s *spawner) close() {
	unix.Close(s.fd)
	unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
	var info unix.Siginfo
	for unix.Waitid(unix.P_PIDFD, s.pidfd, &info, unix.WEXITED, nil) == unix.EINTR {
	}
	unix.Close(s.pidfd)
}

// spawnVia starts a process through the runner's spawn helper, starting one
// first if there is none. Errors wrapping errSpawnerGone or errSpawnSkip mean
// the process was not started: the caller forks it itself.
func (r *ExecRunner) spawnVia(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	r.spawnMu.Lock()
	defer r.spawnMu.Unlock()
	if r.spawner == nil {
		if r.spawnStarts >= maxSpawnStarts {
			return 0, errSpawnSkip
		}
		r.spawnStarts++
		s, err := startSpawner(r.devnull)
		if err != nil {
			return 0, fmt.Errorf("%w: start: %v", errSpawnerGone, err)
		}
		r.spawner = s
	}
	pid, err := r.spawner.spawn(path, argv, attr)
	if errors.Is(err, errSpawnerGone) {
		r.spawner.close()
		r.spawner = nil
	}
	return pid, err
}

// useSpawner says whether a start goes through the spawn helper: the runner
// reaps its children and already runs spawnFrom workers or more.
func (r *ExecRunner) useSpawner() bool {
	if !r.reapAll || r.spawnFrom < 0 {
		return false
	}
	r.mu.Lock()
	n := len(r.byFD) + len(r.unpolled)
	r.mu.Unlock()
	return n >= r.spawnFrom
}

// closeSpawner ends the spawn helper, if any.
func (r *ExecRunner) closeSpawner() {
	r.spawnMu.Lock()
	defer r.spawnMu.Unlock()
	if r.spawner != nil {
		r.spawner.close()
		r.spawner = nil
	}
}

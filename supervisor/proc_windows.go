package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/opsvc/opsvc/supervisor/api"
)

// ExecRunner starts real processes on Windows. Each run gets a Job object
// that kills its processes when its last handle closes (so the daemon's
// death ends every worker tree) and that a kill terminates. A process is
// started suspended, put in its job and only then resumed, so none of its
// children can be started outside the job. Each process is the leader of a
// new process group, to which a stop sends CTRL_BREAK_EVENT. A goroutine per
// process waits for its exit and one per output pipe reads its lines.
type ExecRunner struct {
	nul windows.Handle // every worker's stdin

	mu     sync.Mutex
	closed bool
	procs  map[*winProc]struct{} // started, job not yet closed
	wg     sync.WaitGroup        // waiters and output readers
}

// NewExecRunner returns a runner; Close ends what it started. reapAll has no
// meaning on Windows, where a process's exit is waited for on its handle.
func NewExecRunner(reapAll bool) (*ExecRunner, error) {
	nul, err := windows.CreateFile(windows.StringToUTF16Ptr("NUL"), windows.GENERIC_READ, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, nil, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("supervisor: open NUL: %w", err)
	}
	ensureConsole()
	return &ExecRunner{nul: nul, procs: make(map[*winProc]struct{})}, nil
}

// Track says how processes are tracked: each run's in its Job object, which
// nothing outlives. A previous daemon's workers died with its job handles.
func (r *ExecRunner) Track(stateDir string, publish func(unit string, data api.EventData), logf func(string, ...any)) (string, error) {
	return "in a Job object per run (ended when the daemon exits)", nil
}

// Close terminates the job of every run still held and waits for the
// waiters and output readers.
func (r *ExecRunner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	procs := make([]*winProc, 0, len(r.procs))
	for p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	for _, p := range procs {
		p.job.terminate()
		p.job.close()
	}
	r.wg.Wait()
	return windows.CloseHandle(r.nul)
}

// Start starts spec's process suspended in a new process group, puts it in a
// new Job object and resumes it.
func (r *ExecRunner) Start(spec Spec) (Process, error) {
	// The extra files are the child's; ours are closed however this ends.
	defer func() {
		for _, f := range spec.ExtraFiles {
			f.Close()
		}
	}()
	if len(spec.Argv) == 0 {
		return nil, errors.New("supervisor: start: empty exec")
	}
	if spec.Credential != nil {
		return nil, userSwitching()
	}
	path, err := lookPath(spec.Argv[0], spec.Env, spec.Dir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Process, error) {
		return nil, fmt.Errorf("supervisor: start %s: %w", spec.Argv[0], err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fail(err)
	}
	j, err := newJob()
	if err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return fail(err)
	}
	std := []windows.Handle{r.nul, windows.Handle(outW.Fd()), windows.Handle(errW.Fd())}
	extra := make([]windows.Handle, len(spec.ExtraFiles))
	for i, f := range spec.ExtraFiles {
		extra[i] = windows.Handle(f.Fd())
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	var pi windows.ProcessInformation
	if closed {
		err = errors.New("the runner is closed")
	} else {
		pi, err = createSuspended(path, spec, std, extra)
	}
	// The read ends see EOF once every process holding these has closed them.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		j.close()
		return fail(err)
	}
	if err := j.assign(pi.Process); err != nil {
		windows.TerminateProcess(pi.Process, killExitCode)
		windows.CloseHandle(pi.Thread)
		windows.CloseHandle(pi.Process)
		outR.Close()
		errR.Close()
		j.close()
		return fail(err)
	}
	if _, err := windows.ResumeThread(pi.Thread); err != nil {
		j.terminate()
		windows.CloseHandle(pi.Thread)
		windows.CloseHandle(pi.Process)
		outR.Close()
		errR.Close()
		j.close()
		return fail(fmt.Errorf("resume: %w", err))
	}
	windows.CloseHandle(pi.Thread)
	p := &winProc{pid: int(pi.ProcessId), process: pi.Process, job: j, done: make(chan struct{}), onExit: spec.OnExit, runner: r}
	r.mu.Lock()
	r.procs[p] = struct{}{}
	r.mu.Unlock()
	r.wg.Add(3)
	go func() { defer r.wg.Done(); readOutput(outR, spec.Stdout) }()
	go func() { defer r.wg.Done(); readOutput(errR, spec.Stderr) }()
	go func() { defer r.wg.Done(); p.wait() }()
	return p, nil
}

// createSuspended creates the process, suspended, in a new process group.
// std (stdin, stdout, stderr) and extra are inherited through duplicates
// made for this start and named in its handle list, so that nothing else
// leaks into it; a descriptor number N ≥ 3 in OPSVC_IPC_FD becomes the value
// of the handle the child inherits for extra[N-3].
func createSuspended(path string, spec Spec, std, extra []windows.Handle) (windows.ProcessInformation, error) {
	var pi windows.ProcessInformation
	// As syscall.StartProcess does: no other start may inherit the duplicates.
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	self := windows.CurrentProcess()
	var dups []windows.Handle
	defer func() {
		for _, h := range dups {
			windows.CloseHandle(h)
		}
	}()
	dup := func(h windows.Handle) (windows.Handle, error) {
		var d windows.Handle
		if err := windows.DuplicateHandle(self, h, self, &d, 0, true, windows.DUPLICATE_SAME_ACCESS); err != nil {
			return 0, fmt.Errorf("duplicate handle: %w", err)
		}
		dups = append(dups, d)
		return d, nil
	}
	for _, h := range append(append([]windows.Handle(nil), std...), extra...) {
		if _, err := dup(h); err != nil {
			return pi, err
		}
	}
	env := childEnv(spec.Env, dups[len(std):])
	block, err := envBlock(env)
	if err != nil {
		return pi, err
	}
	app, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return pi, err
	}
	cmdline, err := windows.UTF16PtrFromString(windows.ComposeCommandLine(spec.Argv))
	if err != nil {
		return pi, err
	}
	var dir *uint16
	if spec.Dir != "" {
		if dir, err = windows.UTF16PtrFromString(spec.Dir); err != nil {
			return pi, err
		}
	}
	attrs, err := windows.NewProcThreadAttributeList(1)
	if err != nil {
		return pi, err
	}
	defer attrs.Delete()
	if err := attrs.Update(windows.PROC_THREAD_ATTRIBUTE_HANDLE_LIST, unsafe.Pointer(&dups[0]), uintptr(len(dups))*unsafe.Sizeof(dups[0])); err != nil {
		return pi, err
	}
	si := &windows.StartupInfoEx{ProcThreadAttributeList: attrs.List()}
	si.Cb = uint32(unsafe.Sizeof(*si))
	si.Flags = windows.STARTF_USESTDHANDLES
	si.StdInput, si.StdOutput, si.StdErr = dups[0], dups[1], dups[2]
	flags := uint32(windows.CREATE_UNICODE_ENVIRONMENT | windows.EXTENDED_STARTUPINFO_PRESENT | windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_SUSPENDED)
	if err := windows.CreateProcess(app, cmdline, nil, nil, true, flags, block, dir, &si.StartupInfo, &pi); err != nil {
		return pi, err
	}
	return pi, nil
}

// childEnv is env with OPSVC_IPC_FD=N (N ≥ 3) naming the inherited handle of
// the (N-3)th extra file.
func childEnv(env []string, handles []windows.Handle) []string {
	if len(handles) == 0 {
		return env
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "OPSVC_IPC_FD") {
			if n, err := strconv.Atoi(v); err == nil && n >= 3 && n-3 < len(handles) {
				kv = k + "=" + strconv.FormatUint(uint64(handles[n-3]), 10)
			}
		}
		out = append(out, kv)
	}
	return out
}

// envBlock is env as CreateProcess takes it: NUL-terminated UTF-16 strings,
// then one more NUL. Of variables set more than once (names are
// case-insensitive), the last one is kept: Windows would take the first.
func envBlock(env []string) (*uint16, error) {
	last := make(map[string]int, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "" { // "=C:=C:\dir": a drive's working directory
			k = kv
		}
		last[strings.ToUpper(k)] = i
	}
	var b []uint16
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "" {
			k = kv
		}
		if last[strings.ToUpper(k)] != i {
			continue
		}
		s, err := windows.UTF16FromString(kv)
		if err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
		b = append(b, s...)
	}
	b = append(b, 0)
	if len(env) == 0 {
		b = append(b, 0)
	}
	return &b[0], nil
}

// lookPath resolves exec[0]: a path (relative ones against dir) or a bare
// name looked up in the PATH the child will get, trying the extensions of
// its PATHEXT when the name has none.
func lookPath(name string, env []string, dir string) (string, error) {
	path, pathext := os.Getenv("PATH"), os.Getenv("PATHEXT")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.EqualFold(k, "PATH"):
			path = v
		case strings.EqualFold(k, "PATHEXT"):
			pathext = v
		}
	}
	var exts []string
	for _, e := range strings.Split(strings.ToLower(pathext), ";") {
		if strings.HasPrefix(e, ".") {
			exts = append(exts, e)
		}
	}
	if len(exts) == 0 {
		exts = []string{".com", ".exe", ".bat", ".cmd"}
	}
	find := func(p string) (string, bool) {
		try := []string{p}
		if filepath.Ext(p) == "" {
			try = nil
			for _, e := range exts {
				try = append(try, p+e)
			}
		}
		for _, f := range try {
			if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
				return f, true
			}
		}
		return "", false
	}
	if strings.ContainsAny(name, `/\:`) {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if f, ok := find(p); ok {
			return f, nil
		}
		return p, nil // CreateProcess says what is wrong with it
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue
		}
		if f, ok := find(filepath.Join(d, name)); ok {
			return f, nil
		}
	}
	return "", fmt.Errorf("supervisor: start %s: executable file not found in PATH (give an absolute path in exec, or fix PATH)", name)
}

// winProc is a started process and its run's Job object.
type winProc struct {
	pid     int
	process windows.Handle // closed once the process has exited
	job     *job
	done    chan struct{}
	exit    ExitStatus
	onExit  func()
	runner  *ExecRunner
	stopSig atomic.Int32 // the last signal sent as CTRL_BREAK_EVENT
}

func (p *winProc) PID() int              { return p.pid }
func (p *winProc) Done() <-chan struct{} { return p.done }
func (p *winProc) Exit() ExitStatus      { return p.exit }

// Signal: SIGKILL terminates the run's job, ending every process in it, and
// once the main process has exited also closes it. Any other signal is sent
// as CTRL_BREAK_EVENT to the process group (a console program's only stop
// request it can be sent from outside). A process that is gone is no error.
func (p *winProc) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		if err := p.job.terminate(); err != nil {
			return fmt.Errorf("supervisor: kill %d: %w", p.pid, err)
		}
		select {
		case <-p.done:
			p.release()
		default:
		}
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if sig == 0 {
		return nil
	}
	p.stopSig.Store(int32(sig))
	if err := ctrlBreak(uint32(p.pid)); err != nil {
		return fmt.Errorf("supervisor: signal %d: %w (the stop deadline ends it)", p.pid, err)
	}
	return nil
}

// release closes the job of an exited process.
func (p *winProc) release() {
	p.job.close()
	p.runner.mu.Lock()
	delete(p.runner.procs, p)
	p.runner.mu.Unlock()
}

func (p *winProc) wait() {
	var code uint32
	_, err := windows.WaitForSingleObject(p.process, windows.INFINITE)
	if err == nil {
		err = windows.GetExitCodeProcess(p.process, &code)
	}
	windows.CloseHandle(p.process)
	switch {
	case err != nil:
		p.exit = ExitStatus{Code: 255}
	case code == killExitCode && p.job.wasKilled():
		p.exit = ExitStatus{Code: killExitCode, Signal: "SIGKILL"}
	case code == uint32(windows.STATUS_CONTROL_C_EXIT) && p.stopSig.Load() != 0:
		sig := syscall.Signal(p.stopSig.Load())
		p.exit = ExitStatus{Code: 128 + int(sig), Signal: SignalName(sig)}
	default:
		p.exit = ExitStatus{Code: int(code)}
	}
	close(p.done)
	if p.onExit != nil {
		p.onExit()
	}
}

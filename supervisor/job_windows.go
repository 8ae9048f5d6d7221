package supervisor

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// killExitCode is the exit code TerminateJobObject gives every process of a job it ends:
// 128+SIGKILL, as a process killed on unix reports it.
const killExitCode = 128 + 9

// job is one run's Job object. Every process the run starts lives in it; closing its last
// handle (the daemon's death included) ends them all, and terminate ends them at once.
type job struct {
	mu     sync.Mutex
	h      windows.Handle // 0 once closed
	killed bool           // terminate was called
}

// newJob makes a Job object whose processes die with its last handle and on an unhandled
// exception (no error dialog waits for a click).
func newJob() (*job, error) {
	h, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("create job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{
			LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | windows.JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION,
		},
	}
	if _, err := windows.SetInformationJobObject(h, windows.JobObjectExtendedLimitInformation, uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(h)
		return nil, fmt.Errorf("set kill-on-close on job object: %w", err)
	}
	return &job{h: h}, nil
}

// assign puts a process into the job.
func (j *job) assign(process windows.Handle) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.h == 0 {
		return fmt.Errorf("assign to job object: the job is closed")
	}
	if err := windows.AssignProcessToJobObject(j.h, process); err != nil {
		return fmt.Errorf("assign to job object: %w", err)
	}
	return nil
}

// terminate ends every process in the job with killExitCode. A closed job has none left.
func (j *job) terminate() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.h == 0 {
		return nil
	}
	j.killed = true
	if err := windows.TerminateJobObject(j.h, killExitCode); err != nil {
		return fmt.Errorf("terminate job object: %w", err)
	}
	return nil
}

// wasKilled reports whether terminate was called.
func (j *job) wasKilled() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.killed
}

// maxListed is how many process ids pids reports.
const maxListed = 64

// pids lists the processes in the job (at most maxListed of them) and how many there are.
func (j *job) pids() ([]uint32, int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.h == 0 {
		return nil, 0, nil
	}
	// JOBOBJECT_BASIC_PROCESS_ID_LIST
	var list struct {
		assigned, listed uint32
		ids              [maxListed]uintptr
	}
	if err := windows.QueryInformationJobObject(j.h, windows.JobObjectBasicProcessIdList, uintptr(unsafe.Pointer(&list)), uint32(unsafe.Sizeof(list)), nil); err != nil && err != windows.ERROR_MORE_DATA {
		return nil, 0, fmt.Errorf("list job object: %w", err)
	}
	out := make([]uint32, 0, min(list.listed, maxListed))
	for _, id := range list.ids[:min(list.listed, maxListed)] {
		out = append(out, uint32(id))
	}
	return out, int(list.assigned), nil
}

// close closes the daemon's handle: what is still in the job dies.
func (j *job) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.h != 0 {
		windows.CloseHandle(j.h)
		j.h = 0
	}
}

// ensureConsole gives the daemon a console when it has none (as a service): a stop's
// CTRL_BREAK_EVENT reaches only processes that share the sender's console. The console's
// window, where there is one, is hidden.
func ensureConsole() {
	k := windows.NewLazySystemDLL("kernel32.dll")
	if hwnd, _, _ := k.NewProc("GetConsoleWindow").Call(); hwnd != 0 {
		return
	}
	if r, _, _ := k.NewProc("AllocConsole").Call(); r == 0 {
		return // it has one without a window, or cannot have one: stops fall back to the job
	}
	if hwnd, _, _ := k.NewProc("GetConsoleWindow").Call(); hwnd != 0 {
		const swHide = 0
		windows.NewLazySystemDLL("user32.dll").NewProc("ShowWindow").Call(hwnd, swHide)
	}
}

// ctrlBreak sends CTRL_BREAK_EVENT to the process group whose leader is pid.
func ctrlBreak(pid uint32) error {
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, pid); err != nil {
		return fmt.Errorf("send CTRL_BREAK_EVENT to process group %d: %w", pid, err)
	}
	return nil
}

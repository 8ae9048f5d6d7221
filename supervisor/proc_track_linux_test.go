package supervisor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/proctrack"
)

// treeScript starts a grandchild in the worker's group, one that left it by
// setsid, and one with an empty environment, writes their pids to files in
// $PIDS, and becomes a long sleep itself.
const treeScript = `sleep 600 & echo $! > "$PIDS/gc"
setsid sleep 600 & echo $! > "$PIDS/ss"
env -i /bin/sleep 600 & echo $! > "$PIDS/clean"
exec sleep 600`

type event struct {
	Type string
	Unit string
	Data api.EventData
}

type eventLog struct {
	mu sync.Mutex
	ev []event
}

func (l *eventLog) publish(u string, data api.EventData) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, event{data.EventType(), u, data})
}

func (l *eventLog) find(typ string) (event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.ev {
		if e.Type == typ {
			return e, true
		}
	}
	return event{}, false
}

// trackModes runs f with cgroup tracking (skipped where this machine cannot
// create a cgroup v2) and with the process-group fallback.
func trackModes(t *testing.T, f func(t *testing.T, noCgroup bool)) {
	t.Run("cgroup", func(t *testing.T) {
		tr, err := proctrack.Open(proctrack.Options{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		dir, why := tr.Cgroup()
		tr.Close()
		if dir == "" {
			t.Skipf("no writable cgroup v2 here: %s", why)
		}
		f(t, false)
	})
	t.Run("fallback", func(t *testing.T) { f(t, true) })
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(string(b[i+1:]), " Z")
}

func waitDead(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still runs", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling another process's end, bounded
		}
	}
}

// waitOwnGroup waits (bounded) until pid leads its own process group: the
// pid file is written at the fork, before the child calls setsid.
func waitOwnGroup(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 2 && f[2] == strconv.Itoa(pid) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a group leader: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond) // the child calls setsid; bounded
	}
}

// readPIDs waits (bounded) for the tree's pid files.
func readPIDs(t *testing.T, dir string, names ...string) map[string]int {
	t.Helper()
	out := make(map[string]int)
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range names {
		for {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err == nil && strings.HasSuffix(string(b), "\n") {
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatal(err)
				}
				out[n] = pid
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no pid in %s", n)
			}
			time.Sleep(10 * time.Millisecond) // the worker writes it; bounded
		}
	}
	return out
}

func TestTrackStopEndsSetsidChild(t *testing.T) {
	trackModes(t, func(t *testing.T, noCgroup bool) {
		r, err := NewExecRunner(false)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var log eventLog
		if _, err := r.trackWith(proctrack.Options{StateDir: t.TempDir(), Publish: log.publish, NoCgroup: noCgroup}); err != nil {
			t.Fatal(err)
		}
		pids := t.TempDir()
		p, err := r.Start(Spec{Unit: "tree", Argv: []string{"/bin/sh", "-c", treeScript}, Env: []string{"PIDS=" + pids, "PATH=/usr/bin:/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		got := readPIDs(t, pids, "gc", "ss", "clean")
		waitOwnGroup(t, got["ss"])
		// A stop signal reaches the process that left the group too.
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		p.Signal(syscall.SIGKILL) // what the loop does once the main process is reaped
		if noCgroup {
			// Without a cgroup, a process that left the group and cleared its
			// environment is beyond reach until the daemon's next start.
			waitDead(t, got["gc"], got["ss"])
			syscall.Kill(got["clean"], syscall.SIGKILL)
		} else {
			waitDead(t, got["main"], got["gc"], got["ss"], got["clean"])
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			e, ok := log.find(api.TypeUnitEscaped)
			if ok {
				if e.Unit != "tree" || !slices.Contains(e.Data.(api.UnitEscaped).PIDs, got["ss"]) {
					t.Fatalf("unit.escaped = %+v, want unit tree with pid %d", e, got["ss"])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no unit.escaped event")
			}
			time.Sleep(10 * time.Millisecond) // reported off the caller; bounded
		}
	})
}

// TestTrackHelperDaemon is not a test: TestTrackAfterDaemonKill runs the test
// binary as a daemon that starts the tree and is then killed with SIGKILL.
func TestTrackHelperDaemon(t *testing.T) {
	state := os.Getenv("OPSVC_TEST_TRACK_STATE")
	if state == "" {
		t.Skip("helper process of TestTrackAfterDaemonKill")
	}
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.trackWith(proctrack.Options{StateDir: state, NoCgroup: os.Getenv("OPSVC_TEST_TRACK_NOCGROUP") != ""}); err != nil {
		t.Fatal(err)
	}
	p, err := r.Start(Spec{Unit: "tree", Argv: []string{"/bin/sh", "-c", treeScript}, Env: []string{"PIDS=" + os.Getenv("PIDS"), "PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	// The record is written off the fork path: wait until it names the run.
	for {
		b, _ := os.ReadFile(filepath.Join(state, proctrack.RecordName))
		if strings.Contains(string(b), `"pid":`+strconv.Itoa(p.PID())) {
			break
		}
		time.Sleep(5 * time.Millisecond) // killed from outside; never returns
	}
	fmt.Printf("main %d\n", p.PID())
	select {}
}

func TestTrackAfterDaemonKill(t *testing.T) {
	trackModes(t, func(t *testing.T, noCgroup bool) {
		state, pids := t.TempDir(), t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrackHelperDaemon$", "-test.v")
		cmd.Env = append(os.Environ(), "OPSVC_TEST_TRACK_STATE="+state, "PIDS="+pids)
		if noCgroup {
			cmd.Env = append(cmd.Env, "OPSVC_TEST_TRACK_NOCGROUP=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		main := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "main %d", &main); err == nil {
				break
			}
		}
		if main == 0 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the helper daemon did not start its worker")
		}
		got := readPIDs(t, pids, "gc", "ss", "clean")
		cmd.Process.Signal(syscall.SIGKILL)
		go func() {
			for sc.Scan() {
			}
		}()
		cmd.Wait()
		// A tracked worker has no parent-death signal: the whole tree stays
		// for the next daemon to end.
		got["main"] = main
		for n, pid := range got {
			if !alive(pid) {
				t.Fatalf("%s (pid %d) is gone already: nothing left to test", n, pid)
			}
		}

		var log eventLog
		tr, err := proctrack.Open(proctrack.Options{StateDir: state, Publish: log.publish, NoCgroup: noCgroup})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		left := tr.Sweep()
		waitDead(t, got["main"], got["gc"], got["ss"], got["clean"])
		if len(left) != 1 || left[0].Unit != "tree" {
			t.Fatalf("leftovers = %+v, want the unit tree", left)
		}
		for n, pid := range got {
			if !slices.Contains(left[0].PIDs, pid) {
				t.Errorf("leftovers %v miss %s (pid %d)", left[0].PIDs, n, pid)
			}
		}
		e, ok := log.find(api.TypeDaemonLeftovers)
		if !ok || e.Unit != "tree" || e.Data.(api.DaemonLeftovers).Count != len(left[0].PIDs) {
			t.Errorf("daemon.leftovers = %+v (found %v)", e, ok)
		}
	})
}

// A pid in the record that now belongs to another process (its start time
// differs) is left alone.
func TestTrackSweepSparesReusedPID(t *testing.T) {
	other := exec.Command("/bin/sleep", "600")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		other.Process.Kill()
		other.Wait()
	}()
	state := t.TempDir()
	rec := map[string]any{"runs": []map[string]any{{"unit": "old", "marker": "x:old:1", "pid": other.Process.Pid, "start": 1}}}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(state, proctrack.RecordName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := proctrack.Open(proctrack.Options{StateDir: state, NoCgroup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if left := tr.Sweep(); len(left) != 0 {
		t.Fatalf("leftovers = %+v, want none", left)
	}
	if !alive(other.Process.Pid) {
		t.Fatal("a process whose pid was reused was killed")
	}
}

// A privileged worker that moves a child out of its cgroup does not take it
// out of the unit: the marker still names the run.
func TestTrackChildLeavesCgroup(t *testing.T) {
	r, err := NewExecRunner(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var log eventLog
	if _, err := r.trackWith(proctrack.Options{StateDir: t.TempDir(), Publish: log.publish}); err != nil {
		t.Fatal(err)
	}
	base, why := r.track.Cgroup()
	if base == "" {
		t.Skipf("no writable cgroup v2 here: %s", why)
	}
	// The daemon's own cgroup: writable where the base below it is.
	own := filepath.Dir(base)
	pids := t.TempDir()
	script := `sh -c 'echo $$ > "$OWN/cgroup.procs" && exec setsid sleep 600' & echo $! > "$PIDS/out"
exec sleep 600`
	p, err := r.Start(Spec{Unit: "mover", Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PIDS=" + pids, "OWN=" + own, "PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	out := readPIDs(t, pids, "out")["out"]
	ownLine := func(pid string) string {
		b, _ := os.ReadFile("/proc/" + pid + "/cgroup")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "0::") {
				return l
			}
		}
		return ""
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b := ownLine(strconv.Itoa(out))
		if b != "" && b == ownLine("self") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child did not leave its cgroup: %s", b)
		}
		time.Sleep(10 * time.Millisecond) // the worker moves it; bounded
	}
	p.Signal(syscall.SIGKILL)
	<-p.Done()
	p.Signal(syscall.SIGKILL)
	waitDead(t, out)
}

// The parent-death signal is tied to the thread that forked: a worker started
// from a goroutine whose thread then exits must keep running.
func TestWorkerOutlivesCallerThread(t *testing.T) {
	r, err := NewExecRunner(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	started := make(chan Process, 1)
	go func() {
		runtime.LockOSThread()
		// Returning while locked ends this OS thread.
		p, err := r.Start(Spec{Unit: "t", Argv: []string{"/bin/sleep", "600"}})
		if err != nil {
			t.Error(err)
			started <- nil
			return
		}
		started <- p
	}()
	p := <-started
	if p == nil {
		return
	}
	defer func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}()
	// A worker killed by its parent-death signal is reaped at once; one that
	// runs is not. Ask the runner to prove it with a second process that ends
	// by itself: once that one is reaped, the first had as long to die.
	q, err := r.Start(Spec{Unit: "u", Argv: []string{"/bin/sleep", "0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	<-q.Done()
	select {
	case <-p.Done():
		t.Fatalf("the worker died with its caller's thread: %+v", p.Exit())
	default:
	}
}

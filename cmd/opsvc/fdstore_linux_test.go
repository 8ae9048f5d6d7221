package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeManager plays systemd's side of the file descriptor store: a notify
// socket that keeps the files sent with FDSTORE=1 by name and drops them on
// FDSTOREREMOVE=1.
type fakeManager struct {
	conn *net.UnixConn
	mu   sync.Mutex
	fds  map[string]*os.File
	wake chan struct{}
	done chan struct{}
}

func newFakeManager(t *testing.T, path string) *fakeManager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{conn: conn, fds: make(map[string]*os.File), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go m.serve()
	return m
}

func (m *fakeManager) serve() {
	defer close(m.done)
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(16*4))
	for {
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var fds []int
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if got, err := unix.ParseUnixRights(&c); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		fields := make(map[string]string)
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(l, "=")
			fields[k] = v
		}
		name := fields["FDNAME"]
		m.mu.Lock()
		switch {
		case fields["FDSTORE"] == "1" && name != "" && len(fds) == 1:
			if old := m.fds[name]; old != nil {
				old.Close()
			}
			m.fds[name] = os.NewFile(uintptr(fds[0]), name)
			fds = nil
		case fields["FDSTOREREMOVE"] == "1" && name != "":
			if old := m.fds[name]; old != nil {
				old.Close()
				delete(m.fds, name)
			}
		}
		m.mu.Unlock()
		for _, fd := range fds {
			unix.Close(fd)
		}
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// waitNames waits (bounded) until the store holds every name.
func (m *fakeManager) waitNames(t *testing.T, names []string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		m.mu.Lock()
		missing := ""
		for _, n := range names {
			if m.fds[n] == nil {
				missing = n
				break
			}
		}
		m.mu.Unlock()
		if missing == "" {
			return
		}
		select {
		case <-m.wake:
		case <-deadline:
			t.Fatalf("the file store has no %s after 60 s", missing)
		}
	}
}

// files returns the stored files in name order, as systemd passes them.
func (m *fakeManager) files() (names []string, files []*os.File) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := range m.fds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fd, err := unix.FcntlInt(m.fds[n].Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		files = append(files, os.NewFile(uintptr(fd), n))
	}
	return names, files
}

func (m *fakeManager) close() {
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	for _, f := range m.fds {
		f.Close()
	}
	m.mu.Unlock()
}

// procAlive reports whether pid runs (a zombie does not).
func procAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(string(b[i+1:]), " Z")
}

// TestTakeoverFromFDStore: a daemon under a (played) systemd pushes its
// workers' files into the fd store; it is killed with SIGKILL, one worker
// dies with it, and a new daemon gets the files back as systemd passes them
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). It takes the living workers over
// with their pids: their output goes on, the IPC worker answers and
// heartbeats within its watchdog; the dead one is started again; nothing is
// ended as a leftover.
func TestTakeoverFromFDStore(t *testing.T) {
	dir, err := os.MkdirTemp("", "ofs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(units, name+".toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pa", printer)
	write("pb", printer)
	write("doomed", printer)
	write("ipcw", ipcWorker)
	// Its notify socket is handed over too. (No watchdog here: a datagram
	// from a systemd-notify that exited before it was read cannot be told
	// apart from a stranger's.)
	write("ntf", `[service]
type = "notify"
notify_access = "all"
exec = ["/bin/sh", "-c", "systemd-notify --ready; exec sleep 600"]
`)
	want := []string{"doomed", "ipcw", "ntf", "pa", "pb"}
	var storeNames []string
	for _, u := range want {
		storeNames = append(storeNames, u+"/stdout", u+"/stderr")
	}
	storeNames = append(storeNames, "ipcw/ipc", "ntf/notify")

	mgr := newFakeManager(t, filepath.Join(dir, "notify"))
	defer mgr.close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The binary as "opsvc", for a shell to exec.
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.Symlink(exe, filepath.Join(bin, "opsvc")); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	daemonArgs := []string{"daemon", "--units", units, "--state", filepath.Join(dir, "state"), "--socket", sock, "--config", filepath.Join(dir, "opsvc.toml")}
	env := append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"), "GORACE=atexit_sleep_ms=0")
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	var running []*exec.Cmd
	defer func() {
		for _, c := range running {
			c.Process.Kill()
			c.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon output:\n%s", b)
		}
	}()

	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	pids := func(what string, ok func(map[string]int) bool) map[string]int {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var st unitsReply
			out := make(map[string]int)
			resp, err := client.Get("http://opsvc/v1/units")
			if err == nil {
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				for _, u := range st.Units {
					if u.State == "active" && u.PID > 0 {
						out[u.Name] = u.PID
					}
				}
				if len(out) == len(want) && ok(out) {
					return out
				}
			}
			if time.Now().After(deadline) {
				var evs []byte
				if resp, err := client.Get("http://opsvc/v1/events?follow=0"); err == nil {
					evs, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				t.Fatalf("%s: units %+v after 60 s (%v); events:\n%s", what, st.Units, err, evs)
			}
			time.Sleep(50 * time.Millisecond) // polling the daemon's state, bounded
		}
	}

	d1 := exec.Command(exe, daemonArgs...)
	d1.Args[0] = "opsvc"
	d1.Env, d1.Stdout, d1.Stderr = env, logf, logf
	if err := d1.Start(); err != nil {
		t.Fatal(err)
	}
	running = append(running, d1)
	before := pids("first daemon", func(map[string]int) bool { return true })
	mgr.waitNames(t, storeNames)
	// The state record names every worker...
	recPath := filepath.Join(dir, "state", "handover.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(recPath)
		// ...as active: a unit recorded still starting would wait, after the
		// takeover, for a readiness its worker has already sent.
		all := strings.Count(string(b), `"State":"active"`) == len(before)
		for _, pid := range before {
			if !strings.Contains(string(b), `"pid":`+strconv.Itoa(pid)+`,`) {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not name every worker after 30 s: %s", recPath, b)
		}
		time.Sleep(20 * time.Millisecond) // written off the loop, every 100 ms at most; bounded
	}

	// The crash, and a worker that dies before the new daemon comes.
	d1.Process.Kill()
	recAtCrash, _ := os.ReadFile(recPath)
	defer func() {
		if t.Failed() {
			t.Logf("state record at the crash: %s", recAtCrash)
		}
	}()
	d1.Wait()
	running = running[:0]
	// The whole process group (the shell and its sleep); the kill takes
	// effect a moment later.
	syscall.Kill(-before["doomed"], syscall.SIGKILL)
	for procAlive(before["doomed"]) {
		if time.Now().After(deadline) {
			t.Fatalf("doomed (pid %d) still runs after SIGKILL", before["doomed"])
		}
		time.Sleep(10 * time.Millisecond) // polling the process's state, bounded
	}
	for _, u := range []string{"pa", "pb", "ipcw", "ntf"} {
		if !procAlive(before[u]) {
			t.Fatalf("%s (pid %d) died with the daemon", u, before[u])
		}
	}
	marks := map[string]int{
		"pa": lastNumber(t, filepath.Join(dir, "state", "logs", "pa.log")),
		"pb": lastNumber(t, filepath.Join(dir, "state", "logs", "pb.log")),
	}

	// systemd starts the daemon again with the stored files.
	names, files := mgr.files()
	d2 := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$@"`, "sh", filepath.Join(bin, "opsvc")}, daemonArgs...)...)
	d2.Env = append(env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	d2.ExtraFiles, d2.Stdout, d2.Stderr = files, logf, logf
	err = d2.Start()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	running = append(running, d2)
	after := pids("after the takeover", func(m map[string]int) bool { return m["doomed"] != before["doomed"] })
	for _, u := range []string{"pa", "pb", "ipcw", "ntf"} {
		if after[u] != before[u] {
			t.Errorf("%s: pid %d before the crash, %d after the takeover", u, before[u], after[u])
		}
	}

	// The IPC worker answers the new daemon.
	send := exec.Command(exe, "--socket", sock, "send", "ipcw", "ping")
	send.Args[0] = "opsvc"
	send.Env = env
	if out, err := send.CombinedOutput(); err != nil || !strings.Contains(string(out), strconv.Itoa(before["ipcw"])) {
		t.Errorf("opsvc send ipcw after the takeover: %v\n%s", err, out)
	}
	// Output goes on: 60 more lines each (2.4 s, past the watchdog of ipcw).
	deadline = time.Now().Add(60 * time.Second)
	for u, m := range marks {
		for lastNumber(t, filepath.Join(dir, "state", "logs", u+".log")) < m+60 {
			if time.Now().After(deadline) {
				t.Fatalf("%s printed nothing new after the takeover", u)
			}
			time.Sleep(50 * time.Millisecond) // the workers print every 200 ms; bounded
		}
	}
	final := pids("2 s after the takeover", func(map[string]int) bool { return true })
	for _, u := range []string{"pa", "pb", "ipcw", "ntf"} {
		if final[u] != before[u] {
			t.Errorf("%s: pid %d before the crash, %d 2 s after the takeover (watchdog?)", u, before[u], final[u])
		}
	}

	// What the new daemon said about it.
	resp, err := client.Get("http://opsvc/v1/events?follow=0")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var resumed *loadEvent
	for _, l := range strings.Split(string(evs), "\n") {
		var e loadEvent
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		switch e.Type {
		case "daemon.resumed":
			resumed = &e
		case "daemon.leftovers", "unit.watchdog":
			t.Errorf("event %d %s %s %v", e.Seq, e.Type, e.Unit, e.Data)
		}
	}
	if t.Failed() {
		t.Logf("events:\n%s", evs)
	}
	if resumed == nil {
		t.Errorf("no daemon.resumed event")
	} else if fmt.Sprint(resumed.Data["adopted"]) != "4" {
		t.Errorf("daemon.resumed = %v, want 4 workers adopted", resumed.Data)
	}

	// A clean stop ends the adopted workers too.
	d2.Process.Signal(syscall.SIGTERM)
	if err := d2.Wait(); err != nil {
		t.Errorf("second daemon: %v", err)
	}
	running = running[:0]
	deadline = time.Now().Add(20 * time.Second)
	for _, pid := range final {
		for procAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still runs after the daemon stopped", pid)
			}
			time.Sleep(20 * time.Millisecond) // polling another process's end; bounded
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fixture is one scenario's world: a units dir, a state dir, a socket, and
// a token that marks every process its units start (in argv and in the
// environment), so leftovers can be found in /proc.
type fixture struct {
	s       *suite
	dir     string
	units   string
	state   string
	sock    string
	config  string
	token   string
	env     []string // more environment for the daemons
	daemons []*daemon
}

// setup makes the scenario's fixture, or records why it could not and
// returns nil.
func (s *suite) setup(r *result, name string) *fixture {
	f, err := s.fixture(name)
	if err != nil {
		r.fail("setup: %v", err)
		return nil
	}
	return f
}

// startOrFail starts the fixture's daemon, or records why it could not and
// returns nil.
func (f *fixture) startOrFail(ctx context.Context, r *result) *daemon {
	d, err := f.start(ctx)
	if err != nil {
		r.fail("start: %v", err)
		return nil
	}
	return d
}

func (s *suite) fixture(name string) (*fixture, error) {
	dir := filepath.Join(s.root, name)
	f := &fixture{s: s, dir: dir, units: filepath.Join(dir, "units"), state: filepath.Join(dir, "state"),
		sock: filepath.Join(dir, "opsvc.sock"), config: filepath.Join(dir, "opsvc.toml")}
	var b [6]byte
	rand.Read(b[:])
	f.token = "faults" + hex.EncodeToString(b[:])
	if err := os.MkdirAll(f.units, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(f.state, 0o750); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.config, []byte("[orchestrator]\nmax_sessions_per_minute = 600\n"), 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

// close stops every daemon still running and ends any process the units
// left (after the scenario counted them).
func (f *fixture) close() {
	for _, d := range f.daemons {
		d.stop(10 * time.Second)
	}
	for _, p := range f.procs() {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// marker is the argv element and FAULTS_UNIT value of a unit's main process.
func (f *fixture) marker(unit string) string { return "faults:" + f.token + ":" + unit }

// shellUnit writes a unit running script under /bin/sh, marked with the token.
func (f *fixture) shellUnit(name, script, service, extra string) {
	body := fmt.Sprintf("[service]\nexec = [\"/bin/sh\", \"-c\", %s, %q]\nenvironment = { FAULTS_TOKEN = %q, FAULTS_UNIT = %q }\n%s%s",
		strconv.Quote(script), f.marker(name), f.token, name, service, extra)
	f.write(name+".toml", body)
}

func (f *fixture) write(name, body string) {
	tmp := filepath.Join(f.units, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.units, name)); err != nil {
		panic(err)
	}
}

// daemon is one opsvc daemon process.
type daemon struct {
	cmd    *exec.Cmd
	pid    int
	done   chan struct{}
	state  *os.ProcessState
	stderr *tailBuffer
}

// start runs `opsvc daemon` on the fixture and waits until its API answers.
func (f *fixture) start(ctx context.Context, extra ...string) (*daemon, error) {
	d, err := f.spawn(nil, extra...)
	if err != nil {
		return nil, err
	}
	if err := f.waitAPI(ctx, d, 20*time.Second); err != nil {
		d.stop(5 * time.Second)
		return nil, err
	}
	return d, nil
}

// spawn starts `opsvc daemon` on the fixture without waiting for it; wrap
// (e.g. a shell setting a ulimit, then exec "$@") may come before it.
func (f *fixture) spawn(wrap []string, extra ...string) (*daemon, error) {
	args := append([]string{"daemon", "--units", f.units, "--state", f.state, "--socket", f.sock, "--config", f.config}, extra...)
	argv := append(append([]string{}, wrap...), f.s.bin)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), f.env...)
	d := &daemon{cmd: cmd, done: make(chan struct{}), stderr: &tailBuffer{max: 256 << 10}}
	cmd.Stdout = d.stderr
	cmd.Stderr = d.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.pid = cmd.Process.Pid
	f.daemons = append(f.daemons, d)
	go func() {
		cmd.Wait()
		d.state = cmd.ProcessState
		close(d.done)
	}()
	return d, nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "OPSVC_"), k == "NOTIFY_SOCKET", strings.HasPrefix(k, "WATCHDOG_"),
			strings.HasPrefix(k, "LISTEN_"), k == "FAULTS_TOKEN", k == "FAULTS_UNIT":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// kill9 kills the daemon alone (not its group) and waits for it to be reaped.
func (d *daemon) kill9() {
	syscall.Kill(d.pid, syscall.SIGKILL)
	<-d.done
}

// stop asks the daemon to stop and kills it after grace.
func (d *daemon) stop(grace time.Duration) {
	if !d.alive() {
		return
	}
	syscall.Kill(d.pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		syscall.Kill(d.pid, syscall.SIGKILL)
		<-d.done
	}
}

func (f *fixture) waitAPI(ctx context.Context, d *daemon, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if _, err := f.unitList(ctx, 2*time.Second); err == nil {
			return nil
		} else if !d.alive() {
			return fmt.Errorf("the daemon exited (%v) before its API answered: %s", d.state, d.stderr.last(400))
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the daemon's API did not answer within %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is an HTTP client of the control socket.
func (f *fixture) client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", f.sock)
		},
	}}
}

type unitStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Sub      string `json:"sub"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Error    string `json:"error"`
	LastErr  string `json:"last_error"`
}

// unitList is GET /v1/units (what `opsvc status --json` asks).
func (f *fixture) unitList(ctx context.Context, timeout time.Duration) (map[string]unitStatus, error) {
	var out struct {
		Units []unitStatus `json:"units"`
	}
	if err := f.getJSON(ctx, "/v1/units", timeout, &out); err != nil {
		return nil, err
	}
	m := make(map[string]unitStatus, len(out.Units))
	for _, u := range out.Units {
		m[u.Name] = u
	}
	return m, nil
}

func (f *fixture) getJSON(ctx context.Context, path string, timeout time.Duration, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://opsvc"+path, nil)
	if err != nil {
		return err
	}
	resp, err := f.client(timeout).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

// waitUnits polls the unit list until ok says yes.
func (f *fixture) waitUnits(ctx context.Context, within time.Duration, ok func(map[string]unitStatus) bool) (map[string]unitStatus, error) {
	deadline := time.Now().Add(within)
	var last map[string]unitStatus
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		m, err := f.unitList(ctx, 5*time.Second)
		if err == nil {
			last = m
			if ok(m) {
				return m, nil
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		return last, lastErr
	}
	return last, fmt.Errorf("not reached within %s", within)
}

func allActive(names ...string) func(map[string]unitStatus) bool {
	return func(m map[string]unitStatus) bool {
		for _, n := range names {
			if u, ok := m[n]; !ok || u.State != "active" || u.PID == 0 {
				return false
			}
		}
		return true
	}
}

// event is one event as the bus sends it.
type event struct {
	Seq  uint64          `json:"seq"`
	Type string          `json:"type"`
	Unit string          `json:"unit"`
	PID  int             `json:"pid"`
	Data json.RawMessage `json:"data"`
	size int
}

// storedEvents reads the stored events the query selects (follow=0).
func (f *fixture) storedEvents(ctx context.Context, query string) ([]event, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?follow=0&"+query, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client(60 * time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /v1/events: %s", resp.Status)
	}
	return readEvents(resp.Body, nil)
}

// readEvents reads NDJSON events until EOF, sending each to ch when given.
func readEvents(r io.Reader, ch chan<- event) ([]event, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var out []event
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var e event
			if jerr := json.Unmarshal(line, &e); jerr == nil {
				e.size = len(line)
				if ch != nil {
					ch <- e
				} else {
					out = append(out, e)
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
	}
}

// follow streams live events (after since) into a channel until ctx ends.
func (f *fixture) follow(ctx context.Context, query string) (<-chan event, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/events?follow=1&"+query, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client(0).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /v1/events: %s", resp.Status)
	}
	ch := make(chan event, 1<<16)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		readEvents(resp.Body, ch)
	}()
	return ch, nil
}

// waitEvent reads ch until an event matches or within passes.
func waitEvent(ch <-chan event, within time.Duration, match func(event) bool) (event, bool) {
	t := time.NewTimer(within)
	defer t.Stop()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return event{}, false
			}
			if match(e) {
				return e, true
			}
		case <-t.C:
			return event{}, false
		}
	}
}

// seqGaps counts the seqs missing between stored events, and the seqs not
// increasing.
func seqGaps(evs []event) (gaps, missing uint64, disorder int) {
	for i := 1; i < len(evs); i++ {
		a, b := evs[i-1].Seq, evs[i].Seq
		switch {
		case b <= a:
			disorder++
		case b > a+1:
			gaps++
			missing += b - a - 1
		}
	}
	return
}

// cli runs the opsvc CLI against the fixture's daemon.
func (f *fixture) cli(ctx context.Context, timeout time.Duration, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.s.bin, append([]string{"--socket", f.sock, "--state", f.state}, args...)...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within %s", timeout)
	} else if _, ok := err.(*exec.ExitError); ok {
		err = nil
	}
	return o.String(), e.String(), code, err
}

// proc is a process of the fixture's units, found in /proc.
type proc struct {
	pid, ppid int
	start     uint64 // start time in clock ticks since boot (tells reused pids apart)
	unit      string // FAULTS_UNIT
	argv      []string
}

func (p proc) key() string { return strconv.Itoa(p.pid) + "/" + strconv.FormatUint(p.start, 10) }

// procs lists every live process whose environment carries the token.
func (f *fixture) procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	want := []byte("FAULTS_TOKEN=" + f.token + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		p := proc{pid: pid}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("FAULTS_UNIT=")); ok {
				p.unit = string(v)
			}
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil {
			p.argv = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
		}
		p.ppid, p.start = statOf(pid)
		if isZombie(pid) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func statOf(pid int) (ppid int, start uint64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) > 19 {
		ppid, _ = strconv.Atoi(fields[1])
		start, _ = strconv.ParseUint(fields[19], 10, 64)
	}
	return
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// roots counts, per unit, the processes whose parent is not a process of
// the same unit: one per running unit is right; more means a unit runs
// twice or something it started escaped.
func roots(ps []proc) map[string]int {
	byPid := make(map[int]proc, len(ps))
	for _, p := range ps {
		byPid[p.pid] = p
	}
	out := make(map[string]int)
	for _, p := range ps {
		if par, ok := byPid[p.ppid]; ok && par.unit == p.unit {
			continue
		}
		out[p.unit]++
	}
	return out
}

// rssKB is a process's resident set in KiB.
func rssKB(pid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// fdCount is how many fds a process has open.
func fdCount(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

// tailBuffer keeps the last max bytes written and counts lines.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	lines int
	match map[string]int // substring -> times written
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines += bytes.Count(p, []byte{'\n'})
	for k := range t.match {
		t.match[k] += bytes.Count(p, []byte(k))
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// watch starts counting occurrences of s.
func (t *tailBuffer) watch(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.match == nil {
		t.match = make(map[string]int)
	}
	t.match[s] = 0
}

func (t *tailBuffer) count(s string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.match[s]
}

func (t *tailBuffer) lineCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines
}

func (t *tailBuffer) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func (t *tailBuffer) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.buf, []byte(s))
}

// do sends a request and returns the status code of the answer.
func (f *fixture) do(ctx context.Context, method, path string, body io.Reader, timeout time.Duration) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://opsvc"+path, body)
	if err != nil {
		return 0, err
	}
	resp, err := f.client(timeout).Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// instance is one launch of a supervisor with N programs in one child mode.
type instance struct {
	h     *harness
	peer  peer
	dir   string // fresh, empty; removed after teardown
	n     int
	mode  string // sleep | graceful | ignore
	roots []int  // the supervisor's top pid(s)
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	probs int           // problems of the peer before this instance
}

func prog(i int) string { return fmt.Sprintf("p%04d", i) }

func (in *instance) tag(i int) string { return in.h.prefix + prog(i) }

// argv is program i's command line: the child in this instance's mode, tagged.
func (in *instance) argv(i int) []string { return []string{in.h.child, in.mode, in.tag(i)} }

func (in *instance) path(name string) string { return filepath.Join(in.dir, name) }

// launch starts the supervisor's root process in the background, in its own
// process group, output to a file of the instance.
func (in *instance) launch(env []string, name string, args ...string) error {
	out, err := os.OpenFile(in.path("out.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir = in.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{}) // this process's: a later launch (--replace) has its own
	in.cmd, in.roots, in.done = cmd, []int{cmd.Process.Pid}, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	return nil
}

// signalRoot sends sig to the launched root and waits (bounded) for its exit.
func (in *instance) signalRoot(sig syscall.Signal, wait time.Duration) bool {
	if in.cmd == nil {
		return true
	}
	in.cmd.Process.Signal(sig)
	return in.waitRoot(wait)
}

func (in *instance) waitRoot(wait time.Duration) bool {
	if in.done == nil {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-in.done:
		return true
	case <-t.C:
		return false
	}
}

// command runs a supervisor's command line tool, bounded, and returns its stdout.
func command(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second // a daemon it spawned may hold the pipes
	err := cmd.Run()
	if err != nil && errb.Len() > 0 {
		err = fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(lastLine(errb.String())))
	}
	return out.Bytes(), err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

var errNoStatus = errors.New("no status command")

// peer drives one supervisor. Every method is bounded in time.
type peer interface {
	name() string
	// available returns why the supervisor cannot run here, or nil.
	available() error
	version() string
	// setup writes the configuration for in.n programs; it starts nothing.
	setup(in *instance) error
	// start launches the supervisor so that it starts every program; it may
	// return before the children are up, and sets in.roots.
	start(ctx context.Context, in *instance) error
	// status is how many programs the supervisor's own status command reports running.
	status(ctx context.Context, in *instance) (int, error)
	// stopAll is the supervisor's own "stop every program" (TERM, KILL after the stop timeout).
	stopAll(ctx context.Context, in *instance) error
	// teardown stops the supervisor and all it runs.
	teardown(in *instance)
}

func lookPath(name string) error {
	_, err := exec.LookPath(name)
	return err
}

func needAll(names ...string) error {
	for _, n := range names {
		if lookPath(n) != nil {
			return fmt.Errorf("%s not found (make bench-deps installs it)", n)
		}
	}
	return nil
}

func dpkgVersion(pkg string) string {
	out, err := command(context.Background(), 10*time.Second, nil, "dpkg-query", "-W", "-f=${Version}", pkg)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// ---------------------------------------------------------------- opsvc

// opsvcPeer: one unit file per program; restart = "always", restart_delay =
// "0", a start limit no benchmark reaches, stop_timeout = the stop timeout.
type opsvcPeer struct{ bin string }

func (opsvcPeer) name() string { return "opsvc" }

func (p opsvcPeer) available() error {
	if _, err := os.Stat(p.bin); err != nil {
		return fmt.Errorf("%s not found (make build)", p.bin)
	}
	return nil
}

func (p opsvcPeer) version() string {
	out, err := command(context.Background(), 10*time.Second, nil, p.bin, "version")
	if err != nil {
		return "opsvc ?"
	}
	return strings.TrimSpace(string(out))
}

func (p opsvcPeer) unitFile(in *instance, i int, extra string) []byte {
	q := make([]string, 0, 3)
	for _, a := range in.argv(i) {
		q = append(q, strconv.Quote(a))
	}
	return fmt.Appendf(nil, "[service]\nexec = [%s]\nrestart = \"always\"\nrestart_delay = \"0\"\nstart_limit_burst = 100000\nstop_signal = \"SIGTERM\"\nstop_timeout = %q\n%s%s",
		strings.Join(q, ", "), in.h.opt.stopTimeout.String(), sharedOutput(in.n), extra)
}

func (p opsvcPeer) setup(in *instance) error {
	if err := os.MkdirAll(in.path("units"), 0o755); err != nil {
		return err
	}
	for i := 1; i <= in.n; i++ {
		if err := os.WriteFile(in.path("units/"+prog(i)+".toml"), p.unitFile(in, i, ""), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (p opsvcPeer) socket(in *instance) string { return in.path("s") }

func (p opsvcPeer) start(_ context.Context, in *instance) error {
	return in.launch(nil, p.bin, "daemon", "--units", in.path("units"), "--state", in.path("state"),
		"--socket", p.socket(in), "--config", in.path("opsvc.toml"))
}

// replace starts a new daemon on in's directories that takes over from the
// running one (opsvc daemon --replace); it becomes in's root.
func (p opsvcPeer) replace(in *instance) error {
	return in.launch(nil, p.bin, "daemon", "--replace", "--units", in.path("units"), "--state", in.path("state"),
		"--socket", p.socket(in), "--config", in.path("opsvc.toml"))
}

func (p opsvcPeer) status(ctx context.Context, in *instance) (int, error) {
	out, err := command(ctx, 60*time.Second, nil, p.bin, "--socket", p.socket(in), "status", "--json")
	var st struct {
		Units []struct {
			State string `json:"state"`
		} `json:"units"`
	}
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, err
	}
	n := 0
	for _, u := range st.Units {
		if u.State == "active" {
			n++
		}
	}
	return n, nil // exit status 3 only says that a unit is not active
}

func (p opsvcPeer) names(in *instance) []string {
	names := make([]string, in.n)
	for i := range names {
		names[i] = prog(i + 1)
	}
	return names
}

// stopAll: `opsvc stop --no-wait` every unit; the daemon stops them in
// parallel (the harness times the children's exits).
func (p opsvcPeer) stopAll(ctx context.Context, in *instance) error {
	args := append([]string{"--socket", p.socket(in), "stop", "--no-wait"}, p.names(in)...)
	_, err := command(ctx, 10*time.Minute, nil, p.bin, args...)
	return err
}

// stopAllWaiting is `opsvc stop NAMES...` without --no-wait.
func (p opsvcPeer) stopAllWaiting(ctx context.Context, in *instance, timeout time.Duration) error {
	args := append([]string{"--socket", p.socket(in), "stop"}, p.names(in)...)
	_, err := command(ctx, timeout, nil, p.bin, args...)
	return err
}

func (p opsvcPeer) teardown(in *instance) { in.signalRoot(syscall.SIGTERM, 30*time.Second) }

// ---------------------------------------------------------------- floor

// floorPeer is the lower bound: a bare Go program that forks the same
// children from as many goroutines as cores, restarts one the moment it
// exits, and on SIGTERM stops them all (TERM, KILL after the stop timeout).
type floorPeer struct{ bin string }

func (floorPeer) name() string { return "floor" }

func (p floorPeer) available() error {
	if p.bin == "" {
		return errors.New("floor program not built (run.sh builds it)")
	}
	if _, err := os.Stat(p.bin); err != nil {
		return fmt.Errorf("%s not found", p.bin)
	}
	return nil
}

func (floorPeer) version() string { return "floor (contrib/bench/floor)" }

func (floorPeer) setup(*instance) error { return nil }

func (p floorPeer) start(_ context.Context, in *instance) error {
	return in.launch(nil, p.bin, "-n", strconv.Itoa(in.n), "-child", in.h.child, "-mode", in.mode,
		"-prefix", in.h.prefix, "-stop-timeout", in.h.opt.stopTimeout.String())
}

func (floorPeer) status(context.Context, *instance) (int, error) { return 0, errNoStatus }

// stopAll: SIGTERM is the floor's only stop; it exits once its children are gone.
func (floorPeer) stopAll(_ context.Context, in *instance) error {
	if in.cmd == nil {
		return errors.New("not started")
	}
	return in.cmd.Process.Signal(syscall.SIGTERM)
}

func (floorPeer) teardown(in *instance) { in.signalRoot(syscall.SIGTERM, 30*time.Second) }

// ---------------------------------------------------------------- supervisord

// supervisordPeer: one supervisord -n with N [program:pNNNN] sections;
// autorestart, startsecs=0 (never BACKOFF), stopwaitsecs = the stop timeout,
// child output NONE. Its main loop polls with a fixed 1 s timeout.
type supervisordPeer struct{}

func (supervisordPeer) name() string { return "supervisord" }

func (supervisordPeer) available() error { return needAll("supervisord", "supervisorctl") }

func (supervisordPeer) version() string {
	out, err := command(context.Background(), 20*time.Second, nil, "supervisord", "--version")
	if err != nil {
		return "supervisord ?"
	}
	return "supervisord " + strings.TrimSpace(string(out))
}

func (supervisordPeer) setup(in *instance) error {
	var b strings.Builder
	b.WriteString("[unix_http_server]\nfile=%(here)s/supervisor.sock\n\n[supervisord]\nnodaemon=true\n" +
		"logfile=%(here)s/supervisord.log\npidfile=%(here)s/supervisord.pid\nchildlogdir=%(here)s\n\n" +
		"[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n" +
		"[supervisorctl]\nserverurl=unix://%(here)s/supervisor.sock\n\n")
	for i := 1; i <= in.n; i++ {
		fmt.Fprintf(&b, "[program:%s]\ncommand=%s\nautostart=true\nautorestart=true\nstartsecs=0\n"+
			"stopsignal=TERM\nstopwaitsecs=%d\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n",
			prog(i), strings.Join(in.argv(i), " "), int(in.h.opt.stopTimeout.Seconds()))
	}
	return os.WriteFile(in.path("supervisord.conf"), []byte(b.String()), 0o644)
}

func (supervisordPeer) start(_ context.Context, in *instance) error {
	return in.launch(nil, "supervisord", "-n", "-c", in.path("supervisord.conf"))
}

func (supervisordPeer) status(ctx context.Context, in *instance) (int, error) {
	out, err := command(ctx, 60*time.Second, nil, "supervisorctl", "-c", in.path("supervisord.conf"), "status")
	n := 0
	for l := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == "RUNNING" {
			n++
		}
	}
	if n == 0 && err != nil {
		return 0, err
	}
	return n, nil // supervisorctl exits 3 while a program is not running
}

func (supervisordPeer) stopAll(ctx context.Context, in *instance) error {
	_, err := command(ctx, 10*time.Minute, nil, "supervisorctl", "-c", in.path("supervisord.conf"), "stop", "all")
	return err
}

func (supervisordPeer) teardown(in *instance) { in.signalRoot(syscall.SIGTERM, 30*time.Second) }

// ---------------------------------------------------------------- runit

// runitPeer: runsvdir -P on a directory with N services, one runsv each;
// run = `exec CHILD`. runsv restarts at once but not sooner than 1 s after
// the previous start (hard-coded). runit has no stop timeout: stop-all is
// `sv -w T force-stop` (TERM, then KILL after T).
type runitPeer struct{}

func (runitPeer) name() string { return "runit" }

func (runitPeer) available() error { return needAll("runsvdir", "runsv", "sv") }

func (runitPeer) version() string { return "runit " + dpkgVersion("runit") }

func (runitPeer) setup(in *instance) error {
	svc := in.path("service")
	for i := 1; i <= in.n; i++ {
		d := filepath.Join(svc, prog(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "run"), []byte("#!/bin/sh\nexec "+strings.Join(in.argv(i), " ")+"\n"), 0o755); err != nil {
			return err
		}
	}
	// runsvdir sleeps 1 s before scanning a directory modified in the current
	// second; a real service directory is older than runsvdir's start.
	old := time.Now().Add(-10 * time.Second)
	return os.Chtimes(svc, old, old)
}

func (runitPeer) start(_ context.Context, in *instance) error {
	return in.launch(nil, "runsvdir", "-P", in.path("service"))
}

func (runitPeer) dirs(in *instance) []string {
	d := make([]string, in.n)
	for i := range d {
		d[i] = filepath.Join(in.path("service"), prog(i+1))
	}
	return d
}

func (p runitPeer) status(ctx context.Context, in *instance) (int, error) {
	out, err := command(ctx, 60*time.Second, nil, "sv", append([]string{"status"}, p.dirs(in)...)...)
	n := 0
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "run:") {
			n++
		}
	}
	if n == 0 && err != nil {
		return 0, err
	}
	return n, nil
}

// stopAll: sv exits with the number of services it had to kill, so a
// non-zero status is expected when the children ignore SIGTERM.
func (p runitPeer) stopAll(ctx context.Context, in *instance) error {
	_, err := command(ctx, 10*time.Minute, nil, "sv",
		append([]string{"-w", strconv.Itoa(int(in.h.opt.stopTimeout.Seconds())), "force-stop"}, p.dirs(in)...)...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil
	}
	return err
}

// teardown: SIGHUP makes runsvdir send TERM to every runsv (which stops its
// service, then exits) and exit.
func (runitPeer) teardown(in *instance) { in.signalRoot(syscall.SIGHUP, 15*time.Second) }

// ---------------------------------------------------------------- s6

// s6Peer: s6-svscan on a scan directory with N services, one s6-supervise
// each. s6-supervise respawns at once only for a service that uses readiness
// notification (and not sooner than 1 s after it last became ready), else
// after 1 s: every run script declares readiness on fd 3 first. timeout-kill
// = the stop timeout, so s6-supervise escalates itself.
type s6Peer struct{}

func (s6Peer) name() string { return "s6" }

func (s6Peer) available() error {
	return needAll("s6-svscan", "s6-supervise", "s6-svc", "s6-svstat", "s6-svscanctl")
}

func (s6Peer) version() string { return "s6 " + dpkgVersion("s6") }

func (s6Peer) setup(in *instance) error {
	for i := 1; i <= in.n; i++ {
		d := filepath.Join(in.path("scan"), prog(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		run := "#!/bin/sh\necho >&3\nexec " + strings.Join(in.argv(i), " ") + " 3>&-\n"
		if err := os.WriteFile(filepath.Join(d, "run"), []byte(run), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "notification-fd"), []byte("3\n"), 0o644); err != nil {
			return err
		}
		ms := strconv.FormatInt(in.h.opt.stopTimeout.Milliseconds(), 10)
		if err := os.WriteFile(filepath.Join(d, "timeout-kill"), []byte(ms+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s6Peer) start(_ context.Context, in *instance) error {
	return in.launch(nil, "s6-svscan", "-c", strconv.Itoa(max(1000, 2*in.n+16)), in.path("scan"))
}

func (s6Peer) status(ctx context.Context, in *instance) (int, error) {
	n := 0
	for i := 1; i <= in.n; i++ {
		out, err := command(ctx, 10*time.Second, nil, "s6-svstat", "-o", "up", filepath.Join(in.path("scan"), prog(i)))
		if err == nil && strings.TrimSpace(string(out)) == "true" {
			n++
		}
	}
	return n, nil
}

// stopAll: s6-svc takes one service directory; the N calls run concurrently
// (one shell, N background jobs), the fastest way s6 offers without s6-rc.
func (s6Peer) stopAll(ctx context.Context, in *instance) error {
	_, err := command(ctx, 10*time.Minute, nil, "sh", "-c", `for d in "$1"/*/; do s6-svc -d "$d" & done; wait`, "sh", in.path("scan"))
	return err
}

// teardown: s6-svscanctl -t makes every s6-supervise bring its service down
// (honouring timeout-kill) and exit, then s6-svscan exits.
func (s6Peer) teardown(in *instance) {
	if _, err := command(context.Background(), 10*time.Second, nil, "s6-svscanctl", "-t", in.path("scan")); err != nil {
		in.signalRoot(syscall.SIGTERM, 15*time.Second)
		return
	}
	in.waitRoot(15 * time.Second)
}

// ---------------------------------------------------------------- PM2

// pm2Peer: a private PM2 daemon (PM2_HOME in the instance) started by `pm2
// start ecosystem.json` with N fork-mode apps (interpreter none),
// autorestart, restart_delay 0, kill_timeout = the stop timeout,
// PM2_KILL_SIGNAL=SIGTERM (PM2's default is SIGINT), and
// PM2_CONCURRENT_ACTIONS=N so that start and stop act on every app at once
// (PM2's default is 2 at a time).
type pm2Peer struct{ bin string }

func (pm2Peer) name() string { return "pm2" }

func (p pm2Peer) available() error {
	if lookPath("node") != nil {
		return errors.New("node not found")
	}
	if lookPath(p.bin) != nil {
		return fmt.Errorf("%s not found (make bench-deps installs pm2)", p.bin)
	}
	return nil
}

func (p pm2Peer) version() string {
	bin, err := exec.LookPath(p.bin)
	if err != nil {
		return "pm2 ?"
	}
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return "pm2 ?"
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(real), "..", "package.json"))
	var pkg struct {
		Version string `json:"version"`
	}
	if err != nil || json.Unmarshal(data, &pkg) != nil {
		return "pm2 ?"
	}
	return "pm2 " + pkg.Version
}

func (p pm2Peer) env(in *instance) []string {
	return []string{"PM2_HOME=" + in.path("pm2"), "PM2_KILL_SIGNAL=SIGTERM",
		"PM2_CONCURRENT_ACTIONS=" + strconv.Itoa(in.n)}
}

func (p pm2Peer) setup(in *instance) error {
	if err := os.MkdirAll(in.path("pm2"), 0o755); err != nil {
		return err
	}
	type app struct {
		Name        string   `json:"name"`
		Script      string   `json:"script"`
		Args        []string `json:"args"`
		Interpreter string   `json:"interpreter"`
		ExecMode    string   `json:"exec_mode"`
		Autorestart bool     `json:"autorestart"`
		Delay       int      `json:"restart_delay"`
		KillTimeout int64    `json:"kill_timeout"`
		Out         string   `json:"out_file"`
		Err         string   `json:"error_file"`
	}
	apps := make([]app, in.n)
	for i := range apps {
		a := in.argv(i + 1)
		apps[i] = app{Name: prog(i + 1), Script: a[0], Args: a[1:], Interpreter: "none", ExecMode: "fork",
			Autorestart: true, KillTimeout: in.h.opt.stopTimeout.Milliseconds(), Out: "/dev/null", Err: "/dev/null"}
	}
	data, err := json.MarshalIndent(map[string]any{"apps": apps}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(in.path("ecosystem.json"), data, 0o644)
}

// start runs `pm2 start`, which spawns the PM2 daemon and returns once it
// has started every app; the daemon's pid is in PM2_HOME/pm2.pid.
func (p pm2Peer) start(ctx context.Context, in *instance) error {
	out, err := os.OpenFile(in.path("pm2-cli.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(60+in.n/2)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "start", in.path("ecosystem.json"))
	cmd.Dir = in.dir
	cmd.Env = append(os.Environ(), p.env(in)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	p.readRoot(in)
	return err
}

func (p pm2Peer) readRoot(in *instance) {
	data, err := os.ReadFile(in.path("pm2/pm2.pid"))
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
		in.roots = []int{pid}
	}
}

func (p pm2Peer) status(ctx context.Context, in *instance) (int, error) {
	out, err := command(ctx, 60*time.Second, p.env(in), p.bin, "jlist")
	if i := bytes.IndexByte(out, '['); i >= 0 {
		out = out[i:]
	}
	var list []struct {
		Env struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	if jerr := json.Unmarshal(out, &list); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, err
	}
	n := 0
	for _, a := range list {
		if a.Env.Status == "online" {
			n++
		}
	}
	return n, nil
}

func (p pm2Peer) stopAll(ctx context.Context, in *instance) error {
	_, err := command(ctx, 10*time.Minute, p.env(in), p.bin, "stop", "all")
	return err
}

// teardown: `pm2 kill` deletes every app (TERM, KILL after kill_timeout) and
// stops the daemon.
func (p pm2Peer) teardown(in *instance) {
	command(context.Background(), 2*time.Minute, p.env(in), p.bin, "kill")
	if len(in.roots) == 1 {
		waitGone([]proc{{pid: in.roots[0]}}, 10*time.Second)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/logs"
)

// checkStateTimeout bounds the new binary's check of the state record. It
// runs before the daemon pauses.
const checkStateTimeout = 30 * time.Second

// drainTimeout bounds the wait for control requests under way before a
// re-exec.
const drainTimeout = 5 * time.Second

// gate counts the control requests under way, so that a re-exec waits for
// them. Streams (events, followed logs) and requests that wait for a unit
// are not waited for: they end with the process, and their clients see the
// connection close.
type gate struct {
	h    http.Handler
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0 while a re-exec waits
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if longRequest(r) {
		g.h.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.n--
		if g.n == 0 && g.zero != nil {
			close(g.zero)
			g.zero = nil
		}
		g.mu.Unlock()
	}()
	g.h.ServeHTTP(w, r)
}

// longRequest is a request a re-exec does not wait for.
func longRequest(r *http.Request) bool {
	q := r.URL.Query()
	p := r.URL.Path
	return strings.HasSuffix(p, "/events") || strings.HasSuffix(p, "/events/ws") || p == "/v1/daemon/reexec" || p == "/v1/daemon/handover" ||
		q.Get("follow") == "1" || q.Get("wait") == "1"
}

// drain waits until no counted request is under way, at most d.
func (g *gate) drain(d time.Duration) bool {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return true
	}
	zero := make(chan struct{})
	g.zero = zero
	g.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-zero:
		return true
	case <-t.C:
		return false
	}
}

// control serves the control socket, and stops accepting (not closing the
// socket) for a re-exec.
type control struct {
	h    http.Handler
	logf func(string, ...any)

	mu      sync.Mutex
	srv     *supervisor.Server
	ln      net.Listener
	serving sync.WaitGroup
}

func (c *control) serve(ln net.Listener) {
	srv := supervisor.NewServer(c.h, supervisor.Limits{}, c.logf)
	c.mu.Lock()
	c.srv, c.ln = srv, ln
	c.mu.Unlock()
	c.serving.Add(1)
	go func() {
		defer c.serving.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.logf("control socket: %v", err)
		}
	}()
}

// pause stops accepting: new clients wait in the socket's backlog. It
// returns a duplicate of the listening socket to serve again or hand over.
func (c *control) pause() (*os.File, error) {
	c.mu.Lock()
	srv, ln := c.srv, c.ln
	c.mu.Unlock()
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return nil, errors.New("the control socket is not a unix socket")
	}
	f, err := dupConn(ul)
	if err != nil {
		return nil, fmt.Errorf("keep the control socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv.Shutdown(ctx) // closes the listener and idle connections, leaves the others
	return f, nil
}

// resume serves again on f (a re-exec that did not happen).
func (c *control) resume(f *os.File) error {
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return err
	}
	c.serve(ln)
	return nil
}

// shutdown stops serving, giving requests under way until ctx ends.
func (c *control) shutdown(ctx context.Context) {
	c.mu.Lock()
	srv := c.srv
	c.mu.Unlock()
	srv.Shutdown(ctx)
	c.serving.Wait()
}

// reexecer re-executes the daemon in place, workers kept (see package
// handover).
type reexecer struct {
	exe    string
	argv   []string
	sup    *supervisor.Supervisor
	runner *supervisor.ExecRunner
	ctl    *control
	gate   *gate
	bus    *bus.Bus
	logs   *logs.Logs
	logf   func(string, ...any)
	notify func(string) error
	// state is the state directory; managed is set under a service
	// manager (NOTIFY_SOCKET), which a handover to a new daemon would
	// leave believing the service ended.
	state   string
	managed bool

	mu sync.Mutex // one re-exec or handover at a time
}

// prepare pauses the daemon and has the binary at x.exe check the state. On
// an error the daemon runs on as before. On success the daemon stays
// paused; the returned step execs.
func (x *reexecer) prepare(ctx context.Context) (api.ReexecReply, func(), error) {
	if !x.mu.TryLock() {
		return api.ReexecReply{}, nil, errors.New("a re-exec is already under way")
	}
	// The watches of the unit files and settings end first, while the new
	// binary checks the state: closing them waits for the kernel, which
	// would otherwise hold the new process back after the exec.
	unwatched, rewatch, err := x.sup.Unwatch(ctx)
	if err != nil {
		x.mu.Unlock()
		return api.ReexecReply{}, nil, err
	}
	refuse := func(err error) (api.ReexecReply, func(), error) {
		x.bus.Publish(bus.Event{Type: api.TypeDaemonReexecRefused, PID: os.Getpid(), Data: api.Map(api.DaemonReexecRefused{Executable: x.exe, Reason: err.Error()})})
		x.logf("re-exec refused: %v; running on", err)
		rewatch()
		x.mu.Unlock()
		return api.ReexecReply{}, nil, err
	}
	// The new binary checks it reads this binary's records before anything
	// stops: a refusal costs no pause.
	probe := &handover.Record{Written: time.Now(), PID: os.Getpid(), Units: []handover.Unit{}}
	began := time.Now()
	err = checkState(ctx, x.runner, x.exe, x.argv[0], probe)
	if err != nil {
		return refuse(err)
	}
	x.logf("re-exec: %s read the state record in %v", x.exe, time.Since(began).Round(time.Millisecond))
	lf, fr, resumeServing, err := x.pauseAndFreeze(ctx, "re-exec")
	if err != nil {
		return refuse(err)
	}
	ev := x.bus.Publish(bus.Event{Type: api.TypeDaemonReexec, PID: os.Getpid(), Data: api.Map(api.DaemonReexec{Executable: x.exe, Units: len(fr.Record.Units)})})
	reply := api.ReexecReply{Message: "re-executing " + x.exe + "; workers keep running", Executable: x.exe, Seq: ev.Seq}
	return reply, func() {
		waitUnwatched(unwatched)
		err := x.exec(fr, lf)
		// Only a failed exec comes back.
		for _, f := range fr.Files {
			closeOnExec(f)
		}
		fr.Thaw()
		resumeServing()
		refuse(err)
	}, nil
}

// unwatchTimeout bounds the wait for the file watches to close before an
// exec or a handover goes on without it.
const unwatchTimeout = time.Second

// waitUnwatched waits for the watches to be closed (see
// supervisor.Unwatch), at most unwatchTimeout.
func waitUnwatched(done <-chan struct{}) {
	t := time.NewTimer(unwatchTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// pauseAndFreeze stops serving the control socket (its listener is lf),
// lets the requests under way finish (within drainTimeout) and freezes the
// supervisor. resume serves the socket again; on an error it has run already.
func (x *reexecer) pauseAndFreeze(ctx context.Context, what string) (lf *os.File, fr *supervisor.Frozen, resume func(), err error) {
	if lf, err = x.ctl.pause(); err != nil {
		return nil, nil, nil, err
	}
	resume = func() {
		if err := x.ctl.resume(lf); err != nil {
			x.logf("control socket: serve again: %v", err)
		}
	}
	if !x.gate.drain(drainTimeout) {
		x.logf("%s: control requests still under way after %v are cut", what, drainTimeout)
	}
	if fr, err = x.sup.Freeze(ctx); err != nil {
		resume()
		return nil, nil, nil, err
	}
	return lf, fr, resume, nil
}

// exec hands everything over and execs; it returns only on failure.
func (x *reexecer) exec(fr *supervisor.Frozen, lf *os.File) error {
	files := fr.Files
	files[handover.NameControl] = lf
	if !x.logs.Flush(2 * time.Second) {
		x.logf("re-exec: some log lines were not written yet")
	}
	if err := handover.Inherit(fr.Record, files); err != nil {
		delete(files, handover.NameControl)
		return err
	}
	delete(files, handover.NameControl) // not the supervisor's to close on a failure
	mf, err := handover.WriteMemfd(fr.Record)
	if err != nil {
		return err
	}
	defer mf.Close()
	env, err := handover.ExecEnv(os.Environ(), mf)
	if err != nil {
		return err
	}
	if x.notify != nil {
		x.notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
	}
	x.logf("re-executing %s with %d units", x.exe, len(fr.Record.Units))
	err = x.runner.Exec(x.exe, x.argv, env)
	if x.notify != nil {
		x.notify("READY=1")
	}
	return err
}

// checkState runs `EXE daemon --check-state` on the record as a child of
// runner (whose reaper takes every child's exit), bounded in time; argv0 is
// the name the daemon was started under.
func checkState(ctx context.Context, runner *supervisor.ExecRunner, exe, argv0 string, rec *handover.Record) error {
	mf, err := handover.WriteMemfd(rec)
	if err != nil {
		return err
	}
	defer mf.Close()
	ctx, cancel := context.WithTimeout(ctx, checkStateTimeout)
	defer cancel()
	cmd := exec.Command(exe, "daemon", "--check-state", "/dev/fd/3")
	cmd.Args[0] = argv0
	cmd.ExtraFiles = []*os.File{mf}
	cmd.Env = os.Environ()
	out, err := runner.RunChild(ctx, cmd)
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not check the state within %v", exe, checkStateTimeout)
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s cannot take over: %s", exe, strings.TrimPrefix(msg, "opsvc: "))
	}
	return nil
}

// runCheckState is `opsvc daemon --check-state FILE`.
func runCheckState(c *cli, path string) error {
	rec, err := handover.Check(path)
	if err != nil {
		return fail(exitFailure, "daemon: check state %s: %v", path, strings.TrimPrefix(err.Error(), "handover: "))
	}
	fmt.Fprintf(c.stdout, "state record version %d from pid %d: %d units, readable\n", rec.Version, rec.PID, len(rec.Units))
	return nil
}

// reexecVerb is `opsvc daemon-reexec`: the daemon execs its binary again,
// workers kept; it returns once the new process answers.
func (c *cli) reexecVerb() error {
	var reply api.ReexecReply
	if err := c.call("POST", "/v1/daemon/reexec", nil, nil, &reply); err != nil {
		return asExit("daemon-reexec", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	pause := 5 * time.Millisecond
	for time.Now().Before(deadline) {
		q := url.Values{"since": {strconv.FormatUint(reply.Seq, 10)}, "follow": {"0"},
			"type": {api.TypeDaemonResumed, api.TypeDaemonReexecRefused}}
		evs, err := c.storedEvents(q)
		if err == nil {
			for _, e := range evs {
				switch e.Type {
				case api.TypeDaemonResumed:
					var d api.DaemonResumed
					api.Decode(e.Data, &d)
					if d.Lost > 0 {
						return fail(exitFailure, "daemon-reexec: re-executed, but %d worker(s) could not be taken over (see: opsvc events --type unit.adopt_failed)", d.Lost)
					}
					fmt.Fprintf(c.stdout, "re-executed %s: %d worker(s) kept running\n", reply.Executable, d.Adopted)
					return nil
				case api.TypeDaemonReexecRefused:
					var d api.DaemonReexecRefused
					api.Decode(e.Data, &d)
					return fail(exitFailure, "daemon-reexec: %s (the daemon runs on as it was)", d.Reason)
				}
			}
		}
		time.Sleep(pause) // the daemon is being replaced; poll its socket
		pause = min(2*pause, 200*time.Millisecond)
	}
	return fail(exitFailure, "daemon-reexec: the daemon did not answer within a minute of the re-exec (see its log, and: opsvc status)")
}

// storedEvents reads the stored events that match q (follow=0).
func (c *cli) storedEvents(q url.Values) ([]bus.Event, error) {
	resp, err := c.do("GET", "/v1/events", q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []bus.Event
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	for {
		var e bus.Event
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, e)
	}
}

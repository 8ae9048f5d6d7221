package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
)

// runDaemon is `opsvc daemon`: it runs until SIGTERM or SIGINT, then stops
// every unit and exits 0 once no worker is left.
func runDaemon(c *cli) error {
	if c.args.has("check-state") {
		return runCheckState(c, c.args.get("check-state"))
	}
	// Workers are forked, and a re-exec runs, on this goroutine's thread:
	// the main thread when called from main (see init), which survives an
	// exec (see supervisor.NewExecRunnerOnMain).
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	forks := make(chan func())
	errc := make(chan error, 1)
	go func() { errc <- daemonMain(c, forks) }()
	for {
		select {
		case f := <-forks:
			f()
		case err := <-errc:
			return err
		}
	}
}

// daemonMain is the daemon; forks are run by runDaemon.
func daemonMain(c *cli, forks chan func()) error {
	// Taking over from the daemon before this one, the control socket does
	// not answer until the workers are adopted and the units read: the
	// garbage collector runs less often until the daemon is ready (the
	// heap is a few megabytes).
	restoreGC := func() {}
	if os.Getenv(handover.EnvFD) != "" || c.args.has("replace") {
		gc := debug.SetGCPercent(takeoverGCPercent)
		restoreGC = func() { debug.SetGCPercent(gc) }
	}
	p := c.paths
	for _, d := range []*string{&p.Units, &p.State, &p.Socket, &p.Config} {
		if abs, err := filepath.Abs(*d); err == nil {
			*d = abs
		}
	}
	settings, err := config.LoadSettings(p.Config)
	if err != nil {
		return fail(exitFailure, "daemon: %v", err)
	}
	// The unit files are read while the daemon starts, and takes over from
	// the one before it.
	pre := supervisor.StartPreload(p, settings, !c.args.has("no-watch"))
	defer pre.Close()
	// A re-exec hands over its state and files: take them before anything
	// that may start a process (no worker must inherit them).
	hrec, hfiles, herr := handover.FromEnv()
	logger := log.New(c.stderr, "opsvc: ", 0)
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	replaced := false
	if hrec == nil && herr == nil && c.args.has("replace") {
		// Taking over from the daemon running on the socket: its state and
		// files once it has exited.
		hrec, hfiles, err = replaceRunning(p.Socket, p.State, exe, logger.Printf)
		if err != nil {
			return fail(exitFailure, "replace the running daemon: %v", err)
		}
		replaced = hrec != nil
	}
	if hrec == nil && herr == nil {
		// Restarted by a service manager after a crash: the workers' files
		// from its store, the state record from the state directory.
		hrec, hfiles, herr = supervisor.FromFDStore(p.State)
	}
	if err := os.MkdirAll(p.State, 0o750); err != nil {
		return fail(exitFailure, "daemon: state directory: %v (--state)", err)
	}
	unlock, err := lockState(p.State)
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	defer unlock()
	fleet, err := joinFleet(c.ctx, p, settings)
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	defer fleet.close()
	if herr != nil {
		logger.Printf("%v; starting afresh (workers left by the daemon before are ended)", herr)
	}
	var ln net.Listener
	switch f := hfiles.Take(handover.NameControl); {
	case f != nil:
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			hfiles.Close()
			return fail(exitFailure, "daemon: control socket handed over: %v", err)
		}
	case isPipe(p.Socket):
		if ln, err = listenPipe(p.Socket); err != nil {
			hfiles.Close()
			return fail(exitFailure, "daemon: %v", err)
		}
	default:
		if err := os.MkdirAll(filepath.Dir(p.Socket), 0o750); err != nil {
			hfiles.Close()
			return fail(exitFailure, "daemon: socket directory: %v (--socket)", err)
		}
		if ln, err = listenControl(p.Socket); err != nil {
			hfiles.Close()
			return fail(exitFailure, "daemon: %v", err)
		}
	}
	if !isPipe(p.Socket) {
		defer os.Remove(p.Socket)
	}

	b, err := bus.Open(p.State, bus.Options{Logf: logger.Printf})
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: event log: %v", err)
	}
	defer b.Close()
	lg, err := logs.New(logs.Options{Dir: filepath.Join(p.State, "logs"), Fault: func(err error) { b.ReportFault("logs", err) }})
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: logs: %v", err)
	}
	defer lg.Close()
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logger.Print(msg)
		lg.Logf("%s", msg)
	}
	if fleet != nil {
		fleet.attach(b, logf)
	}
	tc, err := listenConsole(c, p, settings, logf)
	if err != nil {
		ln.Close()
		return err
	}
	if tc != nil {
		defer tc.stop(logf)
	}
	var reg registry.Backend
	if fleet != nil {
		reg, err = fleet.registry(func(err error) { b.ReportFault("registry", err) })
	} else {
		reg, err = registry.Open(p.State, registry.Options{WriteFault: func(err error) { b.ReportFault("registry", err) }})
	}
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: registry: %v", err)
	}
	runner, err := supervisor.NewExecRunnerOnMain(true, forks)
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	defer runner.Close()
	how, err := runner.TrackKeeping(p.State, hrec, func(unitName string, d api.EventData) {
		b.Publish(bus.Event{Type: d.EventType(), Unit: unitName, Data: api.Map(d)})
	}, logf)
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	logf("processes of units are tracked %s", how)
	notify := func(state string) error { _, err := sdnotify.Notify(state); return err }
	x := &reexecer{exe: exe, argv: os.Args, runner: runner, bus: b, logs: lg, logf: logf, notify: notify,
		state: p.State, managed: os.Getenv("NOTIFY_SOCKET") != ""}
	fleetUnits := newFleetUnits(placementClient(fleet), logf)
	sup, err := supervisor.New(supervisor.Options{
		Paths:            p,
		Settings:         settings,
		Runner:           runner,
		Bus:              b,
		Logs:             lg,
		Registry:         reg,
		Logf:             logf,
		Executable:       exe,
		Notify:           notify,
		WatchdogInterval: sdnotify.WatchdogInterval(),
		Watch:            !c.args.has("no-watch"),
		Fleet:            fleet.leases(),
		Preload:          pre,
		Handover:         hrec,
		HandoverFiles:    hfiles,
		FDStore:          fdStore(p.State, logf),
		Reexec: func(r *http.Request) (api.ReexecReply, func(), error) {
			return x.prepare(r.Context())
		},
		Replace: func(r *http.Request, req api.HandoverRequest) (func(*net.UnixConn, error), error) {
			return x.handOver(r.Context(), r, req)
		},
		Placer:      fleetUnits.placerOpt(),
		FleetEvents: fleetUnits.eventsOpt(),
	})
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	if fleet != nil {
		fleet.wakeOn(sup.FleetChanged)
	}
	g := &gate{h: sup.Handler()}
	ctl := &control{h: g, logf: logf}
	x.sup, x.ctl, x.gate = sup, ctl, g
	ctl.serve(ln)
	if tc != nil {
		tc.serve(g, b, logf)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	notifyReexec(usr2)
	defer signal.Stop(usr2)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sup.Ready():
		case <-runCtx.Done():
		}
		restoreGC()
	}()
	go func() {
		select {
		case <-c.ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	go func() {
		for {
			select {
			case <-hup:
				res, err := sup.Reload(runCtx)
				if err == nil {
					logf("SIGHUP: %s", res)
				}
			case <-usr2:
				if _, exec, err := x.prepare(runCtx); err == nil {
					exec()
				}
			case <-runCtx.Done():
				return
			}
		}
	}()
	switch {
	case replaced:
		logf("daemon replaced: taking over %d units from pid %d", len(hrec.Units), hrec.PID)
	case hrec != nil:
		logf("daemon re-executed: taking over %d units from pid %d", len(hrec.Units), hrec.PID)
	}
	if addr := pprofAddr(); addr != "" {
		stopPprof, err := startPprof(addr, logf)
		if err != nil {
			logf("%v", err)
		} else {
			defer stopPprof()
		}
	}
	logf("daemon started: units %s, state %s, socket %s, logs to %s", p.Units, p.State, p.Socket, lg.Sink())
	fleetUnits.start(b, logf)
	runErr := sup.Run(runCtx)
	fleetUnits.stop() // the units have stopped: others may take the fleet units now
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	ctl.shutdown(sctx)
	scancel()
	if runErr != nil {
		return fail(exitFailure, "daemon: %v", runErr)
	}
	logf("daemon stopped")
	return nil
}

// takeoverGCPercent is the garbage collector's setting while a daemon takes
// over from the one before it (GOGC): the heap may grow to 8 times what is
// live before a collection, for the few hundred milliseconds of the
// takeover.
const takeoverGCPercent = 800

// listenControl listens on the control socket, mode 0660. A socket file left
// by a dead daemon is replaced; a live daemon is an error.
func listenControl(path string) (net.Listener, error) {
	if _, err := os.Stat(path); err == nil {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("another daemon is listening on %s (stop it, or use --socket)", path)
		}
		os.Remove(path)
	}
	var ln net.Listener
	var err error
	withUmask(0o117, func() { ln, err = net.Listen("unix", path) })
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

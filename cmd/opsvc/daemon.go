package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/supervisor/sdnotify"
)

// runDaemon is `opsvc daemon`: it runs until SIGTERM or SIGINT, then stops
// every unit and exits 0 once no worker is left.
func runDaemon(c *cli) error {
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
	if err := os.MkdirAll(filepath.Dir(p.Socket), 0o750); err != nil {
		return fail(exitFailure, "daemon: socket directory: %v (--socket)", err)
	}
	logger := log.New(c.stderr, "opsvc: ", 0)
	ln, err := listenControl(p.Socket)
	if err != nil {
		return fail(exitFailure, "daemon: %v", err)
	}
	defer os.Remove(p.Socket)

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
	reg, err := registry.Open(p.State, registry.Options{WriteFault: func(err error) { b.ReportFault("registry", err) }})
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: registry: %v", err)
	}
	runner, err := supervisor.NewExecRunner(true)
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	defer runner.Close()
	how, err := runner.Track(p.State, func(unitName string, d api.EventData) {
		b.Publish(bus.Event{Type: d.EventType(), Unit: unitName, Data: api.Map(d)})
	}, logf)
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	logf("processes of units are tracked %s", how)
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
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
		Notify:           func(state string) error { _, err := sdnotify.Notify(state); return err },
		WatchdogInterval: sdnotify.WatchdogInterval(),
		Watch:            !c.args.has("no-watch"),
		Placer:           fleetUnits.placerOpt(),
		FleetEvents:      fleetUnits.eventsOpt(),
	})
	if err != nil {
		ln.Close()
		return fail(exitFailure, "daemon: %v", err)
	}
	srv := supervisor.NewServer(sup.Handler(), supervisor.Limits{}, logf)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if tc != nil {
		tc.serve(sup.Handler(), b, logf)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
			case <-runCtx.Done():
				return
			}
		}
	}()
	logf("daemon started: units %s, state %s, socket %s, logs to %s", p.Units, p.State, p.Socket, lg.Sink())
	fleetUnits.start(b, logf)
	runErr := sup.Run(runCtx)
	fleetUnits.stop() // the units have stopped: others may take the fleet units now
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(sctx)
	scancel()
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logf("control socket: %v", err)
	}
	if runErr != nil {
		return fail(exitFailure, "daemon: %v", runErr)
	}
	logf("daemon stopped")
	return nil
}

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

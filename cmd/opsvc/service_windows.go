package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// serviceName is the name opsvc is installed under in the Service Control
// Manager.
const serviceName = "opsvc"

// runDaemonEntry is `opsvc daemon`: under the Service Control Manager it runs
// as the service, reporting its start and stop; otherwise in the foreground.
func runDaemonEntry(c *cli) error {
	isSvc, err := svc.IsWindowsService()
	if err != nil || !isSvc {
		return runDaemon(c)
	}
	h := &daemonService{c: c}
	if err := svc.Run(serviceName, h); err != nil {
		return fail(exitFailure, "daemon: run as a service: %v", err)
	}
	return h.err
}

// daemonService runs the daemon for the Service Control Manager.
type daemonService struct {
	c   *cli
	err error
}

// Execute reports the service running, runs the daemon until the SCM asks it
// to stop (or the system shuts down), and reports it stopped once every unit
// has stopped.
func (d *daemonService) Execute(args []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(d.c.ctx)
	defer cancel()
	c := *d.c
	c.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- runDaemon(&c) }()
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.Running, Accepts: accepts}
	for {
		select {
		case err := <-done:
			d.err = err
			if err != nil {
				return true, 1
			}
			return false, 0
		case r := <-req:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: 30_000}
				cancel()
			}
		}
	}
}

// runService is `opsvc service install|uninstall`.
func runService(c *cli) error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "service: give install or uninstall")
	}
	switch c.args.pos[0] {
	case "install":
		return installService(c)
	case "uninstall":
		return uninstallService(c)
	}
	return fail(exitUsage, "service: unknown action %q (give install or uninstall)", c.args.pos[0])
}

// installService registers this executable with the Service Control Manager
// as the service opsvc, started automatically, running `opsvc daemon` with
// the --units, --state, --socket and --config given here. It restarts after
// a failure.
func installService(c *cli) error {
	exe, err := os.Executable()
	if err != nil {
		return fail(exitFailure, "service install: find this executable: %v", err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return fail(exitFailure, "service install: %v", err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fail(exitFailure, "service install: connect to the Service Control Manager: %v (run it as an administrator)", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fail(exitFailure, "service install: the service %s is already installed (opsvc service uninstall removes it)", serviceName)
	}
	args := []string{"daemon"}
	for _, name := range []string{"units", "state", "socket", "config"} {
		if c.args.has(name) {
			v := c.args.get(name)
			if name != "socket" {
				if abs, err := filepath.Abs(v); err == nil {
					v = abs
				}
			}
			args = append(args, "--"+name, v)
		}
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: "opsvc",
		Description: "Supervises the worker processes described by unit files",
		StartType:   mgr.StartAutomatic,
	}, args...)
	if err != nil {
		return fail(exitFailure, "service install: %v (run it as an administrator)", err)
	}
	defer s.Close()
	restart := []mgr.RecoveryAction{{Type: mgr.ServiceRestart, Delay: 5 * time.Second}}
	if err := s.SetRecoveryActions(restart, 24*60*60); err != nil {
		fmt.Fprintf(c.stderr, "opsvc: service install: no restart after a failure: %v\n", err)
	}
	fmt.Fprintf(c.stdout, "installed the service %s: %s %s\nstart it with: sc start %s\n", serviceName, exe, joinArgs(args), serviceName)
	return nil
}

// uninstallService stops the service opsvc if it runs, and removes it.
func uninstallService(c *cli) error {
	m, err := mgr.Connect()
	if err != nil {
		return fail(exitFailure, "service uninstall: connect to the Service Control Manager: %v (run it as an administrator)", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
			return fail(exitFailure, "service uninstall: the service %s is not installed", serviceName)
		}
		return fail(exitFailure, "service uninstall: open the service %s: %v", serviceName, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			fmt.Fprintf(c.stderr, "opsvc: service uninstall: stop: %v\n", err)
		}
	}
	if err := s.Delete(); err != nil {
		return fail(exitFailure, "service uninstall: %v (run it as an administrator)", err)
	}
	fmt.Fprintf(c.stdout, "removed the service %s\n", serviceName)
	return nil
}

// joinArgs shows args as a command line.
func joinArgs(args []string) string {
	return windows.ComposeCommandLine(args)
}

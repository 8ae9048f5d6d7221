// Command opsvc is the opsvc daemon and its command-line client.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/opsvc/opsvc/config"
)

const version = "0.1.0"

// Exit codes follow systemctl (DESIGN §7).
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitInactive = 3
	exitNoUnit   = 4
)

// exitError carries an exit code and a message for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

const usage = `usage: opsvc [--socket PATH] COMMAND [ARGS] [FLAGS]

Commands:
  daemon [--units DIR] [--state DIR] [--config FILE] [--no-watch] [--listen ADDR]  run the supervisor
  status [UNIT...] [--json]                            show units (exit 3 if one is not active)
  start|stop|restart UNIT... [--no-wait] [--drain]     change what runs
  reload                                               re-read the unit files now
  logs UNIT [-f] [-n N] [--json]                       recent and live output of a unit
  events [-f] [--since N] [--unit U] [--type T] [--json]  the event log
  validate [PATH]                                      check unit files (no daemon needed)
  cat UNIT                                             the effective definition, with sources
  chains [ls|show ID|lineage ID] [--json]              orchestrator chains
  send UNIT NAME [JSON]                                send a command to an ipc worker
  token [--read-only] [--rotate] [--json]              the tokens of the TCP listener
  console [--read-only]                                the web console's login link
  version                                              print the version

Flags may come before or after arguments. --socket and OPSVC_SOCKET pick the daemon.
`

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Stderr))
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "opsvc: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "opsvc: "+err.Error())
	return exitFailure
}

// args is a parsed command line: flags anywhere, positionals in order.
type args struct {
	pos   []string
	flags map[string]string
}

func (a args) has(name string) bool { _, ok := a.flags[name]; return ok }
func (a args) get(name string) string {
	return a.flags[name]
}

// flagSpec says which flags a verb takes and whether they take a value.
func commonFlags() map[string]bool {
	return map[string]bool{"socket": true, "units": true, "state": true, "config": true, "json": false, "help": false, "h": false}
}

func parseArgs(in []string, verbFlags map[string]bool) (args, error) {
	a := args{flags: map[string]string{}}
	for i := 0; i < len(in); i++ {
		s := in[i]
		if s == "--" {
			a.pos = append(a.pos, in[i+1:]...)
			break
		}
		if len(s) < 2 || s[0] != '-' || isNumber(s) {
			a.pos = append(a.pos, s)
			continue
		}
		name := strings.TrimLeft(s, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		takes, ok := verbFlags[name]
		if !ok {
			takes, ok = commonFlags()[name]
		}
		if !ok {
			return a, fail(exitUsage, "unknown flag %s (see: opsvc --help)", s)
		}
		if takes && !hasVal {
			if i+1 >= len(in) {
				return a, fail(exitUsage, "flag %s needs a value", s)
			}
			i++
			val = in[i]
		}
		a.flags[name] = val
	}
	return a, nil
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// env is the process environment, for path defaults.
type env struct {
	getenv func(string) string
	euid   int
}

func paths(a args, e env) config.Paths {
	p := config.DefaultPaths(e.euid, e.getenv)
	if v := a.get("socket"); v != "" {
		p.Socket = v
	}
	if v := a.get("units"); v != "" {
		p.Units = v
	}
	if v := a.get("state"); v != "" {
		p.State = v
	}
	if v := a.get("config"); v != "" {
		p.Config = v
	}
	return p
}

func run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	e := env{getenv: os.Getenv, euid: os.Geteuid()}
	if len(argv) == 0 {
		fmt.Fprint(stderr, usage)
		return fail(exitUsage, "")
	}
	// Global flags may precede the verb.
	verbAt := 0
	for verbAt < len(argv) && strings.HasPrefix(argv[verbAt], "-") {
		name := strings.TrimLeft(argv[verbAt], "-")
		if name == "help" || name == "h" {
			fmt.Fprint(stdout, usage)
			return nil
		}
		if takes, ok := commonFlags()[name]; ok && takes && !strings.Contains(name, "=") {
			verbAt++
		}
		verbAt++
	}
	if verbAt >= len(argv) {
		fmt.Fprint(stderr, usage)
		return fail(exitUsage, "no command given")
	}
	verb := argv[verbAt]
	rest := append(append([]string{}, argv[:verbAt]...), argv[verbAt+1:]...)
	cmd, ok := commands()[verb]
	if !ok {
		return fail(exitUsage, "unknown command %q (see: opsvc --help)", verb)
	}
	a, err := parseArgs(rest, cmd.flags)
	if err != nil {
		return err
	}
	if a.has("help") || a.has("h") {
		fmt.Fprint(stdout, usage)
		return nil
	}
	c := &cli{ctx: ctx, args: a, paths: paths(a, e), stdout: stdout, stderr: stderr, env: e}
	return cmd.run(c)
}

type command struct {
	flags map[string]bool
	run   func(*cli) error
}

func commands() map[string]command {
	return map[string]command{
		"daemon":   {map[string]bool{"no-watch": false, "listen": true}, runDaemon},
		"status":   {nil, (*cli).status},
		"start":    {map[string]bool{"no-wait": false}, func(c *cli) error { return c.verb("start") }},
		"stop":     {map[string]bool{"no-wait": false, "drain": false}, func(c *cli) error { return c.verb("stop") }},
		"restart":  {map[string]bool{"no-wait": false}, func(c *cli) error { return c.verb("restart") }},
		"reload":   {nil, (*cli).reload},
		"logs":     {map[string]bool{"f": false, "follow": false, "n": true}, (*cli).logs},
		"events":   {map[string]bool{"f": false, "follow": false, "since": true, "unit": true, "type": true}, (*cli).events},
		"validate": {nil, (*cli).validate},
		"cat":      {nil, (*cli).cat},
		"chains":   {map[string]bool{"all": false}, (*cli).chains},
		"send":     {nil, (*cli).send},
		"version":  {nil, (*cli).version},
		"worker":   {nil, runWorker},
		"token":    {map[string]bool{"read-only": false, "rotate": false}, (*cli).token},
		"console":  {map[string]bool{"read-only": false}, (*cli).console},
	}
}

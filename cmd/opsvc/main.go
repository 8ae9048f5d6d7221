// Command opsvc is the opsvc daemon and its command-line client.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/opsvc/opsvc/config"
)

// version is stamped by make dist (-ldflags "-X main.version=...").
var version = "0.1.0"

// Exit codes follow systemctl.
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

// init keeps the main goroutine on the main thread: the daemon forks its
// workers there, and a re-exec runs there (see runDaemon).
func init() { goruntime.LockOSThread() }

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

// args is a parsed command line: flags anywhere, positionals in order. Flags
// are stored under their long names.
type args struct {
	pos   []string
	flags map[string]string
}

func (a args) has(name string) bool { _, ok := a.flags[name]; return ok }
func (a args) get(name string) string {
	return a.flags[name]
}

func parseArgs(in []string, v verbSpec) (args, error) {
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
		f, ok := lookupFlag(v, name)
		if !ok {
			return a, fail(exitUsage, "%s: unknown flag %s (opsvc help %s lists its flags)", v.name, s, v.name)
		}
		if f.value != "" && !hasVal {
			if i+1 >= len(in) {
				return a, fail(exitUsage, "%s: flag %s needs a value %s (opsvc help %s)", v.name, s, f.value, v.name)
			}
			i++
			val = in[i]
		}
		if f.value == "" && hasVal {
			return a, fail(exitUsage, "%s: flag %s takes no value (opsvc help %s)", v.name, s, v.name)
		}
		a.flags[f.name] = val
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

func paths(a args, e env, verb verbSpec) config.Paths {
	p := config.DefaultPaths(e.euid, e.getenv)
	if v := a.get("socket"); v != "" {
		p.Socket = v
	}
	if v := a.get("units"); v != "" {
		p.Units = v
	}
	if f, _ := lookupFlag(verb, "state"); f.value == "DIR" && a.get("state") != "" {
		v := a.get("state")
		p.State = v
	}
	if v := a.get("config"); v != "" {
		p.Config = v
	}
	return p
}

func run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	e := env{getenv: os.Getenv, euid: os.Geteuid()}
	// Flags may precede the verb: the first word that is neither a flag nor
	// a flag's value is the verb.
	verbAt := 0
	for verbAt < len(argv) {
		s := argv[verbAt]
		if s == "--" || len(s) < 2 || s[0] != '-' {
			break
		}
		name := strings.TrimLeft(s, "-")
		if !strings.Contains(name, "=") && anyTakesValue(name) {
			verbAt++
		}
		verbAt++
	}
	var (
		rest []string
		v    verbSpec
	)
	if verbAt >= len(argv) {
		// No verb: only --help and --version make sense.
		rest = argv
		v = verbSpec{name: "opsvc"}
	} else {
		name := argv[verbAt]
		var ok bool
		if v, ok = findVerb(name); !ok {
			return fail(exitUsage, "unknown verb %q (opsvc help lists them)", name)
		}
		rest = append(append([]string{}, argv[:verbAt]...), argv[verbAt+1:]...)
	}
	a, err := parseArgs(rest, v)
	if err != nil {
		return err
	}
	if a.has("help") {
		if v.run == nil {
			writeUsage(stdout)
		} else {
			writeVerbHelp(stdout, v)
		}
		return nil
	}
	c := &cli{ctx: ctx, args: a, paths: paths(a, e, v), stdout: stdout, stderr: stderr, env: e}
	if a.has("version") {
		return c.version()
	}
	if v.run == nil {
		writeUsage(stderr)
		return fail(exitUsage, "no verb given (opsvc help lists them)")
	}
	if w := a.get("color"); a.has("color") && w != "auto" && w != "always" && w != "never" {
		return fail(exitUsage, "bad --color %q: use auto, always or never", w)
	}
	return v.run(c)
}

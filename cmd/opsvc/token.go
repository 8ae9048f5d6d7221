package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/supervisor/console"
	"github.com/opsvc/opsvc/supervisor/webauth"
)

// consoleURLFile, in the state directory, holds the base URL of the running
// daemon's TCP listener.
const consoleURLFile = "console.url"

// token is `opsvc token [--read-only] [--rotate] [--json]`. It works on the
// state directory, with or without a daemon: a running daemon checks the
// tokens file at every request over TCP, so a rotation takes effect at once,
// for its open sessions too.
func (c *cli) token() error {
	if len(c.args.pos) > 0 {
		return fail(exitUsage, "token: no arguments expected (opsvc token [--read-only] [--rotate])")
	}
	var (
		t   webauth.Tokens
		err error
	)
	if c.args.has("rotate") {
		if err := c.needState(); err != nil {
			return err
		}
		t, err = webauth.NewStore(c.paths.State).Rotate()
		if err == nil {
			fmt.Fprintln(c.stderr, "opsvc: tokens rotated: the old ones no longer work; open consoles must log in again (opsvc console)")
		}
	} else {
		t, err = c.tokens()
	}
	if err != nil {
		return tokenError(err)
	}
	if c.args.has("json") {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	}
	if c.args.has("read-only") {
		fmt.Fprintln(c.stdout, t.ReadOnly)
	} else {
		fmt.Fprintln(c.stdout, t.Admin)
	}
	return nil
}

// console is `opsvc console [--read-only]`: it prints the console's login
// URL, with the admin (or read-only) token.
func (c *cli) console() error {
	if len(c.args.pos) > 0 {
		return fail(exitUsage, "console: no arguments expected (opsvc console [--read-only])")
	}
	base, err := c.consoleBase()
	if err != nil {
		return err
	}
	t, err := c.tokens()
	if err != nil {
		return tokenError(err)
	}
	tok := t.Admin
	if c.args.has("read-only") {
		tok = t.ReadOnly
	}
	fmt.Fprintf(c.stdout, "%slogin?token=%s\n", base, url.QueryEscape(tok))
	return nil
}

// tokens reads the tokens, creating them in an existing state directory
// where the daemon has not yet.
func (c *cli) tokens() (webauth.Tokens, error) {
	if err := c.needState(); err != nil {
		return webauth.Tokens{}, err
	}
	return webauth.NewStore(c.paths.State).Ensure()
}

func (c *cli) needState() error {
	fi, err := os.Stat(c.paths.State)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(exitFailure, "token: no state directory at %s (start the daemon once, or pass --state or OPSVC_STATE)", c.paths.State)
	}
	if err != nil {
		return fail(exitFailure, "token: state directory: %v", err)
	}
	if !fi.IsDir() {
		return fail(exitFailure, "token: state directory %s is not a directory (--state)", c.paths.State)
	}
	return nil
}

func tokenError(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee
	}
	msg := strings.TrimPrefix(err.Error(), "webauth: ")
	if errors.Is(err, fs.ErrPermission) {
		return fail(exitFailure, "token: %s (run as the daemon's user, or root)", msg)
	}
	return fail(exitFailure, "token: %s", msg)
}

// consoleBase is the URL of the console, ending in "/": the one the
// running daemon wrote, else the one [control] listen gives.
func (c *cli) consoleBase() (string, error) {
	data, err := os.ReadFile(filepath.Join(c.paths.State, consoleURLFile))
	if err == nil {
		if u := strings.TrimSpace(string(data)); strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			return strings.TrimSuffix(u, "/") + "/", nil
		}
	}
	settings, err := config.LoadSettings(c.paths.Config)
	if err != nil {
		return "", fail(exitFailure, "console: %v", err)
	}
	if settings.Control.Listen == "" {
		return "", fail(exitFailure, "console: the daemon serves no console (set [control] listen = \"127.0.0.1:7780\" in %s, or start it with --listen ADDR)", c.paths.Config)
	}
	lc := console.ListenConfigFor(settings.Control, "", filepath.Dir(c.paths.Config))
	return consoleURL(settings.Control.Listen, nil, lc.TLS()), nil
}

// consoleURL is the base URL for a listener on addr (as configured) bound to
// bound (nil when not known): the configured host, or loopback for an
// address that listens everywhere, and the port actually bound.
func consoleURL(addr string, bound net.Addr, tls bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	if tcp, ok := bound.(*net.TCPAddr); ok {
		port = fmt.Sprint(tcp.Port)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// writeConsoleURL records the running listener's URL for opsvc console.
func writeConsoleURL(state, u string) error {
	return atomicfile.Write(filepath.Join(state, consoleURLFile), []byte(u+"\n"), 0o644)
}

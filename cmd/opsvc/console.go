package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/console"
	"github.com/opsvc/opsvc/supervisor/webauth"
)

// tcpConsole is the daemon's TCP listener with the console, between its
// start (listenConsole) and its end (stop).
type tcpConsole struct {
	ln    net.Listener
	state string
	url   string
	con   *console.Console
	srv   *http.Server
	done  chan error
}

// listenConsole opens the TCP listener of [control] listen, or of --listen,
// which replaces it; nil when there is none. It runs before any unit
// starts, so a refused address stops the daemon at once. The tokens are
// created here on the first start.
func listenConsole(c *cli, p config.Paths, settings config.Settings, logf func(string, ...any)) (*tcpConsole, error) {
	tokens := webauth.NewStore(p.State)
	_, tokErr := tokens.Ensure()
	lc := console.ListenConfigFor(settings.Control, c.args.get("listen"), filepath.Dir(p.Config))
	if lc.Addr == "" {
		if tokErr != nil {
			logf("tokens: %v", tokErr)
		}
		return nil, nil
	}
	if tokErr != nil {
		return nil, fail(exitFailure, "%v", tokErr)
	}
	ln, err := console.Listen(c.ctx, lc)
	if err != nil {
		return nil, fail(exitFailure, "%v", err)
	}
	return &tcpConsole{ln: ln, state: p.State, url: consoleURL(lc.Addr, ln.Addr(), lc.TLS())}, nil
}

// serve answers on the listener: api behind the tokens, the console and the
// event feed. Every refusal is published as api.denied.
func (tc *tcpConsole) serve(api http.Handler, b *bus.Bus, logf func(string, ...any)) {
	guard := webauth.New(webauth.Options{
		Store: webauth.NewStore(tc.state),
		Denied: func(d webauth.Denial) {
			b.Publish(bus.Event{Type: "api.denied", Data: map[string]any{
				"remote": d.Remote, "method": d.Method, "path": d.Path, "status": d.Status, "reason": d.Reason, "repeated": d.Repeated,
			}})
		},
	})
	tc.con = console.New(console.Options{API: api, Events: b, Guard: guard, Logf: logf})
	tc.srv = console.NewServer(tc.con, logf)
	tc.done = make(chan error, 1)
	go func() { tc.done <- tc.srv.Serve(tc.ln) }()
	if err := writeConsoleURL(tc.state, tc.url); err != nil {
		logf("console: %v", err)
	}
	logf("console at %s (opsvc console prints a login link)", tc.url)
}

// stop ends the listener; streams still open get two seconds.
func (tc *tcpConsole) stop(logf func(string, ...any)) {
	os.Remove(filepath.Join(tc.state, consoleURLFile))
	if tc.srv == nil {
		tc.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if tc.srv.Shutdown(ctx) != nil {
		tc.srv.Close()
	}
	tc.con.Close()
	if err := <-tc.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logf("console: %v", err)
	}
}

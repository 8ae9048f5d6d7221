package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds a Chromium to drive: $OPSVC_CHROMIUM, else one on PATH.
func chromiumPath() string {
	if p := os.Getenv("OPSVC_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// consoleDaemon is a real `opsvc daemon` on the example units, serving the
// console on a free loopback port.
type consoleDaemon struct {
	t     *testing.T
	cmd   *exec.Cmd
	out   *syncBuffer
	state string
	sock  string
	base  string // http://127.0.0.1:PORT/
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startConsoleDaemon(t *testing.T) *consoleDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "otc") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &consoleDaemon{t: t, out: &syncBuffer{}, state: filepath.Join(dir, "state"), sock: filepath.Join(dir, "opsvc.sock")}
	// A copy of the example units, so that the pages show no path of the
	// source tree.
	units := filepath.Join(dir, "units")
	if err := os.CopyFS(units, os.DirFS(mustAbs("../../contrib/examples"))); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("opsvc", "daemon", "--units", units, "--state", d.state,
		"--socket", d.sock, "--config", filepath.Join(dir, "opsvc.toml"), "--listen", "127.0.0.1:0")
	d.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	// The daemon writes the console's address once it listens.
	d.poll("the console address", func() bool {
		data, err := os.ReadFile(filepath.Join(d.state, consoleURLFile))
		d.base = strings.TrimSpace(string(data))
		return err == nil && strings.HasPrefix(d.base, "http://127.0.0.1:")
	})
	return d
}

// stop ends the daemon with SIGTERM and checks its exit and its workers.
func (d *consoleDaemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		d.t.Errorf("daemon: %v\n%s", err, d.out.String())
	}
}

// poll waits (30 s at most) for cond, polling the external daemon.
func (d *consoleDaemon) poll(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("waited 30s for %s; daemon output:\n%s", what, d.out.String())
		}
		if d.cmd.ProcessState != nil {
			d.t.Fatalf("daemon exited while waiting for %s:\n%s", what, d.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling another process, bounded above
	}
}

// unit asks the daemon over its socket for one unit's state.
func (d *consoleDaemon) unit(name string) (state string) {
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.sock)
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://opsvc/v1/units/" + name)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var u struct {
		State string `json:"state"`
	}
	json.NewDecoder(resp.Body).Decode(&u)
	return u.State
}

// cli runs the opsvc command on the daemon's state directory.
func (d *consoleDaemon) cli(args ...string) string {
	d.t.Helper()
	cmd := exec.Command("opsvc", append(args, "--state", d.state, "--socket", d.sock)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("opsvc %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// recordSockets runs before the page's scripts: it keeps every WebSocket
// the page opens in window.__sockets, each with the last seq it delivered.
const recordSockets = `
window.__sockets = [];
const RealWebSocket = window.WebSocket;
window.WebSocket = class extends RealWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.lastSeq = 0;
    this.addEventListener('message', m => {
      try { const e = JSON.parse(m.data); if (e.seq > this.lastSeq) this.lastSeq = e.seq; } catch {}
    });
    window.__sockets.push(this);
  }
};`

// stopUnit stops a unit over the control socket and waits until it is.
func (d *consoleDaemon) stopUnit(name string) {
	d.t.Helper()
	d.cli("stop", name)
}

// browser is one headless Chromium with its own profile and temp dir.
type browser struct {
	t      *testing.T
	alloc  context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	tmp := t.TempDir()
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(filepath.Join(tmp, "profile")),
		chromedp.Env("TMPDIR="+tmp),
		chromedp.WindowSize(1400, 900),
	)
	t.Cleanup(cancel)
	// The first context starts the browser; tabs get browser contexts of
	// their own from it.
	first, cancelFirst := chromedp.NewContext(alloc)
	t.Cleanup(cancelFirst)
	if err := chromedp.Do(first); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, alloc: first}
}

// tab opens a tab in a browser context of its own (its own cookies); page
// errors and console errors fail the test.
func (b *browser) tab(timeout time.Duration) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.alloc, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	b.t.Cleanup(cancelT)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			msg = "console.error:"
			for _, a := range e.Args {
				msg += " " + string(a.Value) + a.Description
			}
		default:
			return
		}
		b.mu.Lock()
		b.errors = append(b.errors, msg)
		b.mu.Unlock()
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return ctx
}

func (b *browser) checkErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		// The page asks for routes a daemon may not serve yet; a 404 of
		// those is logged by the browser as a failed resource, not an error
		// of the page.
		if strings.Contains(e, "404") {
			continue
		}
		b.t.Errorf("page: %s", e)
	}
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// click clicks the element sel names, found and clicked in one step in the
// page: live events re-render the unit and chain rows, so an element found
// by one call may be gone by the next.
func click(t *testing.T, ctx context.Context, what, sel string) {
	t.Helper()
	do(t, ctx, what, chromedp.WaitVisible(chromedp.CSS(sel)))
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, sel)
	for !eval[bool](t, ctx, js) {
		do(t, ctx, what, chromedp.WaitVisible(chromedp.CSS(sel)))
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshot writes docs/console/NAME.png when OPSVC_SCREENSHOTS is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("OPSVC_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := mustAbs("../../docs/console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleBrowser drives the console in a real headless Chromium against
// a real daemon on the example units: log in with the link of opsvc
// console, see the units, stop one with its button and see its row change
// without a reload; open a chain and its sessions; see a bad setting's error
// next to its field; and, with the read-only token, no buttons at all.
// OPSVC_SCREENSHOTS=1 also writes docs/console/*.png.
func TestConsoleBrowser(t *testing.T) {
	exe := chromiumPath()
	if exe == "" {
		t.Skip("no chromium found (install Debian's chromium, or set OPSVC_CHROMIUM)")
	}
	d := startConsoleDaemon(t)
	d.poll("ticker active", func() bool { return d.unit("ticker") == "active" })
	login := d.cli("console")
	if want := d.base + "login?token="; !strings.HasPrefix(login, want) {
		t.Fatalf("opsvc console = %q, want %s…", login, want)
	}

	b := newBrowser(t, exe)
	ctx := b.tab(90 * time.Second)
	// The page's WebSockets are recorded, with the last seq each delivered.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordSockets}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "log in", chromedp.Navigate(login),
		chromedp.WaitVisible(chromedp.CSS(`#units tr[data-unit="ticker"][data-state="active"]`)))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != d.base {
		t.Errorf("after login the browser is at %s, want %s (the token must leave the address bar)", loc, d.base)
	}
	for _, u := range []string{"ticker", "flaky", "slowstop", "echo-ipc", "agent@demo"} {
		do(t, ctx, "row of "+u, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#units tr[data-unit=%q]`, u))))
	}
	if role := eval[string](t, ctx, `document.getElementById('role').textContent`); role != "admin" {
		t.Errorf("role shown %q, want admin", role)
	}
	do(t, ctx, "live feed", chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)))
	screenshot(t, ctx, "units")

	// Stop the ticker with its button: its row changes in place.
	eval[bool](t, ctx, `window.__sameDocument = true`)
	click(t, ctx, "stop ticker", `#units tr[data-unit="ticker"] button[data-action="stop"]`)
	do(t, ctx, "stop ticker",
		chromedp.WaitVisible(chromedp.CSS(`#units tr[data-unit="ticker"][data-state="inactive"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#units tr[data-unit="ticker"] button[data-action="start"]`)))
	if !eval[bool](t, ctx, `window.__sameDocument === true`) {
		t.Error("the page was reloaded to show the stop")
	}
	if st := d.unit("ticker"); st != "inactive" {
		t.Errorf("daemon says ticker is %q after the stop button, want inactive", st)
	}

	// The feed drops: the page reconnects from the last seq it saw, and a
	// change made meanwhile still reaches the row.
	lastSeq := eval[int](t, ctx, `(() => { const ws = window.__sockets[0]; ws.close(); return ws.lastSeq; })()`)
	if lastSeq <= 0 {
		t.Fatalf("the feed delivered no event before it was closed")
	}
	d.stopUnit("flaky")
	do(t, ctx, "row updated after a reconnect",
		chromedp.WaitVisible(chromedp.CSS(`#units tr[data-unit="flaky"][data-state="inactive"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)))
	if u := eval[string](t, ctx, `window.__sockets.length > 1 ? window.__sockets[1].url : ''`); !strings.HasSuffix(u, fmt.Sprintf("/v1/events/ws?since=%d", lastSeq)) {
		t.Errorf("reconnected to %q, want since=%d", u, lastSeq)
	}
	if !eval[bool](t, ctx, `window.__sameDocument === true`) {
		t.Error("the page was reloaded to reconnect")
	}

	// A unit's page: definition with sources, logs and events.
	do(t, ctx, "unit page", chromedp.Navigate(d.base+"#/units/agent@demo"),
		chromedp.WaitVisible(chromedp.CSS(`#definition tbody tr`)),
		chromedp.WaitVisible(chromedp.CSS(`#logs li.ll-stdout`)),
		chromedp.WaitVisible(chromedp.CSS(`#unit-events tbody tr[data-seq]`)))
	if src := eval[string](t, ctx, `[...document.querySelectorAll('#definition td.source')].map(td => td.textContent).join('\n')`); !strings.Contains(src, "agent@.toml") || !strings.Contains(src, "(default)") {
		t.Errorf("definition sources do not name agent@.toml and the defaults:\n%s", src)
	}
	screenshot(t, ctx, "unit")

	// Chains: the example orchestrator records sessions; open its chain.
	do(t, ctx, "chains", chromedp.Navigate(d.base+"#/chains"),
		chromedp.WaitVisible(chromedp.CSS(`#chains tr[data-chain]`)))
	// The list follows the registry live: a chain shows its first session
	// once it is recorded.
	do(t, ctx, "a chain with a session", chromedp.WaitVisible(chromedp.CSS(`#chains tr[data-chain]:not([data-sessions="0"])`)))
	screenshot(t, ctx, "chains")
	// Archived chains are one click away (the examples have none yet).
	do(t, ctx, "archived chains",
		chromedp.Click(chromedp.CSS(`#archive summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#archive .empty, #archive li`)))
	if txt := eval[string](t, ctx, `document.getElementById('archive').textContent`); !strings.Contains(txt, "No archived chains") {
		t.Errorf("archive panel says %q, want the daemon's (empty) archive", txt)
	}
	click(t, ctx, "chain page", `#chains tr[data-chain]:not([data-sessions="0"]) th a`)
	do(t, ctx, "chain page",
		chromedp.WaitVisible(chromedp.CSS(`#sessions tr[data-session="0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#lineage li[data-chain]`)))
	screenshot(t, ctx, "chain")

	do(t, ctx, "instances", chromedp.Navigate(d.base+"#/instances"),
		chromedp.WaitVisible(chromedp.CSS(`#instances tr[data-instance="demo"] a[href^="#/chains/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#start-instance`)))
	if n := eval[int](t, ctx, `document.querySelectorAll('.notice:not([hidden])').length`); n != 0 {
		t.Errorf("the instances page fell back to the unit list (%d notices)", n)
	}
	// A value out of range is refused next to its field.
	do(t, ctx, "bad instance value",
		chromedp.SetValue(chromedp.CSS(`#f-id`), "browser"),
		chromedp.SetValue(chromedp.CSS(`#f-max_turns`), "500"),
		chromedp.Click(chromedp.CSS(`#start-instance button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#start-instance [data-error-for="max_turns"]`)))
	// Start one from the form with a task: its row appears, with its chain.
	do(t, ctx, "start an instance",
		chromedp.SetValue(chromedp.CSS(`#f-max_turns`), "12"),
		chromedp.SetValue(chromedp.CSS(`#f-task`), "Task from the browser"),
		chromedp.Click(chromedp.CSS(`#start-instance button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.toast.t-ok`)))
	if msg := eval[string](t, ctx, `[...document.querySelectorAll('.toast.t-ok')].map(e => e.textContent).join('|')`); !strings.Contains(msg, "Started agent@browser") {
		t.Errorf("toasts %q, want one that names agent@browser", msg)
	}
	do(t, ctx, "the new instance's chain",
		chromedp.WaitVisible(chromedp.CSS(`#instances tr[data-instance="browser"] a[href^="#/chains/"]`)))
	if task := eval[string](t, ctx, `document.querySelector('#instances tr[data-instance="browser"] td.task').textContent`); task != "Task from the browser" {
		t.Errorf("the new instance's chain has task %q, want the one typed in the form", task)
	}
	if def := d.cli("cat", "agent@browser"); !strings.Contains(def, "Task from the browser") || !strings.Contains(def, "instance.toml") {
		t.Errorf("opsvc cat agent@browser does not show the task with its source:\n%s", def)
	}
	screenshot(t, ctx, "instances")

	// A bad setting: the daemon's error is shown next to the field.
	do(t, ctx, "settings", chromedp.Navigate(d.base+"#/settings"),
		chromedp.WaitVisible(chromedp.CSS(`#f-max_turns`)))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('f-max_turns').value === '30'`)); err != nil {
		t.Fatalf("settings not filled in: %v", err)
	}
	// Budgets: what the example orchestrator spent today, next to its limit.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll('#budgets tbody tr')].some(tr => tr.textContent.startsWith('agent@demo$') && tr.querySelector('meter'))`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("no budget row with a meter for agent@demo: %v", err)
	}
	do(t, ctx, "bad setting",
		chromedp.SetValue(chromedp.CSS(`#f-max_turns`), "0"),
		chromedp.Click(chromedp.CSS(`#settings button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-error-for="max_turns"]`)))
	msg := eval[string](t, ctx, `document.querySelector('[data-error-for="max_turns"]').textContent`)
	if !strings.Contains(msg, "out of range") || !strings.Contains(msg, "1 to 200") {
		t.Errorf("max_turns error %q, want the daemon's range message", msg)
	}
	if eval[string](t, ctx, `document.getElementById('f-max_turns').getAttribute('aria-invalid')`) != "true" {
		t.Error("the bad field is not marked aria-invalid")
	}
	screenshot(t, ctx, "settings")
	b.checkErrors()

	// The read-only token sees the same units and no button that changes them.
	ro := b.tab(60 * time.Second)
	do(t, ro, "read-only login", chromedp.Navigate(d.cli("console", "--read-only")),
		chromedp.WaitVisible(chromedp.CSS(`#units tr[data-unit="flaky"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)))
	if n := eval[int](t, ro, `document.querySelectorAll('button[data-action]').length`); n != 0 {
		t.Errorf("read-only page shows %d action buttons, want none", n)
	}
	if role := eval[string](t, ro, `document.getElementById('role').textContent`); role != "read-only" {
		t.Errorf("role shown %q, want read-only", role)
	}
	b.checkErrors()
}

//go:build unix

package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
)

func TestAPIErrors(t *testing.T) {
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/v1/units/nosuch", 404, `unit \"nosuch\" not found`},
		{"POST", "/v1/units/nosuch/start", 404, "see: opsvc status"},
		{"GET", "/v1/units/.hidden", 400, "hint"},
		{"GET", "/v1/units/bad%20name", 400, "unit names use"},
		{"POST", "/v1/units/a/explode", 404, "use start, stop, restart or command"},
		{"POST", "/v1/units/a/command", 400, "opsvc send"},
		{"GET", "/v1/nothing", 404, "no route"},
	} {
		code, b := h.do(tc.method, tc.path, nil)
		if code != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s = %d %s, want %d containing %q", tc.method, tc.path, code, b, tc.code, tc.want)
		}
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" || !strings.Contains(string(b), `"hint"`) {
			t.Errorf("%s %s: body %s is not {error, hint}", tc.method, tc.path, b)
		}
	}
}

// harnessConn dials the harness's control socket by hand.
func harnessConn(t *testing.T, h *harness) *conn {
	return dial(t, filepath.Join(filepath.Dir(h.units), "s.sock"))
}

func TestBodyCap(t *testing.T) {
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	h.waitEvent("unit.ready", "a")

	// A declared body past the cap is refused before it is read.
	c := harnessConn(t, h)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST /v1/units/a/command HTTP/1.1\r\nHost: opsvc\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", MaxBodyBytes+1)
	checkTooLarge(t, c)

	// A chunked body is cut at the cap.
	for _, route := range []string{"POST /v1/units/a/command", "PUT /v1/settings"} {
		c = harnessConn(t, h)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: opsvc\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", route)
			chunk := `{"name":"x","args":"` + strings.Repeat("a", 64<<10)
			for n := 0; n <= MaxBodyBytes; n += len(chunk) {
				if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return
				}
				chunk = strings.Repeat("a", 64<<10)
			}
		}()
		checkTooLarge(t, c)
	}

	// A body under the cap still reaches the route.
	code, b := h.do("POST", "/v1/units/a/command", strings.NewReader(`{"name":"ping"}`))
	if code == http.StatusRequestEntityTooLarge {
		t.Fatalf("small body: %d %s", code, b)
	}
}

func checkTooLarge(t *testing.T, c *conn) {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	err = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || err != nil || e.Message == "" || e.Hint == "" {
		t.Fatalf("answer = %d %+v (%v), want 413 with error and hint", resp.StatusCode, e, err)
	}
	c.Close()
}

func TestReloadErrorIsNotOK(t *testing.T) {
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	h.waitEvent("unit.ready", "a")
	code, b := h.do("POST", "/v1/reload", nil)
	var res api.ReloadResult
	if code != 200 || json.Unmarshal(b, &res) != nil || !strings.HasPrefix(res.Message, "reloaded:") || res.Changed == nil {
		t.Fatalf("reload = %d %s, want 200 with a message and lists", code, b)
	}
	// Move the directory away in one step: removing its files one by one
	// would let the watcher apply the emptied directory first, which
	// rightly removes a.
	if err := os.Rename(h.units, h.units+".gone"); err != nil {
		t.Fatal(err)
	}
	code, b = h.do("POST", "/v1/reload", nil)
	var e api.Error
	if code != http.StatusInternalServerError || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Message, "units directory") || e.Hint == "" {
		t.Fatalf("reload of a missing units directory = %d %s, want 500 {error, hint}", code, b)
	}
	if us := h.status("a"); us.State != Active {
		t.Errorf("after the failed reload a is %s, want active (the last good set stays)", us.State)
	}
}

// The access check runs on the connections' goroutines while PUT
// /v1/settings replaces the settings on the loop (go test -race).
func TestSettingsWhileAccessChecked(t *testing.T) {
	h := newHarness(t, nil)
	const uid = 54321
	stranger := Peer{UID: uid, PID: 1, GID: 54321}
	if h.sup.allowed(stranger) {
		t.Fatalf("uid %d allowed before any setting lets it in", uid)
	}
	stop := make(chan struct{})
	checked := make(chan int)
	for range 4 {
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					checked <- n
					return
				default:
				}
				h.sup.allowed(stranger)
				n++
			}
		}()
	}
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := range 10 {
				body := fmt.Sprintf(`{"control":{"allow_uids":[%d, %d]}}`, 1000+w, 2000+i)
				code, b := h.do("PUT", "/v1/settings", strings.NewReader(body))
				if code != 200 {
					errs <- fmt.Errorf("PUT /v1/settings: %d %s", code, b)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	for range 4 {
		if n := <-checked; n == 0 {
			t.Error("an access checker never ran")
		}
	}
	code, b := h.do("PUT", "/v1/settings", strings.NewReader(fmt.Sprintf(`{"control":{"allow_uids":[%d]}}`, uid)))
	if code != 200 {
		t.Fatalf("PUT /v1/settings: %d %s", code, b)
	}
	if !h.sup.allowed(stranger) {
		t.Errorf("uid %d not allowed after PUT /v1/settings let it in", uid)
	}
}

// Every route the API lists (and docs/api.md shows) is served.
func TestEveryListedRouteIsServed(t *testing.T) {
	h := newHarness(t, nil)
	for _, r := range api.Routes() {
		path := strings.NewReplacer("{name}", "zz", "{id}", "zz").Replace(r.Path)
		if r.Path == "/v1/events" {
			path += "?follow=0"
		}
		var body io.Reader
		if r.Request != "" {
			body = strings.NewReader("{}")
		}
		code, b := h.do(r.Method, path, body)
		if strings.Contains(string(b), "no route") || code == http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s", r.Method, path, code, b)
		}
	}
}

// Every event the daemon publishes has a type of package api, and its data
// is exactly that type's (no field the type does not know).
func TestEventsMatchTheirTypes(t *testing.T) {
	h := newHarness(t, map[string]string{
		"ok.toml":    "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
		"crash.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"exit 3\"]\nrestart = \"on-failure\"\nrestart_delay = \"10ms\"\nstart_limit_burst = 2\n",
		"one.toml":   "[service]\ntype = \"oneshot\"\nexec = [\"/bin/true\"]\n",
		"bad.toml":   "[service]\nexec = [\"/bin/true\"]\nrestart = \"sometimes\"\n",
	})
	h.waitEvent("unit.failed", "crash")
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/units/ok/stop?wait=1", ""},
		{"POST", "/v1/units/ok/start?wait=1", ""},
		{"POST", "/v1/units/ok/restart?wait=1", ""},
		{"POST", "/v1/reload", ""},
		{"PUT", "/v1/settings", `{"orchestrator":{"max_turns":20}}`},
	} {
		var body io.Reader
		if req.body != "" {
			body = strings.NewReader(req.body)
		}
		if code, b := h.do(req.method, req.path, body); code != 200 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, code, b)
		}
	}
	h.waitEvent("config.settings", "")

	sub, err := h.bus.Subscribe(0, bus.Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seen := map[string]bool{}
	for e := range sub.C() {
		seen[e.Type] = true
		d := api.ForType(e.Type)
		if d == nil {
			t.Errorf("event type %s has no type in package api", e.Type)
			continue
		}
		data := map[string]any{}
		for k, v := range e.Data {
			if k != api.KeyTruncated && k != api.KeyTruncatedKeys {
				data[k] = v
			}
		}
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(d); err != nil && len(e.Data) > 0 {
			t.Errorf("%s data %s does not fit api.%T: %v", e.Type, b, d, err)
		}
	}
	for _, typ := range []string{
		api.TypeUnitStarting, api.TypeUnitStarted, api.TypeUnitReady, api.TypeUnitStopping, api.TypeUnitStopped,
		api.TypeUnitExited, api.TypeUnitRestarting, api.TypeUnitFailed, api.TypeConfigLoaded, api.TypeConfigInvalid,
		api.TypeConfigSettings, api.TypeDaemonReady, api.TypeAPIStart, api.TypeAPIStop, api.TypeAPIRestart,
	} {
		if !seen[typ] {
			t.Errorf("no %s event was published", typ)
		}
	}
}

// A waiting start is a long answer: the server's read and write timeouts do
// not cut it short.
func TestWaitOutlivesServerTimeouts(t *testing.T) {
	h := newHarness(t, map[string]string{
		"slow.toml": "[unit]\nenabled = false\n[service]\ntype = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"sleep 0.5\"]\n",
	})
	sock := serveTest(t, h.sup.Handler(), Limits{ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST /v1/units/slow/start?wait=1 HTTP/1.1\r\nHost: opsvc\r\nContent-Length: 0\r\n\r\n")
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("waiting start: %v", err)
	}
	defer resp.Body.Close()
	var us api.UnitStatus
	if err := json.NewDecoder(resp.Body).Decode(&us); err != nil || resp.StatusCode != 200 || us.State != api.StateActive || us.Sub != "exited" {
		t.Fatalf("waiting start = %d %+v (%v), want 200 active (exited)", resp.StatusCode, us, err)
	}
}

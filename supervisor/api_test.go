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
	c = harnessConn(t, h)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		fmt.Fprintf(c, "POST /v1/units/a/command HTTP/1.1\r\nHost: opsvc\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := `{"name":"x","args":"` + strings.Repeat("a", 64<<10)
		for n := 0; n <= MaxBodyBytes; n += len(chunk) {
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
			chunk = strings.Repeat("a", 64<<10)
		}
	}()
	checkTooLarge(t, c)

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
	if err := os.RemoveAll(h.units); err != nil {
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

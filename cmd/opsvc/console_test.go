package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConsoleAccess: a real daemon with --listen enforces the tokens over
// TCP, takes a rotation by opsvc token --rotate at the next request, and
// publishes each refusal as api.denied with the remote address.
func TestConsoleAccess(t *testing.T) {
	d := startConsoleDaemon(t)
	d.poll("ticker active", func() bool { return d.unit("ticker") == "active" })
	admin, ro := d.cli("token"), d.cli("token", "--read-only")
	if fi, err := os.Stat(filepath.Join(d.state, "tokens.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file: %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	call := func(method, path, token string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, d.base+strings.TrimPrefix(path, "/"), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if code, _ := call("GET", "/v1/units", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, body := call("GET", "/v1/units", ro); code != 200 || !strings.Contains(body, `"name": "ticker"`) {
		t.Errorf("read-only GET /v1/units: %d %s", code, body)
	}
	if code, _ := call("POST", "/v1/units/flaky/restart", ro); code != 403 {
		t.Errorf("read-only restart: %d, want 403", code)
	}
	if code, _ := call("POST", "/v1/units/flaky/restart", admin, "Origin", "http://evil.example"); code != 403 {
		t.Errorf("cross-origin restart: %d, want 403", code)
	}
	if code, body := call("POST", "/v1/units/ticker/stop?wait=1", admin, "Origin", strings.TrimSuffix(d.base, "/")); code != 200 || d.unit("ticker") != "inactive" {
		t.Errorf("admin stop from the console's origin: %d %s; ticker %s", code, body, d.unit("ticker"))
	}
	if code, body := call("GET", "/v1/whoami", admin); code != 200 || !strings.Contains(body, `"role":"admin"`) {
		t.Errorf("whoami: %d %s", code, body)
	}

	// The metrics and the operator's routes follow the same rules.
	if code, _ := call("GET", "/metrics", ""); code != 401 {
		t.Errorf("GET /metrics without a token: %d, want 401", code)
	}
	if code, body := call("GET", "/metrics", ro); code != 200 || !strings.Contains(body, `opsvc_unit_state{state="active",unit="flaky"}`) {
		t.Errorf("read-only GET /metrics: %d %.300s", code, body)
	}
	if code, body := call("GET", "/api/orchestrator/instances", ro); code != 200 || !strings.Contains(body, `"id": "demo"`) {
		t.Errorf("read-only GET /api/orchestrator/instances: %d %s", code, body)
	}
	for _, path := range []string{"/api/orchestrator/ro/start", "/api/orchestrator/demo/stop"} {
		if code, _ := call("POST", path, ro); code != 403 {
			t.Errorf("read-only POST %s: %d, want 403", path, code)
		}
		if code, _ := call("POST", path, admin, "Origin", "http://evil.example"); code != 403 {
			t.Errorf("cross-origin POST %s: %d, want 403", path, code)
		}
		if code, _ := call("POST", path, ""); code != 401 {
			t.Errorf("POST %s without a token: %d, want 401", path, code)
		}
	}
	if code, body := call("POST", "/api/orchestrator/demo/stop?drain=1", admin); code != 200 || !strings.Contains(body, `"unit": "agent@demo"`) {
		t.Errorf("admin drain of agent@demo: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/budgets", ro); code != 200 || !strings.Contains(body, `"global_limit_usd"`) {
		t.Errorf("read-only GET /v1/budgets: %d %s", code, body)
	}

	// Rotation by the CLI reaches the running daemon at once.
	d.cli("token", "--rotate")
	if code, _ := call("GET", "/v1/units", admin); code != 401 {
		t.Errorf("old admin token after rotation: %d, want 401", code)
	}
	if code, _ := call("GET", "/login?token="+ro, ""); code != 401 {
		t.Errorf("login with the old read-only token: %d, want 401", code)
	}
	if code, _ := call("GET", "/v1/units", d.cli("token")); code != 200 {
		t.Errorf("new admin token: %d, want 200", code)
	}

	// Each refusal is an event with the remote address (the first of each
	// second per address; the ones in between are counted).
	d.poll("an api.denied event", func() bool { return len(d.events("api.denied")) > 0 })
	e := d.events("api.denied")[0]
	host, _, err := net.SplitHostPort(e.Data["remote"].(string))
	if host != "127.0.0.1" || err != nil || e.Data["status"] != 401.0 || e.Data["path"] != "/v1/units" || e.Data["reason"] != "no token" {
		t.Errorf("api.denied = %+v", e)
	}
}

type eventJSON struct {
	Seq  uint64         `json:"seq"`
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

// events reads the stored events of a type over the control socket.
func (d *consoleDaemon) events(typ string) []eventJSON {
	out := d.cli("events", "--json", "--type", typ)
	var list []eventJSON
	for _, line := range strings.Split(out, "\n") {
		var e eventJSON
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == typ {
			list = append(list, e)
		}
	}
	return list
}

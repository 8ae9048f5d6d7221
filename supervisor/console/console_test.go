package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/webauth"
)

// server is the console on a real TCP port with a real bus and tokens; the
// API behind it echoes what reached it.
type server struct {
	t      *testing.T
	url    string
	bus    *bus.Bus
	store  *webauth.Store
	con    *Console
	tokens webauth.Tokens
	denied chan webauth.Denial
}

func newServer(t *testing.T, busOpts bus.Options) *server {
	t.Helper()
	dir := t.TempDir()
	b, err := bus.Open(dir, busOpts)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, bus: b, store: webauth.NewStore(dir), denied: make(chan webauth.Denial, 100)}
	if s.tokens, err = s.store.Ensure(); err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeErr(w, http.StatusRequestEntityTooLarge, err.Error(), "")
			return
		}
		role, _ := webauth.RoleFrom(r.Context())
		writeJSON(w, http.StatusOK, map[string]any{"api": r.Method + " " + r.URL.Path, "bytes": len(body), "role": role.String()})
	})
	guard := webauth.New(webauth.Options{Store: s.store, Denied: func(d webauth.Denial) { s.denied <- d }})
	c := New(Options{API: api, Events: b, Guard: guard, Logf: t.Logf})
	ln, err := Listen(context.Background(), ListenConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s.con = c
	srv := NewServer(c, t.Logf)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		c.Close() // ends the WebSockets, which Shutdown does not track
		<-done
		b.Close()
	})
	s.url = "http://" + ln.Addr().String()
	return s
}

func (s *server) get(path, token string, hdr ...string) (*http.Response, []byte) {
	s.t.Helper()
	return s.req("GET", path, token, nil, hdr...)
}

func (s *server) req(method, path, token string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

func TestHandlerRoutes(t *testing.T) {
	s := newServer(t, bus.Options{})
	s.bus.Publish(bus.Event{Type: "unit.started", Unit: "a"})
	s.bus.Publish(bus.Event{Type: "unit.ready", Unit: "a"})

	resp, body := s.get("/", s.tokens.ReadOnly)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<title>opsvc") {
		t.Fatalf("GET / = %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("page CSP = %q", csp)
	}
	for _, h := range []string{"X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("page without %s", h)
		}
	}
	resp, body = s.get("/assets/app.js", s.tokens.ReadOnly)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || len(body) == 0 {
		t.Errorf("GET /assets/app.js = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := s.get("/assets/", s.tokens.ReadOnly); resp.StatusCode != 404 {
		t.Errorf("directory listing: %d, want 404", resp.StatusCode)
	}
	if resp, _ := s.get("/", ""); resp.StatusCode != 401 {
		t.Errorf("page without a token: %d, want 401", resp.StatusCode)
	}

	for tok, role := range map[string]string{s.tokens.Admin: "admin", s.tokens.ReadOnly: "read-only"} {
		resp, body := s.get("/v1/whoami", tok)
		var w Whoami
		if resp.StatusCode != 200 || json.Unmarshal(body, &w) != nil || w.Role != role || w.LastSeq != 2 {
			t.Errorf("whoami as %s = %d %s", role, resp.StatusCode, body)
		}
	}
	// Without a guard (the control socket) the role is local.
	local := httptestRecorder(New(Options{API: http.NotFoundHandler(), Events: s.bus}), "GET", "/v1/whoami")
	if !strings.Contains(local, `"role":"local"`) {
		t.Errorf("whoami without a guard: %s", local)
	}

	// Other paths reach the API with the role.
	resp, body = s.get("/v1/units", s.tokens.ReadOnly)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"api":"GET /v1/units"`) || !strings.Contains(string(body), `"role":"read-only"`) {
		t.Errorf("GET /v1/units = %d %s", resp.StatusCode, body)
	}
	resp, body = s.req("POST", "/v1/units/a/stop", s.tokens.Admin, strings.NewReader("{}"))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"bytes":2`) {
		t.Errorf("POST stop = %d %s", resp.StatusCode, body)
	}
	resp, _ = s.req("POST", "/v1/units/a/stop", s.tokens.ReadOnly, nil)
	if resp.StatusCode != 403 {
		t.Errorf("read-only POST = %d, want 403", resp.StatusCode)
	}
	// Bodies are capped.
	resp, body = s.req("PUT", "/v1/settings", s.tokens.Admin, bytes.NewReader(make([]byte, MaxBodyBytes+1)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body = %d %s, want 413", resp.StatusCode, body)
	}
}

// httptestRecorder serves one request in memory.
func httptestRecorder(h http.Handler, method, path string) string {
	req, _ := http.NewRequest(method, path, nil)
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	return rec.body.String()
}

type recorder struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// dial opens the event WebSocket.
func (s *server) dial(ctx context.Context, query, token string, hdr ...string) (*websocket.Conn, *http.Response, error) {
	return s.dialAt(ctx, "/v1/events/ws", query, token, hdr...)
}

// dialAt is dial on another path of the feed.
func (s *server) dialAt(ctx context.Context, path, query, token string, hdr ...string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+path+query, &websocket.DialOptions{HTTPHeader: h})
}

func readEvent(ctx context.Context, t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("message %s: %v", data, err)
	}
	return m
}

func TestWebSocketFeed(t *testing.T) {
	s := newServer(t, bus.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		s.bus.Publish(bus.Event{Type: "unit.started", Unit: fmt.Sprintf("u%d", i)})
	}

	// Without since: from now on.
	live, _, err := s.dial(ctx, "", s.tokens.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer live.CloseNow()
	// With since: the stored ones after it first, filtered.
	replay, _, err := s.dial(ctx, "?since=1&type=unit.*", s.tokens.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer replay.CloseNow()
	byUnit, _, err := s.dial(ctx, "?since=0&unit=u9", s.tokens.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer byUnit.CloseNow()

	s.bus.Publish(bus.Event{Type: "config.loaded"})
	s.bus.Publish(bus.Event{Type: "unit.stopped", Unit: "u9"})

	for _, want := range []float64{4, 5} {
		if m := readEvent(ctx, t, live); m["seq"] != want {
			t.Errorf("live: seq %v, want %v", m["seq"], want)
		}
	}
	for _, want := range []float64{2, 3, 5} {
		if m := readEvent(ctx, t, replay); m["seq"] != want {
			t.Errorf("replay: seq %v, want %v (%v)", m["seq"], want, m)
		}
	}
	if m := readEvent(ctx, t, byUnit); m["seq"] != 5.0 || m["unit"] != "u9" {
		t.Errorf("unit filter: %v", m)
	}

	// The bus closing (the daemon stopping) closes the feed with 1001.
	replay.CloseNow()
	byUnit.CloseNow()
	s.bus.Close()
	_, _, err = live.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("after Bus.Close: %v (status %v), want going away", err, got)
	}
}

func TestWebSocketRefused(t *testing.T) {
	s := newServer(t, bus.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		query  string
		token  string
		hdr    []string
		status int
	}{
		{"no token", "", "", nil, 401},
		{"bad token", "", "x", nil, 401},
		{"foreign origin", "", s.tokens.Admin, []string{"Origin", "http://evil.example"}, 403},
		{"bad since", "?since=-1", s.tokens.Admin, nil, 400},
		{"bad compat", "?compat=socketio", s.tokens.Admin, nil, 400},
	} {
		c, resp, err := s.dial(ctx, tc.query, tc.token, tc.hdr...)
		if err == nil {
			c.CloseNow()
			t.Errorf("%s: connected", tc.name)
			continue
		}
		if resp == nil || resp.StatusCode != tc.status {
			t.Errorf("%s: %v, want status %d", tc.name, err, tc.status)
		}
	}
	if d := <-s.denied; d.Path != "/v1/events/ws" || d.Status != 401 {
		t.Errorf("denial %+v", d)
	}
	// Rotation ends the old token's access to the feed too.
	old := s.tokens.Admin
	if _, err := s.store.Rotate(); err != nil {
		t.Fatal(err)
	}
	if c, resp, err := s.dial(ctx, "", old); err == nil || resp == nil || resp.StatusCode != 401 {
		if c != nil {
			c.CloseNow()
		}
		t.Errorf("old token after rotation: %v", err)
	}
	// The client may send nothing but control frames.
	fresh, _ := s.store.Read()
	c, _, err := s.dial(ctx, "", fresh.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"subscribe":"all"}`)); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Errorf("after a data message: %v, want policy violation", err)
	}
}

func TestWebSocketOperatorCompat(t *testing.T) {
	s := newServer(t, bus.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The original operator's clients use /api/events/ws.
	c, _, err := s.dialAt(ctx, "/api/events/ws", "?compat=operator", s.tokens.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	s.bus.Publish(bus.Event{Type: "worker.progress", Unit: "echo", PID: 7, Data: map[string]any{"name": "progress", "data": map[string]any{"pct": 50}}})
	s.bus.Publish(bus.Event{Type: "session.lease", Unit: "agent@a", Data: map[string]any{"lease_id": "l1"}})
	s.bus.Publish(bus.Event{Type: "chain.created", Unit: "agent@a", Data: map[string]any{"chain_id": "c-1", "task": "t"}})
	s.bus.Publish(bus.Event{Type: "unit.stopped", Unit: "echo"})

	var got []string
	for range 6 { // 4 events, 2 of them also in the operator's shape
		m := readEvent(ctx, t, c)
		if m["type"] == "event" {
			ev := m["event"].(map[string]any)
			got = append(got, fmt.Sprintf("event %v %v %v %v", ev["name"], ev["unit"], ev["seq"], mustJSON(ev["data"])))
			continue
		}
		got = append(got, fmt.Sprintf("%v %v", m["type"], m["seq"]))
	}
	want := []string{
		"worker.progress 1", `event progress echo 1 {"pct":50}`,
		"session.lease 2",
		"chain.created 3", `event chain.created agent@a 3 {"chain_id":"c-1","task":"t"}`,
		"unit.stopped 4",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestWebSocketLagged: a client that does not read is cut off with
// bus.lagged, which says where to resume, and a close status; the daemon
// does not wait for it.
func TestWebSocketLagged(t *testing.T) {
	s := newServer(t, bus.Options{SubscriberBuffer: 4, MaxBytes: 64 << 20, SourceRate: bus.Unlimited})
	// 16 MiB of events through the race detector: room for a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, err := s.dial(ctx, "", s.tokens.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	// More than the socket buffers hold, while the client reads nothing.
	pad := strings.Repeat("x", 16<<10)
	const n = 1024
	for i := range n {
		s.bus.Publish(bus.Event{Type: "worker.blob", Unit: "u", Data: map[string]any{"i": i, "pad": pad}})
	}
	var last map[string]any
	count := 0
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusTryAgainLater {
				t.Fatalf("end of the feed: %v, want status try again later", err)
			}
			break
		}
		count++
		last = nil
		json.Unmarshal(data, &last)
	}
	if last["type"] != bus.TypeLagged {
		t.Fatalf("last message %v, want %s", last["type"], bus.TypeLagged)
	}
	after := last["data"].(map[string]any)["dropped_after"].(float64)
	if count >= n+1 || after < float64(count-1) || after >= n {
		t.Errorf("got %d messages, dropped_after %v of %d", count, after, n)
	}
	// Resuming from dropped_after gets the rest, without a gap.
	c2, _, err := s.dial(ctx, fmt.Sprintf("?since=%d", int(after)), s.tokens.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	c2.SetReadLimit(1 << 20)
	if m := readEvent(ctx, t, c2); m["seq"] != after+1 {
		t.Errorf("resumed at seq %v, want %v", m["seq"], after+1)
	}
}

// TestConsoleClose: closing the console (the daemon stopping) ends the open
// feeds with 1001 and refuses new ones.
func TestConsoleClose(t *testing.T) {
	s := newServer(t, bus.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "", s.tokens.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	closed := make(chan struct{})
	go func() { s.con.Close(); close(closed) }()
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("after Close: %v, want going away", err)
	}
	<-closed
	if c2, resp, err := s.dial(ctx, "", s.tokens.ReadOnly); err == nil || resp == nil || resp.StatusCode != 503 {
		if c2 != nil {
			c2.CloseNow()
		}
		t.Errorf("feed after Close: %v, want 503", err)
	}
}

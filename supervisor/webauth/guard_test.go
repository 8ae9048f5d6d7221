package webauth

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a guarded server on a real TCP port.
type fixture struct {
	t       *testing.T
	url     string // http://127.0.0.1:PORT
	store   *Store
	tokens  Tokens
	clock   *clock
	mu      sync.Mutex
	denials []Denial
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, store: NewStore(t.TempDir()), clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	var err error
	if f.tokens, err = f.store.Ensure(); err != nil {
		t.Fatal(err)
	}
	g := New(Options{Store: f.store, Now: f.clock.Now, Denied: func(d Denial) {
		f.mu.Lock()
		f.denials = append(f.denials, d)
		f.mu.Unlock()
	}})
	// The guarded handler answers with the role it was given.
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, ok := RoleFrom(r.Context())
		if !ok {
			t.Errorf("%s %s reached the handler without a role", r.Method, r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"role": role.String(), "path": r.URL.Path})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Wrap(next), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	f.url = "http://" + ln.Addr().String()
	return f
}

type result struct {
	status int
	role   string
	body   map[string]string
	header http.Header
}

// do sends one request with the given headers ("Cookie", "Origin", …;
// "Bearer" is shorthand for an Authorization header).
func (f *fixture) do(client *http.Client, method, path string, hdr map[string]string) result {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(""))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Bearer" {
			req.Header.Set("Authorization", "Bearer "+v)
			continue
		}
		req.Header.Set(k, v)
	}
	if client == nil {
		client = noRedirect(nil)
	}
	resp, err := client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := result{status: resp.StatusCode, header: resp.Header, body: map[string]string{}}
	json.Unmarshal(raw, &res.body)
	res.role = res.body["role"]
	return res
}

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) lastDenial() Denial {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.denials) == 0 {
		f.t.Fatal("no denial reported")
	}
	return f.denials[len(f.denials)-1]
}

func (f *fixture) denialCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.denials)
}

func TestGuardRules(t *testing.T) {
	f := newFixture(t)
	own := f.url
	tests := []struct {
		name   string
		method string
		hdr    map[string]string
		status int
		role   string // when 200
		reason string // when refused
	}{
		{"no token", "GET", nil, 401, "", "no token"},
		{"no token POST", "POST", nil, 401, "", "no token"},
		{"bad token", "GET", map[string]string{"Bearer": newToken()}, 401, "", "bad token"},
		{"basic auth", "GET", map[string]string{"Authorization": "Basic " + f.tokens.Admin}, 401, "", "bad token"},
		{"admin GET", "GET", map[string]string{"Bearer": f.tokens.Admin}, 200, "admin", ""},
		{"admin lower-case scheme", "GET", map[string]string{"Authorization": "bearer " + f.tokens.Admin}, 200, "admin", ""},
		{"admin POST, no origin", "POST", map[string]string{"Bearer": f.tokens.Admin}, 200, "admin", ""},
		{"admin POST, own origin", "POST", map[string]string{"Bearer": f.tokens.Admin, "Origin": own}, 200, "admin", ""},
		{"admin PUT, own referer", "PUT", map[string]string{"Bearer": f.tokens.Admin, "Referer": own + "/#/settings"}, 200, "admin", ""},
		{"admin POST, foreign origin", "POST", map[string]string{"Bearer": f.tokens.Admin, "Origin": "http://evil.example"}, 403, "", "cross-origin"},
		{"admin POST, other port", "POST", map[string]string{"Bearer": f.tokens.Admin, "Origin": "http://127.0.0.1:1"}, 403, "", "cross-origin"},
		{"admin POST, null origin", "POST", map[string]string{"Bearer": f.tokens.Admin, "Origin": "null"}, 403, "", "cross-origin"},
		{"admin DELETE, foreign referer", "DELETE", map[string]string{"Bearer": f.tokens.Admin, "Referer": "http://evil.example/x"}, 403, "", "cross-origin"},
		{"admin POST, cross-site fetch", "POST", map[string]string{"Bearer": f.tokens.Admin, "Sec-Fetch-Site": "cross-site"}, 403, "", "cross-origin"},
		{"admin GET, foreign origin", "GET", map[string]string{"Bearer": f.tokens.Admin, "Origin": "http://evil.example"}, 200, "admin", ""},
		{"read-only GET", "GET", map[string]string{"Bearer": f.tokens.ReadOnly}, 200, "read-only", ""},
		{"read-only HEAD", "HEAD", map[string]string{"Bearer": f.tokens.ReadOnly}, 200, "", ""},
		{"read-only POST", "POST", map[string]string{"Bearer": f.tokens.ReadOnly, "Origin": own}, 403, "", "read-only"},
		{"read-only PUT", "PUT", map[string]string{"Bearer": f.tokens.ReadOnly}, 403, "", "read-only"},
		{"read-only OPTIONS", "OPTIONS", map[string]string{"Bearer": f.tokens.ReadOnly}, 403, "", "read-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Add(time.Minute) // every denial is reported, not coalesced
			before := f.denialCount()
			res := f.do(nil, tt.method, "/v1/units", tt.hdr)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d (body %v)", res.status, tt.status, res.body)
			}
			if tt.status == 200 {
				if tt.method != "HEAD" && res.role != tt.role {
					t.Errorf("role = %q, want %q", res.role, tt.role)
				}
				if f.denialCount() != before {
					t.Errorf("an allowed request was reported as denied")
				}
				return
			}
			if res.body["error"] == "" || res.body["hint"] == "" {
				t.Errorf("refusal body %v lacks error and hint", res.body)
			}
			if tt.status == 401 && res.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			d := f.lastDenial()
			if f.denialCount() != before+1 || d.Reason != tt.reason || d.Status != tt.status || d.Method != tt.method || d.Path != "/v1/units" {
				t.Errorf("denial = %+v (count %d→%d), want reason %q status %d", d, before, f.denialCount(), tt.reason, tt.status)
			}
			if host, _, err := net.SplitHostPort(d.Remote); err != nil || host != "127.0.0.1" {
				t.Errorf("denial remote = %q, want 127.0.0.1:PORT", d.Remote)
			}
		})
	}
}

func TestGuardLoginCookie(t *testing.T) {
	f := newFixture(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)

	res := f.do(c, "GET", "/login?token="+url.QueryEscape(f.tokens.Admin), nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/" {
		t.Fatalf("login = %d to %q, want 303 to /", res.status, res.header.Get("Location"))
	}
	set := res.header.Get("Set-Cookie")
	for _, want := range []string{CookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("Set-Cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, f.tokens.Admin) {
		t.Error("the cookie holds the token itself")
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Error("login response may be cached")
	}
	if got := f.do(c, "GET", "/v1/units", nil); got.status != 200 || got.role != "admin" {
		t.Fatalf("with the cookie: %d %q", got.status, got.role)
	}
	if got := f.do(c, "POST", "/v1/units/x/stop", map[string]string{"Origin": f.url}); got.status != 200 {
		t.Errorf("admin cookie POST from own origin = %d", got.status)
	}
	if got := f.do(c, "POST", "/v1/units/x/stop", map[string]string{"Origin": "http://evil.example"}); got.status != 403 {
		t.Errorf("admin cookie POST from a foreign origin = %d, want 403", got.status)
	}
	// A bad bearer token is not rescued by a good cookie.
	if got := f.do(c, "GET", "/v1/units", map[string]string{"Bearer": "nope"}); got.status != 401 {
		t.Errorf("bad bearer with a good cookie = %d, want 401", got.status)
	}
	// Logged in, /login without a token goes on to the console.
	if got := f.do(c, "GET", "/login", nil); got.status != http.StatusSeeOther {
		t.Errorf("/login with a session = %d, want 303", got.status)
	}
	// Logout clears the cookie.
	f.do(c, "GET", "/logout", nil)
	if got := f.do(c, "GET", "/v1/units", nil); got.status != 401 {
		t.Errorf("after logout = %d, want 401", got.status)
	}

	// The read-only token logs in as read-only.
	jar2, _ := cookiejar.New(nil)
	ro := noRedirect(jar2)
	f.do(ro, "GET", "/login?token="+f.tokens.ReadOnly, nil)
	if got := f.do(ro, "GET", "/v1/units", nil); got.status != 200 || got.role != "read-only" {
		t.Errorf("read-only cookie GET = %d %q", got.status, got.role)
	}
	if got := f.do(ro, "POST", "/v1/units/x/stop", map[string]string{"Origin": f.url}); got.status != 403 {
		t.Errorf("read-only cookie POST = %d, want 403", got.status)
	}

	// A bad token sets no cookie.
	f.clock.Add(time.Minute)
	jar3, _ := cookiejar.New(nil)
	bad := noRedirect(jar3)
	if got := f.do(bad, "GET", "/login?token="+newToken(), map[string]string{"Accept": "text/html"}); got.status != 401 || got.header.Get("Set-Cookie") != "" {
		t.Errorf("login with a bad token = %d, Set-Cookie %q", got.status, got.header.Get("Set-Cookie"))
	}
	if d := f.lastDenial(); d.Path != "/login" || d.Reason != "bad token" {
		t.Errorf("denial = %+v", d)
	}
	if got := f.do(bad, "POST", "/login?token="+f.tokens.Admin, nil); got.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /login = %d, want 405", got.status)
	}
}

func TestGuardForgedCookies(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	ro := makeCookie(f.tokens, RoleReadOnly, now)
	parts := strings.Split(ro, ".")
	forged := []string{
		"v1.2." + parts[2] + "." + parts[3], // read-only MAC, admin role
		"v1.3." + parts[2] + "." + parts[3], // local is not a cookie role
		"v1.1." + parts[2] + "." + parts[3][:10],
		"v2.1." + parts[2] + "." + parts[3],
		"garbage",
		makeCookie(Tokens{Admin: newToken(), ReadOnly: newToken()}, RoleAdmin, now), // another daemon's
	}
	for _, v := range forged {
		res := f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": CookieName + "=" + v})
		if res.status != 401 {
			t.Errorf("cookie %q: status %d, want 401", v, res.status)
		}
		if !strings.Contains(res.header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("cookie %q: a refused session cookie is not cleared", v)
		}
	}
	if res := f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": CookieName + "=" + ro}); res.status != 200 || res.role != "read-only" {
		t.Errorf("genuine cookie: %d %q", res.status, res.role)
	}
}

func TestGuardSessionAge(t *testing.T) {
	f := newFixture(t)
	cookie := CookieName + "=" + makeCookie(f.tokens, RoleAdmin, f.clock.Now())
	f.clock.Add(2 * time.Hour)
	res := f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": cookie})
	if res.status != 200 || res.header.Get("Set-Cookie") != "" {
		t.Fatalf("young cookie: %d, Set-Cookie %q (want 200, no renewal)", res.status, res.header.Get("Set-Cookie"))
	}
	f.clock.Add(2 * 24 * time.Hour)
	res = f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": cookie})
	if res.status != 200 || !strings.Contains(res.header.Get("Set-Cookie"), CookieName+"=v1.") {
		t.Fatalf("two-day-old cookie in use: %d, Set-Cookie %q (want 200 and a renewal)", res.status, res.header.Get("Set-Cookie"))
	}
	f.clock.Add(DefaultSessionMaxAge)
	if res := f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": cookie}); res.status != 401 {
		t.Errorf("expired cookie: %d, want 401", res.status)
	}
	future := CookieName + "=" + makeCookie(f.tokens, RoleAdmin, f.clock.Now().Add(time.Hour))
	if res := f.do(nil, "GET", "/v1/units", map[string]string{"Cookie": future}); res.status != 401 {
		t.Errorf("cookie from the future: %d, want 401", res.status)
	}
}

// TestGuardRotate: a rotation by another process stops the old tokens and
// every session made with them at the next request.
func TestGuardRotate(t *testing.T) {
	f := newFixture(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	f.do(c, "GET", "/login?token="+f.tokens.Admin, nil)
	if res := f.do(c, "GET", "/v1/units", nil); res.status != 200 {
		t.Fatalf("before rotation: %d", res.status)
	}
	fresh, err := NewStore(f.store.dir).Rotate()
	if err != nil {
		t.Fatal(err)
	}
	for name, hdr := range map[string]map[string]string{
		"old admin":     {"Bearer": f.tokens.Admin},
		"old read-only": {"Bearer": f.tokens.ReadOnly},
	} {
		if res := f.do(nil, "GET", "/v1/units", hdr); res.status != 401 {
			t.Errorf("%s token after rotation: %d, want 401", name, res.status)
		}
	}
	f.clock.Add(time.Minute)
	if res := f.do(c, "GET", "/v1/units", nil); res.status != 401 || f.lastDenial().Reason != "bad session" {
		t.Errorf("old cookie after rotation: %d, reason %q; want 401 bad session", res.status, f.lastDenial().Reason)
	}
	if res := f.do(nil, "GET", "/v1/units", map[string]string{"Bearer": fresh.Admin}); res.status != 200 || res.role != "admin" {
		t.Errorf("new admin token: %d %q", res.status, res.role)
	}
	if res := f.do(nil, "GET", "/login?token="+f.tokens.Admin, nil); res.status != 401 {
		t.Errorf("login with an old token: %d, want 401", res.status)
	}

	// Without a readable tokens file nothing gets in.
	if err := os.Remove(f.store.Path()); err != nil {
		t.Fatal(err)
	}
	if res := f.do(nil, "GET", "/v1/units", map[string]string{"Bearer": fresh.Admin}); res.status != 503 || !strings.Contains(res.body["hint"], "opsvc token --rotate") {
		t.Errorf("tokens file gone: %d %v, want 503 with a hint", res.status, res.body)
	}
}

func TestGuardBrowserPage(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.url+"/", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "opsvc console") {
		t.Errorf("browser without a session: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestGuardDenialsCoalesced: a flood of refusals from one host is one call
// per window, each carrying the count held back.
func TestGuardDenialsCoalesced(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		if res := f.do(nil, "GET", "/v1/units", nil); res.status != 401 {
			t.Fatalf("status %d", res.status)
		}
	}
	if n := f.denialCount(); n != 1 {
		t.Fatalf("5 refusals within a window made %d calls, want 1", n)
	}
	f.clock.Add(DefaultDenialWindow)
	f.do(nil, "GET", "/v1/units", nil)
	if n, d := f.denialCount(), f.lastDenial(); n != 2 || d.Repeated != 4 {
		t.Errorf("after the window: %d calls, repeated %d; want 2 calls, 4 repeated", n, d.Repeated)
	}
}

func TestReporterBounded(t *testing.T) {
	rp := reporter{window: time.Second, last: map[string]*source{}}
	now := time.Unix(1000, 0)
	calls := 0
	for i := range 3 * maxDenialSources {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
		if _, ok := rp.admit(net.JoinHostPort(ip, "1"), now); ok {
			calls++
		}
	}
	if len(rp.last) > maxDenialSources+1 {
		t.Errorf("reporter tracks %d hosts, want at most %d", len(rp.last), maxDenialSources+1)
	}
	if calls != maxDenialSources+1 {
		t.Errorf("%d calls for %d hosts in one window, want %d", calls, 3*maxDenialSources, maxDenialSources+1)
	}
	// Later, old hosts make room again.
	n, ok := rp.admit("192.0.2.1:5", now.Add(2*time.Second))
	if !ok || n != 0 {
		t.Errorf("a new host after the window: %d, %v", n, ok)
	}
}

package webauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CookieName is the session cookie set by GET /login.
const CookieName = "opsvc_session"

// Defaults for Options.
const (
	DefaultSessionMaxAge = 7 * 24 * time.Hour
	DefaultDenialWindow  = time.Second
	maxDenialSources     = 1024
)

// Options configure a Guard.
type Options struct {
	// Store holds the tokens; required.
	Store *Store
	// Denied, if set, is called for refused requests (the daemon publishes
	// api.denied). Repeated refusals from one address within DenialWindow are
	// counted and reported with the next call for that address, so a flood
	// of bad requests is not a flood of calls. It must not block.
	Denied func(Denial)
	// DenialWindow is the shortest time between two calls of Denied for one
	// address. Default one second.
	DenialWindow time.Duration
	// SessionMaxAge is how long a session cookie stays valid without being
	// used; a cookie in use is renewed once a day. Default seven days.
	SessionMaxAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Denial is one refused request.
type Denial struct {
	Remote   string // the peer's address, host:port
	Method   string
	Path     string
	Status   int    // 401, 403 or 503
	Reason   string // "no token", "bad token", "bad session", "read-only", "cross-origin", "tokens unreadable"
	Repeated int    // refusals from the same host not reported since the last call
}

// Guard authenticates requests over TCP and serves /login and /logout.
type Guard struct {
	opts    Options
	reports reporter
}

// New returns a Guard for the tokens in opts.Store.
func New(opts Options) *Guard {
	if opts.DenialWindow <= 0 {
		opts.DenialWindow = DefaultDenialWindow
	}
	if opts.SessionMaxAge <= 0 {
		opts.SessionMaxAge = DefaultSessionMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Guard{opts: opts, reports: reporter{window: opts.DenialWindow, last: map[string]*source{}}}
}

// Wrap returns next behind the guard. It serves GET /login?token=TOKEN (sets
// the session cookie, then redirects to /) and GET /logout itself. Every
// other request needs the admin or the read-only token, as
// "Authorization: Bearer TOKEN" or the session cookie: without one it is
// refused with 401. The read-only token may only GET and HEAD (403
// otherwise), and a request that may change state must not come from
// another origin: its Origin header, or else its Referer, must name the host
// it was sent to (403 otherwise). next finds the role with RoleFrom.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			g.login(w, r)
			return
		case "/logout":
			g.logout(w, r)
			return
		}
		tokens, err := g.opts.Store.Current()
		if err != nil {
			g.deny(w, r, http.StatusServiceUnavailable, "tokens unreadable", err.Error(), "run: opsvc token --rotate")
			return
		}
		role, byCookie, reason := g.authenticate(r, tokens)
		if role == RoleNone {
			if reason == "bad session" {
				clearCookie(w, r)
			}
			g.deny(w, r, http.StatusUnauthorized, reason, unauthorized[reason], "send Authorization: Bearer TOKEN (see: opsvc token), or log in with the link that opsvc console prints")
			return
		}
		if !safeMethod(r.Method) {
			if !role.MayChange() {
				g.deny(w, r, http.StatusForbidden, "read-only", "the read-only token may not change anything", "use the admin token (opsvc token)")
				return
			}
			if !sameOrigin(r) {
				g.deny(w, r, http.StatusForbidden, "cross-origin", "request from another origin refused", "send changes from the console's own page, or from a client that sends no Origin header")
				return
			}
		}
		if byCookie != nil {
			g.renew(w, r, tokens, role, *byCookie)
		}
		next.ServeHTTP(w, r.WithContext(WithRole(r.Context(), role)))
	})
}

var unauthorized = map[string]string{
	"no token":    "authentication required",
	"bad token":   "the token is not valid (tokens may have been rotated)",
	"bad session": "the session has expired or the tokens were rotated",
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// authenticate finds the role of r: from its bearer token if it has an
// Authorization header (a bad one is not rescued by a cookie), else from its
// session cookie. For a cookie it also returns when it was issued.
func (g *Guard) authenticate(r *http.Request, t Tokens) (Role, *time.Time, string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return RoleNone, nil, "bad token"
		}
		if role := t.Role(strings.TrimSpace(tok)); role != RoleNone {
			return role, nil, ""
		}
		return RoleNone, nil, "bad token"
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return RoleNone, nil, "no token"
	}
	role, issued, ok := g.checkCookie(c.Value, t)
	if !ok {
		return RoleNone, nil, "bad session"
	}
	return role, &issued, ""
}

// A session cookie is "v1.ROLE.ISSUED.MAC": the role as a number, the
// unix time it was issued, and an HMAC-SHA256 of both keyed with the
// role's token. Rotating the tokens invalidates every cookie.
func cookieMAC(secret string, role Role, issued int64) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "opsvc console session|v1|%d|%d", role, issued)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func makeCookie(t Tokens, role Role, issued time.Time) string {
	sec := issued.Unix()
	return fmt.Sprintf("v1.%d.%d.%s", role, sec, cookieMAC(t.secret(role), role, sec))
}

func (g *Guard) checkCookie(v string, t Tokens) (Role, time.Time, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return RoleNone, time.Time{}, false
	}
	n, err := strconv.Atoi(parts[1])
	role := Role(n)
	if err != nil || (role != RoleAdmin && role != RoleReadOnly) {
		return RoleNone, time.Time{}, false
	}
	sec, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return RoleNone, time.Time{}, false
	}
	want := cookieMAC(t.secret(role), role, sec)
	if !hmac.Equal([]byte(want), []byte(parts[3])) {
		return RoleNone, time.Time{}, false
	}
	issued, now := time.Unix(sec, 0), g.opts.Now()
	if issued.After(now.Add(time.Minute)) || now.Sub(issued) > g.opts.SessionMaxAge {
		return RoleNone, time.Time{}, false
	}
	return role, issued, true
}

func (g *Guard) setCookie(w http.ResponseWriter, r *http.Request, t Tokens, role Role) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    makeCookie(t, role, g.opts.Now()),
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// renew re-issues a session cookie in use that is more than a day old, so
// an open console stays logged in.
func (g *Guard) renew(w http.ResponseWriter, r *http.Request, t Tokens, role Role, issued time.Time) {
	if g.opts.Now().Sub(issued) > g.opts.SessionMaxAge/7 {
		g.setCookie(w, r, t, role)
	}
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (g *Guard) login(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if !safeMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, r, http.StatusMethodNotAllowed, "login: use GET /login?token=TOKEN", "")
		return
	}
	tokens, err := g.opts.Store.Current()
	if err != nil {
		g.deny(w, r, http.StatusServiceUnavailable, "tokens unreadable", err.Error(), "run: opsvc token --rotate")
		return
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		// Already logged in: on to the console.
		if c, err := r.Cookie(CookieName); err == nil {
			if _, _, ok := g.checkCookie(c.Value, tokens); ok {
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
		}
		g.deny(w, r, http.StatusUnauthorized, "no token", "log in with /login?token=TOKEN", "opsvc console prints the link")
		return
	}
	role := tokens.Role(tok)
	if role == RoleNone {
		g.deny(w, r, http.StatusUnauthorized, "bad token", unauthorized["bad token"], "opsvc console prints a fresh link")
		return
	}
	g.setCookie(w, r, tokens, role)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (g *Guard) logout(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	clearCookie(w, r)
	if wantsHTML(r) {
		writeHTML(w, http.StatusOK, "Logged out", "You are logged out of the opsvc console. To log in again, run <code>opsvc console</code> and open the link it prints.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("{\"ok\":true}\n"))
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

// sameOrigin reports whether a request that may change state comes from the
// listener's own origin: its Origin (else its Referer) names the host it was
// sent to. A request with neither, and no cross-site Sec-Fetch-Site, is not
// from a browser page and passes (a page cannot send the bearer token or
// the session cookie of another origin without them).
func sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			return false
		}
		return true
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null"
	}
	return strings.EqualFold(u.Host, r.Host)
}

// deny answers a refused request and reports it.
func (g *Guard) deny(w http.ResponseWriter, r *http.Request, code int, reason, msg, hint string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="opsvc"`)
	}
	writeError(w, r, code, msg, hint)
	if g.opts.Denied == nil {
		return
	}
	if n, ok := g.reports.admit(r.RemoteAddr, g.opts.Now()); ok {
		g.opts.Denied(Denial{Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path, Status: code, Reason: reason, Repeated: n})
	}
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// writeError answers {"error","hint"}, or a small page for a browser.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg, hint string) {
	if wantsHTML(r) && r.Method == http.MethodGet {
		body := html.EscapeString(msg) + "."
		if hint != "" {
			body += "<p>" + html.EscapeString(hint) + ".</p>"
		}
		if code == http.StatusUnauthorized {
			body += "<p>On the daemon's host, run <code>opsvc console</code> and open the link it prints.</p>"
		}
		writeHTML(w, code, http.StatusText(code), body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "hint": hint})
}

// writeHTML writes a page; body is trusted HTML.
func writeHTML(w http.ResponseWriter, code int, title, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>opsvc: %s</title>`+
		`<style>body{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#1d2430}`+
		`code{background:#eef1f5;padding:.1em .3em;border-radius:3px}</style></head>`+
		`<body><h1>%s</h1><p>%s</p></body></html>`, html.EscapeString(title), html.EscapeString(title), body)
}

// reporter limits calls of Denied to one per host and window; the refusals
// in between are counted. It tracks at most maxDenialSources hosts; beyond
// that, new hosts share one entry.
type reporter struct {
	window time.Duration
	mu     sync.Mutex
	last   map[string]*source
}

type source struct {
	at         time.Time
	suppressed int
}

// admit reports whether a refusal from remote is to be reported now, and how
// many earlier ones were held back.
func (rp *reporter) admit(remote string, now time.Time) (int, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	s := rp.last[host]
	if s == nil {
		if len(rp.last) >= maxDenialSources {
			for h, old := range rp.last {
				if now.Sub(old.at) >= rp.window && old.suppressed == 0 {
					delete(rp.last, h)
				}
			}
		}
		if len(rp.last) >= maxDenialSources {
			host = "*"
			s = rp.last[host]
		}
		if s == nil {
			rp.last[host] = &source{at: now}
			return 0, true
		}
	}
	if now.Sub(s.at) < rp.window {
		s.suppressed++
		return 0, false
	}
	n := s.suppressed
	s.at, s.suppressed = now, 0
	return n, true
}

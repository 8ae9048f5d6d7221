package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/webauth"
)

//go:embed static
var staticFiles embed.FS

// Limits of the TCP server.
const (
	MaxBodyBytes      = 1 << 20
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Events is the event bus as the console uses it (*bus.Bus).
type Events interface {
	Subscribe(since uint64, f bus.Filter, follow bool) (*bus.Subscription, error)
	LastSeq() uint64
}

// Options are what the console serves.
type Options struct {
	// API is the control API, served for every path the console does not
	// serve itself. Required.
	API http.Handler
	// Events feeds the WebSocket routes and the last seq of /v1/whoami; nil
	// serves neither.
	Events Events
	// Guard authenticates every request; nil serves without it (the control
	// socket, whose peers are checked by their credentials): the role is then
	// "local".
	Guard *webauth.Guard
	// Logf receives what the console cannot answer to a client. Optional.
	Logf func(format string, args ...any)
}

// Console is the handler of the TCP listener.
type Console struct {
	h    http.Handler
	feed *feed // nil without Events
}

// New returns the console. It serves, behind the guard: the console page
// at / and its files under /assets/, GET /v1/whoami, the WebSocket event
// feed at /v1/events/ws and /api/events/ws, and everything else from the
// API. Request bodies are capped at MaxBodyBytes.
func New(opts Options) *Console {
	c := &Console{}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page(static))
	mux.Handle("GET /assets/", assets(static))
	mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		role, ok := webauth.RoleFrom(r.Context())
		if !ok {
			role = webauth.RoleLocal
		}
		var seq uint64
		if opts.Events != nil {
			seq = opts.Events.LastSeq()
		}
		writeJSON(w, http.StatusOK, Whoami{Role: role.String(), LastSeq: seq})
	})
	if opts.Events != nil {
		c.feed = newFeed(opts.Events, opts.Logf)
		mux.Handle("GET /v1/events/ws", c.feed)
		mux.Handle("GET /api/events/ws", c.feed)
	}
	mux.Handle("/", opts.API)
	var h http.Handler = mux
	h = http.MaxBytesHandler(h, MaxBodyBytes)
	if opts.Guard != nil {
		h = opts.Guard.Wrap(h)
	}
	c.h = headers(h)
	return c
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.h.ServeHTTP(w, r) }

// Close ends the open WebSocket feeds (close status 1001, which
// http.Server.Shutdown does not track) and waits for them; later ones are
// refused with 503.
func (c *Console) Close() {
	if c.feed != nil {
		c.feed.close()
	}
}

// Whoami is the body of GET /v1/whoami.
type Whoami struct {
	Role    string `json:"role"`     // "admin", "read-only" or "local"
	LastSeq uint64 `json:"last_seq"` // the seq of the last event published
}

// NewServer returns the HTTP server for the TCP listener: header, idle and
// size limits (a stream of events may last, so no write timeout).
func NewServer(h http.Handler, logf func(string, ...any)) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	if logf != nil {
		srv.ErrorLog = newLogger(logf)
	}
	return srv
}

// headers sets what every answer over TCP carries.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

func page(static fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := fs.ReadFile(static, "index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Cache-Control", "no-cache")
		w.Write(data)
	})
}

func assets(static fs.FS) http.Handler {
	files := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			writeErr(w, http.StatusNotFound, "no such file", "")
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, map[string]string{"error": msg, "hint": hint})
}

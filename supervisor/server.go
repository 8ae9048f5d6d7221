package supervisor

import (
	"errors"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor/netlimit"
)

// MaxBodyBytes caps the body of a request to the control API (Handler); a
// larger one is answered 413.
const MaxBodyBytes = 1 << 20

// answerTimeout bounds the writing of the answer to a waiting request once
// its wait is over.
const answerTimeout = 30 * time.Second

// Limits bound the control API's server, so that no local client can hold
// the daemon's connections, memory or file descriptors.
type Limits struct {
	// MaxConns caps the connections open at once; one past it is answered
	// 503 and closed, and the ones already open are served as before.
	MaxConns int
	// MaxHeaderBytes caps the request line and headers.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time to send the request line and
	// headers (a client that trickles them is closed).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time to send the whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time to answer a request, counted from the
	// end of its headers. Event and log streams (follow) and waiting
	// start/stop/restart are not bound by it.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
}

// DefaultLimits are the control API's limits.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:          256,
		MaxHeaderBytes:    64 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	return l
}

// Server serves the control API on a listener (the unix socket) within
// limits.
type Server struct {
	*http.Server
	limits Limits
}

// NewServer returns the control API's server for handler h (Handler), with
// the peer's credentials recorded (ConnContext). logf, if set, receives the
// server's own errors. Zero fields of limits take DefaultLimits.
func NewServer(h http.Handler, limits Limits, logf func(string, ...any)) *Server {
	limits = limits.withDefaults()
	srv := &http.Server{
		Handler:           h,
		ConnContext:       ConnContext,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
	}
	if logf != nil {
		srv.ErrorLog = log.New(logfWriter(logf), "", 0)
	}
	return &Server{Server: srv, limits: limits}
}

// Serve answers on ln, at most MaxConns connections at once, until
// Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.Server.Serve(LimitListener(ln, s.limits.MaxConns))
}

type logfWriter func(string, ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("control API: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// LimitListener returns a listener that holds at most max connections at
// once; one past it gets a 503 answer and is closed (see netlimit.Listener).
func LimitListener(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		max = DefaultLimits().MaxConns
	}
	return netlimit.Listener(ln, max)
}

// withBodyCap answers 413 to a request whose declared body is over max, and
// cuts a body that turns out longer at max (the handler's read fails with
// *http.MaxBytesError; tooLarge answers it).
func withBodyCap(next http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			bodyTooLarge(w, max)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}

func bodyTooLarge(w http.ResponseWriter, max int64) {
	w.Header().Set("Connection", "close")
	writeErr(w, http.StatusRequestEntityTooLarge, "request body is larger than "+byteSize(max), "send a smaller body; the control API takes at most "+byteSize(max)+" per request")
}

// tooLarge answers 413 when err is a body cut at its cap, and reports
// whether it did.
func tooLarge(w http.ResponseWriter, err error) bool {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return false
	}
	bodyTooLarge(w, mbe.Limit)
	return true
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// stream lifts the read and write deadlines of a long-lived answer (event
// and log streams, waiting requests); the client's going away still ends
// it.
func stream(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// longAnswer gives the answer to a request that may take longer than the
// server's write timeout d from now to be written.
func longAnswer(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(d))
}

// streaming marks next as a long-lived answer (see stream).
func streaming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream(w)
		next.ServeHTTP(w, r)
	})
}

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// pprofEnv names the address of the daemon's profiling endpoint: unset, the
// daemon serves none. Only a loopback address is accepted.
const pprofEnv = "OPSVC_PPROF"

// startPprof serves net/http/pprof on addr (host:port, loopback only) and
// returns the function that stops it.
func startPprof(addr string, logf func(string, ...any)) (func(), error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %v (use 127.0.0.1:PORT)", pprofEnv, addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%s=%q: not a loopback address (use 127.0.0.1:PORT)", pprofEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %v (choose another port)", pprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			logf("profiling endpoint: %v", err)
		}
	}()
	logf("profiling endpoint on http://%s/debug/pprof/", ln.Addr())
	return func() { srv.Close(); <-done }, nil
}

// pprofAddr is the profiling endpoint's address from the environment, or "".
func pprofAddr() string { return os.Getenv(pprofEnv) }

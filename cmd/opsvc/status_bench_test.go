//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
)

// unitListBody is GET /v1/units of n running units, as the daemon writes it.
func unitListBody(tb testing.TB, n int) []byte {
	tb.Helper()
	list := api.UnitList{Units: make([]api.UnitStatus, n)}
	since := time.Date(2026, 12, 3, 8, 1, 32, 577859332, time.UTC)
	for i := range list.Units {
		name := fmt.Sprintf("p%05d", i+1)
		list.Units[i] = api.UnitStatus{Name: name, Type: "simple", State: api.StateActive, Sub: "running", PID: 20000 + i,
			Since: since.Add(time.Duration(i) * time.Microsecond), Wanted: true, Sources: []string{"/etc/opsvc/units/" + name + ".toml"}}
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

// cannedDaemon serves body as GET /v1/units on a unix socket and returns
// the socket's path.
func cannedDaemon(tb testing.TB, body []byte) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "osb")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/units" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return sock
}

// pipeOut is a pipe whose read end is drained: what a terminal or a shell's
// pipe costs the CLI per write, unlike a buffer in memory. count returns
// the bytes drained so far (once the writer is closed).
func pipeOut(tb testing.TB) (w *os.File, count func() int64) {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		r.Close()
		done <- n
	}()
	return w, func() int64 { w.Close(); return <-done }
}

// BenchmarkStatus10k and BenchmarkList10k: the CLI's part of `opsvc status
// --json` and `opsvc list` with 10,000 units: the request over a unix
// socket, decoding, and writing to a pipe.
func BenchmarkStatus10k(b *testing.B) { benchCLI(b, "status", "--json") }
func BenchmarkList10k(b *testing.B)   { benchCLI(b, "list") }

func benchCLI(b *testing.B, verb ...string) {
	body := unitListBody(b, 10000)
	sock := cannedDaemon(b, body)
	out, count := pipeOut(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := run(context.Background(), append([]string{"--socket", sock}, verb...), out, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	if n := count(); n < int64(b.N)*10000*10 {
		b.Fatalf("%v wrote %d bytes in %d runs, want at least a line per unit", verb, n, b.N)
	}
}

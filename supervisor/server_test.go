package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveTest serves h with limits on a fresh unix socket and returns its path.
func serveTest(t *testing.T, h http.Handler, limits Limits) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "osvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, limits, t.Logf)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

// conn is one client connection speaking HTTP/1.1 by hand.
type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, sock string) *conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{Conn: c, r: bufio.NewReader(c)}
}

// get sends GET path and returns the answer's status and body.
func (c *conn) get(path string) (int, string, error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: opsvc\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitClosed reads from c until the server closes it, and fails if that
// does not happen within a generous deadline.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", within)
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

func TestServerClosesSlowHeaders(t *testing.T) {
	sock := serveTest(t, okHandler(), Limits{ReadHeaderTimeout: 100 * time.Millisecond})
	c := dial(t, sock)
	// A request line and half a header, then nothing: the connection must
	// not stay open waiting for the rest.
	if _, err := io.WriteString(c, "GET /v1/units HTTP/1.1\r\nHost: ops"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 20*time.Second)
}

func TestServerClosesSlowBody(t *testing.T) {
	sock := serveTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		io.WriteString(w, "ok")
	}), Limits{ReadTimeout: 100 * time.Millisecond})
	c := dial(t, sock)
	if _, err := io.WriteString(c, "POST /v1/reload HTTP/1.1\r\nHost: opsvc\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 20*time.Second)
}

func TestServerClosesIdle(t *testing.T) {
	sock := serveTest(t, okHandler(), Limits{IdleTimeout: 100 * time.Millisecond})
	c := dial(t, sock)
	if code, _, err := c.get("/"); err != nil || code != 200 {
		t.Fatalf("GET / = %d, %v", code, err)
	}
	waitClosed(t, c, 20*time.Second)
}

// A stream outlives the read and write timeouts: it ends when the client or
// the server ends it, not on a deadline.
func TestServerStreamOutlivesTimeouts(t *testing.T) {
	const timeout = 100 * time.Millisecond
	tick := make(chan string)
	sock := serveTest(t, streaming(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.Flush()
		for {
			select {
			case s := <-tick:
				io.WriteString(w, s+"\n")
				rc.Flush()
			case <-r.Context().Done():
				return
			}
		}
	})), Limits{ReadTimeout: timeout, WriteTimeout: timeout})
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: opsvc\r\n\r\n")
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // not resp.Body.Close: it would read the endless stream to its end
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// Each line is sent after the timeouts have passed once more.
		<-time.After(2 * timeout)
		want := "line " + strconv.Itoa(i)
		select {
		case tick <- want:
		case <-time.After(10 * time.Second):
			t.Fatalf("the stream's handler ended before %q", want)
		}
		got, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(got) != want {
			t.Fatalf("line %d = %q, %v; want %q", i, got, err, want)
		}
	}
}

func TestServerConnectionCap(t *testing.T) {
	const max = 256
	sock := serveTest(t, okHandler(), Limits{MaxConns: max})
	conns := make([]*conn, max)
	for i := range conns {
		conns[i] = dial(t, sock)
		if code, _, err := conns[i].get("/"); err != nil || code != 200 {
			t.Fatalf("connection %d: GET / = %d, %v", i+1, code, err)
		}
	}
	extra := dial(t, sock)
	code, body, err := extra.get("/")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, `"hint"`) {
		t.Fatalf("connection %d: GET / = %d %q, %v; want 503 with a hint", max+1, code, body, err)
	}
	waitClosed(t, extra, 20*time.Second)
	for i, c := range conns {
		if code, _, err := c.get("/"); err != nil || code != 200 {
			t.Fatalf("connection %d after the refusal: GET / = %d, %v", i+1, code, err)
		}
	}
	// A closed connection gives its place back.
	conns[0].Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := dial(t, sock)
		code, _, err := c.get("/")
		if err == nil && code == 200 {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no place after a connection closed: %d, %v", code, err)
		}
		<-time.After(10 * time.Millisecond)
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{1 << 20: "1 MiB", 64 << 10: "64 KiB", 1000: "1000 bytes"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

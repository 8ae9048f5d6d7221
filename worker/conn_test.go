package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logSink collects a Conn's diagnostics.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// rawDaemon is a Conn whose daemon end the test writes and reads by hand.
type rawDaemon struct {
	conn   *Conn
	daemon *os.File
	lines  *bufio.Reader
	log    *logSink
	eofs   chan struct{} // one value per OnEOF call
}

func newRawDaemon(t *testing.T) *rawDaemon {
	t.Helper()
	daemon, child, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	r := &rawDaemon{daemon: daemon, lines: bufio.NewReader(daemon), log: &logSink{}, eofs: make(chan struct{}, 4)}
	opts := Options{Logf: r.log.logf, OnEOF: func() { r.eofs <- struct{}{} }}.withDefaults()
	r.conn, err = newConn(child, opts, "raw", 0)
	if err != nil {
		daemon.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Close()
		r.conn.Close()
	})
	return r
}

func (r *rawDaemon) write(t *testing.T, s string) {
	t.Helper()
	if _, err := r.daemon.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func (r *rawDaemon) readLine(t *testing.T) Message {
	t.Helper()
	r.daemon.SetReadDeadline(time.Now().Add(waitFor))
	line, err := r.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("daemon end: %v", err)
	}
	var m Message
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("worker sent %q: %v", line, err)
	}
	return m
}

func recvCommand(t *testing.T, c *Conn) *Command {
	t.Helper()
	select {
	case cmd := <-c.Commands():
		return cmd
	case <-time.After(waitFor):
		t.Fatalf("no command within %v", waitFor)
	}
	return nil
}

// TestConnFromDaemon: bad lines from the daemon are logged and skipped; commands, shutdown and EOF.
func TestConnFromDaemon(t *testing.T) {
	r := newRawDaemon(t)
	wrote := make(chan error, 1)
	go func() { // over a MiB: the socket holds less, so write while the worker reads
		_, err := r.daemon.WriteString("garbage\n" +
			`{"type":"command","id":"big","name":"` + strings.Repeat("b", MaxMessage) + `"}` + "\n" +
			`{"type":"error","error":"bad thing"}` + "\n" +
			`{"type":"no-such-type"}` + "\n" +
			`{"type":"command","id":"c1","name":"early"}` + "\n")
		wrote <- err
	}()
	// Commands was not called yet: the worker answers that it takes none.
	if m := r.readLine(t); m.Type != TypeReply || m.ID != "c1" || m.OK == nil || *m.OK || !strings.Contains(m.Error, "takes no commands") {
		t.Fatalf("reply to an early command: %+v", m)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	logged := r.log.all()
	for _, want := range []string{"not JSON", "over the 1048576-byte limit", "the daemon reports: bad thing"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}

	r.conn.Commands()
	r.write(t, `{"type":"command","id":"c2","name":"go","args":{"x":1}}`+"\n")
	cmd := recvCommand(t, r.conn)
	if cmd.ID != "c2" || cmd.Name != "go" || string(cmd.Args) != `{"x":1}` {
		t.Fatalf("command %+v", cmd)
	}
	if err := cmd.Reply(map[string]bool{"done": true}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Reply(nil, nil); err == nil {
		t.Fatal("a second Reply succeeded")
	}
	if m := r.readLine(t); m.ID != "c2" || m.OK == nil || !*m.OK || string(m.Data) != `{"done":true}` {
		t.Fatalf("reply %+v", m)
	}

	r.write(t, `{"type":"shutdown","deadline_ms":250}`+"\n"+`{"type":"shutdown","deadline_ms":999}`+"\n")
	select {
	case d := <-r.conn.Shutdown():
		if d != 250*time.Millisecond {
			t.Fatalf("shutdown deadline %v, want 250ms", d)
		}
	case <-time.After(waitFor):
		t.Fatal("no shutdown")
	}
	if d, ok := <-r.conn.Shutdown(); ok || d != 0 {
		t.Fatalf("Shutdown after the first receive gave %v, %v; want it closed", d, ok)
	}

	r.daemon.Close()
	select {
	case <-r.conn.Done():
	case <-time.After(waitFor):
		t.Fatal("Done not closed after EOF")
	}
	if err := r.conn.Close(); err != nil {
		t.Fatal(err)
	}
	if !r.conn.p.eof {
		t.Fatal("the reader did not see EOF")
	}
	select { // OnEOF runs right after Done is closed, on the reader's way out
	case <-r.eofs:
	case <-time.After(waitFor):
		t.Fatal("OnEOF not called after EOF")
	}
}

// connPair is a Channel and a Conn over one socketpair, both in this process.
func connPair(tb testing.TB, opts Options) (*Channel, *Conn) {
	tb.Helper()
	ch, child, err := NewChannel()
	if err != nil {
		tb.Fatal(err)
	}
	if opts.OnEOF == nil {
		opts.OnEOF = func() {}
	}
	c, err := newConn(child, opts.withDefaults(), "pair", 0)
	if err != nil {
		ch.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		ch.Close()
	})
	return ch, c
}

// TestConnCloseAndRequest: Close is not EOF, a pending request fails when the channel goes, and a
// cancelled request returns its context's error.
func TestConnCloseAndRequest(t *testing.T) {
	var eofs atomic.Int32
	ch, c := connPair(t, Options{OnEOF: func() { eofs.Add(1) }})

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, "session.acquire", map[string]int{"n": 1})
		res <- err
	}()
	m := nextMessage(t, ch)
	if m.Type != TypeRequest || m.Method != "session.acquire" || string(m.Params) != `{"n":1}` {
		t.Fatalf("request %+v", m)
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Request = %v", err)
	}
	ch.Reply(m.ID, "late", nil) // nobody waits any more: dropped

	go func() {
		_, err := c.Request(context.Background(), "never", nil)
		res <- err
	}()
	nextMessage(t, ch)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil || !strings.Contains(err.Error(), "channel closed before the reply") {
		t.Fatalf("Request across Close = %v", err)
	}
	if c.p.eof {
		t.Fatal("Close was taken for the daemon going away")
	}
	if err := c.Status("after close"); err == nil {
		t.Fatal("Status after Close succeeded")
	}
	select {
	case _, ok := <-ch.Messages():
		if ok {
			t.Fatal("a message after the worker closed")
		}
	case <-time.After(waitFor):
		t.Fatal("the daemon did not see EOF after Close")
	}
	if n := eofs.Load(); n != 0 {
		t.Fatalf("OnEOF ran %d times after Close", n)
	}
}

// BenchmarkRoundTrip: a command and its reply over a real socketpair, both ends in this process.
func BenchmarkRoundTrip(b *testing.B) {
	ch, c := connPair(b, Options{})
	cmds := c.Commands()
	go func() { // ends when Cleanup closes the connection
		for {
			select {
			case cmd := <-cmds:
				cmd.Reply(cmd.Args, nil)
			case <-c.Done():
				return
			}
		}
	}()
	ctx := context.Background()
	args := json.RawMessage(`{"n":1}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ch.Command(ctx, "echo", args); err != nil {
			b.Fatal(err)
		}
	}
}

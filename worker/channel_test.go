package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawPair is a Channel whose worker end the test writes and reads by hand.
type rawPair struct {
	ch     *Channel
	worker *os.File
	lines  *bufio.Reader // what the daemon sent the worker
}

func newRawPair(t *testing.T) *rawPair {
	t.Helper()
	ch, child, err := NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Close()
		ch.Close()
	})
	return &rawPair{ch: ch, worker: child, lines: bufio.NewReader(child)}
}

func (r *rawPair) write(t *testing.T, s string) {
	t.Helper()
	if _, err := r.worker.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// readLine returns the next line the daemon sent the worker.
func (r *rawPair) readLine(t *testing.T) Message {
	t.Helper()
	r.worker.SetReadDeadline(time.Now().Add(waitFor))
	line, err := r.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("worker end: %v", err)
	}
	var m Message
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("daemon sent %q: %v", line, err)
	}
	return m
}

func nextMessage(t *testing.T, ch *Channel) Message {
	t.Helper()
	select {
	case m, ok := <-ch.Messages():
		if !ok {
			t.Fatalf("Messages closed (err %v)", ch.Err())
		}
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %v", waitFor)
	}
	return Message{}
}

func TestChildEnv(t *testing.T) {
	got := ChildEnv("web", 0)
	want := []string{"OPSVC_IPC_FD=3", "OPSVC_UNIT=web"}
	if nodeChannel {
		want = append(want, "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ChildEnv(web, 0) = %q, want %q", got, want)
	}
	got = ChildEnv("web", 1500*time.Millisecond)
	if want := append(want, "OPSVC_HEARTBEAT_USEC=1500000"); !slices.Equal(got, want) {
		t.Fatalf("ChildEnv(web, 1.5s) = %q, want %q", got, want)
	}
}

// TestChannelLineLimit: a line of exactly MaxMessage bytes passes; one byte more is reported to
// both the daemon and the worker, skipped, and the channel keeps working.
func TestChannelLineLimit(t *testing.T) {
	r := newRawPair(t)
	prefix, suffix := `{"type":"event","name":"big","data":"`, `"}`
	fill := MaxMessage - len(prefix) - len(suffix)
	r2 := make(chan error, 1)
	go func() { // the socket holds less than a MiB: write while the reader reads
		_, err := r.worker.WriteString(prefix + strings.Repeat("x", fill) + suffix + "\n" +
			prefix + strings.Repeat("y", fill+1) + suffix + "\n" +
			`{"type":"status","text":"after"}` + "\n")
		r2 <- err
	}()
	m := nextMessage(t, r.ch)
	if m.Type != TypeEvent || len(m.Data) != fill+2 {
		t.Fatalf("got %s message with %d bytes of data, want the %d-byte event", m.Type, len(m.Data), fill+2)
	}
	problem(t, r.ch, fmt.Sprintf("line of %d bytes is over the %d-byte limit", MaxMessage+1, MaxMessage))
	if m := r.readLine(t); m.Type != TypeError || !strings.Contains(m.Error, "over the 1048576-byte limit") {
		t.Fatalf("the worker was sent %+v, want an error message about the size", m)
	}
	if m := nextMessage(t, r.ch); m.Type != TypeStatus || m.Text != "after" {
		t.Fatalf("got %+v after the skipped line, want the status", m)
	}
	if err := <-r2; err != nil {
		t.Fatal(err)
	}
}

// TestChannelIgnoresAndReports: what is ignored silently and what is reported.
func TestChannelIgnoresAndReports(t *testing.T) {
	r := newRawPair(t)
	r.write(t, `{"cmd":"NODE_HANDLE_ACK"}`+"\n") // Node.js internal
	r.write(t, `{"type":"no-such-type","x":1}`+"\n")
	r.write(t, `{"type":"reply","id":"c999","ok":true}`+"\n") // nobody waits for it
	r.write(t, "\n")
	r.write(t, `{"type":"status","text":"one"}`+"\n")
	if m := nextMessage(t, r.ch); m.Type != TypeStatus || m.Text != "one" {
		t.Fatalf("got %+v, want status one (the lines before it are ignored)", m)
	}
	noProblem(t, r.ch)

	r.write(t, `"just a string"`+"\n")
	problem(t, r.ch, "not a JSON object")
	r.write(t, `{"type":"request","method":"x"}`+"\n")
	problem(t, r.ch, `a request needs "id" and "method"`)
	r.write(t, `{"type":"event"}`+"\n")
	problem(t, r.ch, `an event needs "name"`)
	for range 3 {
		if m := r.readLine(t); m.Type != TypeError || m.Error == "" {
			t.Fatalf("the worker was sent %+v, want an error message", m)
		}
	}

	// A last line without a newline still counts; then EOF closes Messages with no error.
	r.write(t, `{"type":"ready"}`)
	r.worker.Close()
	if m := nextMessage(t, r.ch); m.Type != TypeReady {
		t.Fatalf("got %+v, want the unterminated ready", m)
	}
	select {
	case _, ok := <-r.ch.Messages():
		if ok {
			t.Fatal("a message after EOF")
		}
	case <-time.After(waitFor):
		t.Fatal("Messages not closed after EOF")
	}
	if err := r.ch.Err(); err != nil {
		t.Fatalf("Err after EOF = %v, want nil", err)
	}
}

// TestChannelNeverDrops: a consumer that falls far behind gets every message, in order.
func TestChannelNeverDrops(t *testing.T) {
	r := newRawPair(t)
	const n = 3000 // far more than Messages buffers or the socket holds
	wrote := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(r.worker)
		for i := range n {
			fmt.Fprintf(w, `{"type":"status","text":"%d %s"}`+"\n", i, strings.Repeat("p", 1000))
		}
		wrote <- w.Flush()
	}()
	for i := range n {
		m := nextMessage(t, r.ch)
		if want := fmt.Sprint(i); !strings.HasPrefix(m.Text, want+" ") {
			t.Fatalf("message %d has text %.10q…, want it to start with %q", i, m.Text, want)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestChannelCommand covers replies, ok=false, a worker that never answers, and one that leaves.
func TestChannelCommand(t *testing.T) {
	r := newRawPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	type result struct {
		data json.RawMessage
		err  error
	}
	run := func(ctx context.Context, name string) chan result {
		c := make(chan result, 1)
		go func() {
			d, err := r.ch.Command(ctx, name, json.RawMessage(`{"k":"v"}`))
			c <- result{d, err}
		}()
		return c
	}

	res := run(ctx, "one")
	m := r.readLine(t)
	if m.Type != TypeCommand || m.Name != "one" || m.ID == "" || string(m.Args) != `{"k":"v"}` {
		t.Fatalf("worker got %+v, want command one with an id and the args", m)
	}
	r.write(t, fmt.Sprintf(`{"type":"reply","id":%q,"ok":true,"data":{"r":1}}`+"\n", m.ID))
	if got := <-res; got.err != nil || string(got.data) != `{"r":1}` {
		t.Fatalf("Command = %s, %v", got.data, got.err)
	}

	res = run(ctx, "two")
	m = r.readLine(t)
	r.write(t, fmt.Sprintf(`{"type":"reply","id":%q,"ok":false}`+"\n", m.ID))
	var re *ReplyError
	if got := <-res; !errors.As(got.err, &re) || re.Name != "two" || !strings.Contains(re.Text, "without an error text") {
		t.Fatalf("Command = %v, want a *ReplyError", got.err)
	}

	short, cancelShort := context.WithCancel(ctx)
	res = run(short, "never")
	r.readLine(t)
	cancelShort()
	if got := <-res; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("Command with a cancelled context = %v, want context.Canceled", got.err)
	}

	res = run(ctx, "orphan")
	r.readLine(t)
	r.worker.Close()
	if got := <-res; got.err == nil || !strings.Contains(got.err.Error(), "channel closed before the reply") {
		t.Fatalf("Command when the worker leaves = %v, want channel closed", got.err)
	}
}

// TestChannelSendLimits: too big, too slow, after Close.
func TestChannelSendLimits(t *testing.T) {
	r := newRawPair(t)
	big := json.RawMessage(`"` + strings.Repeat("z", MaxMessage) + `"`)
	if err := r.ch.Send(Message{Type: TypeCommand, ID: "x", Name: "n", Args: big}); err == nil || !strings.Contains(err.Error(), "over the 1048576-byte limit") {
		t.Fatalf("Send of an oversized message = %v, want the size error", err)
	}

	// The worker end never reads: sends fill the socket, then one times out.
	half := json.RawMessage(`"` + strings.Repeat("z", MaxMessage/2) + `"`)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = r.ch.Send(Message{Type: TypeCommand, ID: "x", Name: "n", Args: half})
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "has not read its channel") {
		t.Fatalf("Send to a worker that does not read = %v, want a deadline error", err)
	}

	if err := r.ch.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.ch.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := r.ch.Send(Message{Type: TypeShutdown}); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	if _, ok := <-r.ch.Messages(); ok {
		t.Fatal("Messages open after Close")
	}
	if err := r.ch.Err(); err != nil {
		t.Fatalf("Err after Close = %v, want nil", err)
	}
}

// TestChannelReplyToRequest: Reply builds the reply message the worker expects.
func TestChannelReplyToRequest(t *testing.T) {
	r := newRawPair(t)
	if err := r.ch.Reply("r1", map[string]int{"n": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if m := r.readLine(t); m.Type != TypeReply || m.ID != "r1" || m.OK == nil || !*m.OK || string(m.Data) != `{"n":1}` {
		t.Fatalf("worker got %+v", m)
	}
	if err := r.ch.Reply("r2", nil, errors.New("no lease")); err != nil {
		t.Fatal(err)
	}
	if m := r.readLine(t); m.Type != TypeReply || m.ID != "r2" || m.OK == nil || *m.OK || m.Error != "no lease" || m.Data != nil {
		t.Fatalf("worker got %+v", m)
	}
	if err := r.ch.Reply("r3", make(chan int), nil); err == nil {
		t.Fatal("Reply with data JSON cannot encode succeeded")
	}
}

// TestChannelPeerResetIsEOF: a worker that exits with a message it never read resets the
// connection; that is the worker going away, not a channel error.
func TestChannelPeerResetIsEOF(t *testing.T) {
	r := newRawPair(t)
	if err := r.ch.Send(Message{Type: TypeCommand, ID: "c1", Name: "unread"}); err != nil {
		t.Fatal(err)
	}
	r.worker.Close()
	select {
	case _, ok := <-r.ch.Messages():
		if ok {
			t.Fatal("a message after the worker left")
		}
	case <-time.After(waitFor):
		t.Fatal("Messages not closed after the worker left")
	}
	if err := r.ch.Err(); err != nil {
		t.Fatalf("Err = %v, want nil", err)
	}
}

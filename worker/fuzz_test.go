package worker

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// The seed corpus of each fuzz test is in testdata/fuzz/NAME; go test runs it.

// chunkReader hands out its data a few bytes at a time, so that lines span reads.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzLineReader: the line reader splits any stream as splitting it on newlines does, with every
// line over the limit reported with its size and skipped, and nothing of it kept, however the
// stream is cut into reads.
func FuzzLineReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunk, limit uint8) {
		lim := int(limit%64) + 1
		lr := newLineReader(&chunkReader{data: data, n: int(chunk%17) + 1}, lim)
		segments := bytes.Split(data, []byte("\n"))
		if last := segments[len(segments)-1]; len(last) == 0 {
			segments = segments[:len(segments)-1] // the stream ends with a newline, or is empty
		}
		for i, want := range segments {
			line, err := lr.next()
			var tooLong *lineTooLongError
			switch {
			case len(want) > lim:
				if !errors.As(err, &tooLong) || tooLong.size != len(want) || tooLong.limit != lim {
					t.Fatalf("segment %d (%d bytes, limit %d): %q, %v; want it reported too long", i, len(want), lim, line, err)
				}
			case err != nil || !bytes.Equal(line, want):
				t.Fatalf("segment %d: %q, %v; want %q", i, line, err, want)
			}
			if cap(lr.buf) > lim+1+64 {
				t.Fatalf("line buffer of %d bytes for a %d-byte limit", cap(lr.buf), lim)
			}
		}
		if line, err := lr.next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last segment: %q, %v; want EOF", line, err)
		}
	})
}

// FuzzDecode: any line decodes to a message or to an error that says what is wrong, never a
// panic; a decoded message encodes to a line that decodes to the same message.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		w, err := decode(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if w.nodeInternal() {
			return
		}
		first, err := encode(w.Message)
		if err != nil {
			return // over MaxMessage once escaped: refused, as it should be
		}
		w2, err := decode(bytes.TrimSuffix(first, []byte("\n")))
		if err != nil {
			t.Fatalf("an encoded message does not decode: %q: %v", first, err)
		}
		second, err := encode(w2.Message)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the message:\n%q\n%q (%v)", first, second, err)
		}
	})
}

// fuzzEnd is the last line a fuzz test sends after its input: when it arrives, all the input
// has been dealt with. The newline before it ends a last line the input left open.
const fuzzEnd = "\n" + `{"type":"status","text":"fuzz-end"}` + "\n"

// FuzzChannel: whatever a worker sends, the daemon's end delivers only messages of the types it
// knows, with the fields each needs, keeps no reply for itself, and goes on working.
func FuzzChannel(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, w, err := NewChannel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		drained := make(chan struct{})
		go func() { // what the daemon sends back: error messages, Node.js acknowledgements
			defer close(drained)
			io.Copy(io.Discard, w)
		}()
		wrote := make(chan error, 1)
		go func() {
			_, err := w.Write(append(data, fuzzEnd...))
			wrote <- err
		}()
		timeout := time.After(waitFor)
	read:
		for {
			select {
			case m, ok := <-ch.Messages():
				if !ok {
					t.Fatalf("Messages closed: %v", ch.Err())
				}
				switch m.Type {
				case TypeStatus:
					if m.Text == "fuzz-end" {
						break read
					}
				case TypeReady, TypeHeartbeat:
				case TypeEvent:
					if m.Name == "" {
						t.Fatalf("an event without a name: %+v", m)
					}
				case TypeRequest:
					if m.ID == "" || m.Method == "" {
						t.Fatalf("a request without id or method: %+v", m)
					}
				default:
					t.Fatalf("delivered a %q message: %+v", m.Type, m)
				}
			case <-ch.Problems():
			case <-timeout:
				t.Fatal("the end line never came")
			}
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		if err := ch.Send(Message{Type: TypeShutdown}); err != nil {
			t.Fatalf("the channel stopped working: %v", err)
		}
		ch.Close()
		w.Close()
		<-drained
	})
}

// FuzzConn: whatever the daemon sends, a worker's end delivers only commands with an id and a
// name, and goes on working.
func FuzzConn(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		daemon, child, err := socketpair()
		if err != nil {
			t.Fatal(err)
		}
		defer daemon.Close()
		opts := Options{Logf: func(string, ...any) {}, OnEOF: func() {}, Stderr: io.Discard}.withDefaults()
		c, err := newConn(child, opts, "fuzz", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cmds := c.Commands()
		drained := make(chan struct{})
		go func() { // what the worker sends back: replies
			defer close(drained)
			io.Copy(io.Discard, daemon)
		}()
		end := "\n" + `{"type":"command","id":"end","name":"fuzz-end"}` + "\n"
		wrote := make(chan error, 1)
		go func() {
			_, err := daemon.Write(append(data, end...))
			wrote <- err
		}()
		timeout := time.After(waitFor)
		for done := false; !done; {
			select {
			case cmd := <-cmds:
				if cmd.ID == "" || cmd.Name == "" {
					t.Fatalf("a command without id or name: %+v", cmd)
				}
				done = cmd.ID == "end" && cmd.Name == "fuzz-end"
				cmd.Reply(nil, nil)
			case <-timeout:
				t.Fatal("the end command never came")
			}
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		if err := c.Status("still here"); err != nil {
			t.Fatalf("the connection stopped working: %v", err)
		}
		c.Close() // the daemon's end reads EOF
		<-drained
	})
}

// Package worker speaks the opsvc IPC worker protocol, as the daemon (Channel) and as a Go worker
// (Connect); it never knows about units other than the one at the far end of its channel.
//
// The channel is a unix stream socket passed to the worker as fd 3. Each message is one JSON object
// on one line (UTF-8, at most MaxMessage bytes before the newline), with a "type" field. This is
// also the framing of Node.js's "json" IPC serialization, so a Node.js worker uses process.send()
// and process.on('message') unchanged: the daemon sets NODE_CHANNEL_FD and
// NODE_CHANNEL_SERIALIZATION_MODE beside the OPSVC_* variables (see ChildEnv).
//
// Messages of a type a side does not know are ignored by it, and so are Node.js's internal messages
// (they carry a "cmd" starting with "NODE_" instead of a "type"). EOF means the other side is gone.
// A failed reply may carry a "code" saying whether asking again may help (CodeUnavailable,
// CodeInvalid). Both ends share one implementation of this framing.
package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxMessage is the largest message, in bytes of JSON without the closing newline, either side
// accepts. A longer line is skipped up to its newline and reported; the channel stays open.
const MaxMessage = 1 << 20

// Message types. The worker sends ready, heartbeat, status, event, request and reply; the daemon
// sends shutdown, command, reply and error.
const (
	TypeReady     = "ready"     // worker: it is up (ipc units become active)
	TypeHeartbeat = "heartbeat" // worker: it is alive (feeds the unit's watchdog)
	TypeStatus    = "status"    // worker: Text is its status line
	TypeEvent     = "event"     // worker: Name and Data, re-published on the bus
	TypeRequest   = "request"   // worker: ID, Method and Params, answered by a reply
	TypeReply     = "reply"     // both: ID, OK and Data or Error, the answer to a command or request
	TypeShutdown  = "shutdown"  // daemon: stop within DeadlineMS, or be killed
	TypeCommand   = "command"   // daemon: ID, Name and Args, answered by a reply
	TypeError     = "error"     // daemon: Error says what was wrong with something the worker sent
)

// Environment variables the daemon sets for an IPC worker (see ChildEnv).
const (
	EnvIPCFD             = "OPSVC_IPC_FD"
	EnvUnit              = "OPSVC_UNIT"
	EnvHeartbeatUSEC     = "OPSVC_HEARTBEAT_USEC"
	EnvNodeChannelFD     = "NODE_CHANNEL_FD"
	EnvNodeSerialization = "NODE_CHANNEL_SERIALIZATION_MODE"
)

// ChildFD is the descriptor number the channel has in the worker.
const ChildFD = 3

// Message is one line on the channel. Which fields are set depends on Type.
type Message struct {
	Type       string          `json:"type"`
	ID         string          `json:"id,omitempty"`
	Method     string          `json:"method,omitempty"`
	Params     json.RawMessage `json:"params,omitempty"`
	Name       string          `json:"name,omitempty"`
	Args       json.RawMessage `json:"args,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	OK         *bool           `json:"ok,omitempty"`
	Error      string          `json:"error,omitempty"`
	Text       string          `json:"text,omitempty"`
	DeadlineMS int64           `json:"deadline_ms,omitempty"`
	Drain      bool            `json:"drain,omitempty"` // shutdown: let the work at hand finish first
	Code       string          `json:"code,omitempty"`  // reply with ok=false: CodeUnavailable, CodeInvalid, or none
}

// Reply codes say why a command or request failed, so that the side that asked knows whether
// asking again may help. A failed reply without a code says nothing either way.
const (
	// CodeUnavailable: nothing was done, and the same request may succeed later (storage full,
	// too many requests at once).
	CodeUnavailable = "unavailable"
	// CodeInvalid: the request itself is wrong; asking again will not help.
	CodeInvalid = "invalid"
)

// CodedError is an error with a reply code: Channel.Reply, Channel.Go and Command.Reply send the
// code beside the error's text.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// WithCode returns err marked with a reply code; nil stays nil.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// ReplyError is a reply with ok=false: the other side handled the command or request, and it
// failed with Text.
type ReplyError struct {
	Op   string // "command" or "request"
	Name string // the command name or request method
	Text string // the error the other side gave
	Code string // the reply's code: CodeUnavailable, CodeInvalid, or ""
}

// Unavailable reports whether err is a reply saying that nothing was done and that the same
// command or request may succeed later (CodeUnavailable).
func Unavailable(err error) bool {
	var re *ReplyError
	return errors.As(err, &re) && re.Code == CodeUnavailable
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("worker: %s %q failed: %s", e.Op, e.Name, e.Text)
}

// wire is how a line is decoded: a Message, plus the fields of Node.js's internal messages.
type wire struct {
	Message
	Cmd string          `json:"cmd"`
	Msg json.RawMessage `json:"msg"`
}

// nodeInternalPrefix marks Node.js's internal messages, as in its lib/internal/child_process.js.
const nodeInternalPrefix = "NODE_"

// nodeInternal reports whether w is one of Node.js's internal messages. As in Node.js, only "cmd"
// decides: a NODE_HANDLE message has a "type" too, which names the kind of handle.
func (w *wire) nodeInternal() bool {
	return len(w.Cmd) > len(nodeInternalPrefix) && w.Cmd[:len(nodeInternalPrefix)] == nodeInternalPrefix
}

// replyOf builds a reply to id from a result or an error.
func replyOf(id string, data any, err error) (Message, error) {
	m := Message{Type: TypeReply, ID: id}
	ok := err == nil
	m.OK = &ok
	if err != nil {
		m.Error = err.Error()
		if m.Error == "" {
			m.Error = "failed"
		}
		var ce *CodedError
		if errors.As(err, &ce) {
			m.Code = ce.Code
		}
		return m, nil
	}
	raw, merr := marshalData(data)
	if merr != nil {
		return Message{}, merr
	}
	m.Data = raw
	return m, nil
}

// marshalData turns a payload into JSON; nil stays absent.
func marshalData(v any) (json.RawMessage, error) {
	switch d := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if d == nil {
			return nil, nil
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// encode renders v as one line, newline included, and refuses lines over MaxMessage.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if n := buf.Len() - 1; n > MaxMessage {
		return nil, fmt.Errorf("message is %d bytes, over the %d-byte limit (send large data another way, e.g. a file)", n, MaxMessage)
	}
	return buf.Bytes(), nil
}

// lineTooLongError is a line skipped for being over the limit.
type lineTooLongError struct{ size, limit int }

func (e *lineTooLongError) Error() string {
	return fmt.Sprintf("line of %d bytes is over the %d-byte limit; skipped (send smaller messages)", e.size, e.limit)
}

// lineReader splits a stream into lines of at most max bytes (MaxMessage on a channel). It holds
// at most max+1 bytes of a line plus its read buffer: a longer line is discarded as it arrives.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, limit int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, min(64<<10, limit+1)), max: limit}
}

// next returns the next line without its newline, valid until the following call. A line over
// the limit yields a *lineTooLongError, and reading goes on after it. A last line without a
// newline is returned as a line; then the read error (io.EOF at the end) is returned.
func (l *lineReader) next() ([]byte, error) {
	if cap(l.buf) > 256<<10 {
		l.buf = nil // do not keep a big buffer for the life of the channel
	}
	l.buf = l.buf[:0]
	size, over := 0, false
	for {
		chunk, err := l.r.ReadSlice('\n')
		size += len(chunk)
		if !over {
			if len(l.buf)+len(chunk) > l.max+1 {
				over = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if over {
				return nil, &lineTooLongError{size: size - 1, limit: l.max}
			}
			return l.buf[:len(l.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case over:
			return nil, &lineTooLongError{size: size, limit: l.max}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, err // l.buf keeps the part of a line read so far
		case len(l.buf) > 0:
			if len(l.buf) > l.max {
				return nil, &lineTooLongError{size: size, limit: l.max}
			}
			return l.buf, nil // the error comes back on the next call
		default:
			return nil, err
		}
	}
}

// decode parses one line. The error says what is wrong, for the sender.
func decode(line []byte) (wire, error) {
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return w, fmt.Errorf("not a JSON object (%s): %s", te.Value, snippet(line))
		}
		return w, fmt.Errorf("not JSON (%v): %s", err, snippet(line))
	}
	return w, nil
}

// snippet quotes the start of a bad line for an error message.
func snippet(line []byte) string {
	const limit = 48
	if len(line) > limit {
		return fmt.Sprintf("%q…", line[:limit])
	}
	return fmt.Sprintf("%q", line)
}

// isEOF reports whether a read error means the other side closed its end. A peer that exits with
// data it never read resets the connection instead of closing it cleanly: that is EOF too.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

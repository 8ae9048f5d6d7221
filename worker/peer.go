package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// peer is one end of a channel, the framing both ends share: it writes each message as one line
// (bounded by MaxMessage, and by a write deadline where the other side is not trusted to read),
// reads lines with one goroutine, skips and reports what breaks the protocol, hands each reply to
// the call waiting for it and every other message to deliver. Channel (the daemon's end) and Conn
// (a Go worker's) are both a peer plus what their side does with the messages.
type peer struct {
	conn net.Conn
	cfg  peerConfig

	wmu    sync.Mutex
	broken error // set under wmu when a write stopped part way: the stream is no longer framed

	mu      sync.Mutex
	pending map[string]chan Message // call id → its reply
	lastID  atomic.Uint64

	closing   chan struct{} // closed by close
	done      chan struct{} // closed when the reader has stopped
	err       error         // why reading stopped, if it failed (not EOF or close); set before done
	eof       bool          // reading stopped because the other side went away, not by close; set before done
	closeOnce sync.Once

	// A handover (see Channel.Detach): detaching stops the reader at its
	// next read without closing; unread keeps what it held of a message.
	// prefix is read before the connection (AdoptChannel).
	detaching atomic.Bool
	unread    []byte
	prefix    []byte
}

// peerConfig is what tells the two sides apart.
type peerConfig struct {
	// writeTimeout bounds each write; 0 lets a write wait as long as the other side needs.
	writeTimeout time.Duration
	// idPrefix starts the ids of calls ("c" for commands, "r" for requests).
	idPrefix string
	// callOp names a call in errors ("command", "request"), and gone says what a channel closed
	// under a waiting call means.
	callOp, gone string
	// deliver takes every message that is not a reply, on the reader goroutine; it returns false
	// when the peer is closing and reading should stop.
	deliver func(Message) bool
	// problem takes what broke the protocol: a line over MaxMessage, a line that is not a JSON
	// object, a Node.js handle. Reading goes on.
	problem func(error)
	// stopped runs on the reader goroutine after done is closed.
	stopped func()
}

// newPeer takes over f, a connected stream socket (a pipe on Windows). start begins reading.
func newPeer(f *os.File, cfg peerConfig) (*peer, error) {
	conn, err := fileConn(f)
	if err != nil {
		return nil, err
	}
	return &peer{
		conn:    conn,
		cfg:     cfg,
		pending: make(map[string]chan Message),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

func (p *peer) start() { go p.read() }

// send writes one message.
func (p *peer) send(m Message) error {
	line, err := encode(m)
	if err != nil {
		return fmt.Errorf("worker: send %s: %w", m.Type, err)
	}
	if err := p.write(line); err != nil {
		return fmt.Errorf("worker: send %s: %w", m.Type, err)
	}
	return nil
}

// write writes one encoded line, whole or not at all as far as the other side can tell: a write
// cut short breaks the stream, and every later write fails.
func (p *peer) write(line []byte) error {
	select {
	case <-p.closing:
		return net.ErrClosed
	default:
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.broken != nil {
		return p.broken
	}
	if t := p.cfg.writeTimeout; t > 0 {
		if err := p.conn.SetWriteDeadline(time.Now().Add(t)); err != nil {
			return err
		}
	}
	n, err := p.conn.Write(line)
	if err != nil && n > 0 {
		p.broken = fmt.Errorf("channel broken by an earlier write cut short after %d of %d bytes (%v); restart the worker", n, len(line), err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the other side has not read its channel for %v: %w", p.cfg.writeTimeout, err)
	}
	return err
}

// call sends m with a fresh id and waits for the reply to it, until ctx is done or the channel
// closes. name is the command name or request method, for errors. A reply with ok=false comes back
// as a *ReplyError.
func (p *peer) call(ctx context.Context, m Message, name string) (json.RawMessage, error) {
	m.ID = p.cfg.idPrefix + strconv.FormatUint(p.lastID.Add(1), 10)
	wait := make(chan Message, 1)
	p.mu.Lock()
	p.pending[m.ID] = wait
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, m.ID)
		p.mu.Unlock()
	}()
	op := p.cfg.callOp
	line, err := encode(m)
	if err == nil {
		err = p.write(line)
	}
	if err != nil {
		return nil, fmt.Errorf("worker: %s %q: %w", op, name, err)
	}
	select {
	case r := <-wait:
		return replyResult(op, name, r)
	case <-ctx.Done():
		return nil, fmt.Errorf("worker: %s %q: no reply: %w", op, name, context.Cause(ctx))
	case <-p.done:
		select {
		case r := <-wait: // it came just before the end
			return replyResult(op, name, r)
		default:
		}
		return nil, fmt.Errorf("worker: %s %q: the channel closed before the reply (%s)", op, name, p.cfg.gone)
	}
}

// replyResult turns a reply into a result or a *ReplyError.
func replyResult(op, name string, r Message) (json.RawMessage, error) {
	if (r.OK != nil && !*r.OK) || r.Error != "" {
		text := r.Error
		if text == "" {
			text = "the other side replied ok=false without an error text"
		}
		return nil, &ReplyError{Op: op, Name: name, Text: text, Code: r.Code}
	}
	return r.Data, nil
}

// closing reports whether close has been called.
func (p *peer) isClosing() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

// close closes this end; the other side sees EOF. It waits for the reader to stop. It is safe to
// call more than once.
func (p *peer) close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closing)
		err = p.conn.Close()
	})
	<-p.done
	if err != nil {
		return fmt.Errorf("worker: close channel: %w", err)
	}
	return nil
}

// read is the one reader goroutine.
func (p *peer) read() {
	defer func() {
		close(p.done)
		if p.cfg.stopped != nil {
			p.cfg.stopped()
		}
	}()
	var src io.Reader = p.conn
	if len(p.prefix) > 0 {
		src = io.MultiReader(bytes.NewReader(p.prefix), p.conn)
		p.prefix = nil
	}
	lr := newLineReader(src, MaxMessage)
	for {
		line, err := lr.next()
		var tooLong *lineTooLongError
		switch {
		case errors.As(err, &tooLong):
			p.cfg.problem(err)
			continue
		case err != nil && p.detaching.Load() && errors.Is(err, os.ErrDeadlineExceeded):
			p.unread = bytes.Clone(lr.buf)
			return
		case err != nil:
			if !p.isClosing() {
				if !isEOF(err) {
					p.err = fmt.Errorf("worker: read channel: %w", err)
				}
				p.eof = true
			}
			return
		}
		m, ok := p.message(line)
		if !ok {
			continue
		}
		if m.Type == TypeReply {
			p.mu.Lock()
			wait, waiting := p.pending[m.ID]
			delete(p.pending, m.ID)
			p.mu.Unlock()
			if waiting {
				wait <- m // buffered, one reply per id
			}
			continue // a reply nobody waits for any more is dropped
		}
		if !p.cfg.deliver(m) {
			return
		}
	}
}

// message decodes one line into the message it carries, reporting what is wrong with it; false
// means there is nothing to deliver. Node.js's internal messages carry none, except a
// NODE_HANDLE: process.send(message, handle) sends the message with a descriptor, which was
// dropped when the line was read (nothing here reads ancillary data, so the kernel closes it). It
// is acknowledged, or Node.js queues every later message until it is, and its message delivered.
func (p *peer) message(line []byte) (Message, bool) {
	if len(line) == 0 {
		return Message{}, false
	}
	w, err := decode(line)
	if err != nil {
		p.cfg.problem(err)
		return Message{}, false
	}
	if !w.nodeInternal() {
		return w.Message, true
	}
	if w.Cmd != "NODE_HANDLE" {
		return Message{}, false // acknowledgements and cluster messages: nothing to do
	}
	_ = p.write([]byte(`{"cmd":"NODE_HANDLE_ACK"}` + "\n")) // a failure shows up as the next read error
	p.cfg.problem(errors.New("a Node.js handle came with a message; opsvc does not take handles and closed it (send plain messages)"))
	inner, err := decode(w.Msg)
	if err != nil || inner.nodeInternal() {
		return Message{}, false
	}
	return inner.Message, true
}

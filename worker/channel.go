package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sendTimeout bounds how long Send waits for a worker that does not read its channel.
const sendTimeout = time.Second

// ChildEnv is the environment an IPC worker needs beside its own: the channel descriptor for Go
// workers (OPSVC_IPC_FD) and for Node.js (NODE_CHANNEL_FD, NODE_CHANNEL_SERIALIZATION_MODE=json), the
// unit name, and OPSVC_HEARTBEAT_USEC when heartbeat (the unit's watchdog) is above zero.
func ChildEnv(unit string, heartbeat time.Duration) []string {
	fd := strconv.Itoa(ChildFD)
	env := []string{
		EnvIPCFD + "=" + fd,
		EnvUnit + "=" + unit,
		EnvNodeChannelFD + "=" + fd,
		EnvNodeSerialization + "=json",
	}
	if us := heartbeat.Microseconds(); us > 0 {
		env = append(env, EnvHeartbeatUSEC+"="+strconv.FormatInt(us, 10))
	}
	return env
}

// Channel is the daemon's end of one worker's IPC channel. One goroutine reads it: messages from the
// worker come out of Messages in order, replies to Command calls are matched to them, and lines that
// break the protocol are answered with an error message and reported on Problems. Its methods are
// safe for concurrent use.
type Channel struct {
	conn     net.Conn
	msgs     chan Message
	problems chan error
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed when the reader has stopped
	err      error         // why the reader stopped; written before done is closed

	wmu    sync.Mutex
	broken error // set under wmu when a write stopped part way: the stream is no longer framed

	mu      sync.Mutex
	pending map[string]chan Message // command id → its reply
	lastID  atomic.Uint64

	closeOnce sync.Once
}

// NewChannel makes a channel for a worker about to start: a unix stream socketpair, close-on-exec on
// both ends. It returns the daemon's end as a *Channel, already reading, and the worker's end to
// pass as its fd 3 (exec.Cmd.ExtraFiles[0] or os.ProcAttr.Files[3]); the caller closes that file
// once the worker has been started, so that EOF is seen when the worker exits.
func NewChannel() (*Channel, *os.File, error) {
	parent, child, err := socketpair()
	if err != nil {
		return nil, nil, fmt.Errorf("worker: new channel: %w", err)
	}
	c, err := newChannel(parent)
	if err != nil {
		child.Close()
		return nil, nil, fmt.Errorf("worker: new channel: %w", err)
	}
	return c, child, nil
}

// newChannel wraps f (which it takes over) and starts the reader.
func newChannel(f *os.File) (*Channel, error) {
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	c := &Channel{
		conn:     conn,
		msgs:     make(chan Message, 64),
		problems: make(chan error, 16),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		pending:  make(map[string]chan Message),
	}
	go c.read()
	return c, nil
}

// Messages delivers the worker's ready, heartbeat, status, event and request messages, in order.
// Replies to Command calls are not delivered here, nor are messages of unknown types. It is closed
// when the worker closes its end (EOF), when reading fails (see Err), or after Close. When the
// consumer falls behind, reading stops and the worker's writes block: nothing is dropped. Keep
// draining it while Command calls are waiting, because their replies arrive through the same reader.
func (c *Channel) Messages() <-chan Message { return c.msgs }

// Problems reports protocol violations by the worker: a line over MaxMessage, a line that is not a
// JSON object, a request without an id, a Node.js handle (which opsvc closes). Each was also sent to
// the worker as an error message, and the channel stays open. Problems are diagnostics: while 16 are
// unread, further ones are dropped rather than stall the channel.
func (c *Channel) Problems() <-chan error { return c.problems }

// Err says why Messages was closed: nil after EOF or Close, else the read error. It is nil while
// Messages is open.
func (c *Channel) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Send writes one message to the worker. It waits at most a second for a worker that does not read;
// a write cut short by that leaves the channel unusable, and later sends fail.
func (c *Channel) Send(m Message) error {
	line, err := encode(m)
	if err != nil {
		return fmt.Errorf("worker: send %s: %w", m.Type, err)
	}
	if err := c.write(line); err != nil {
		return fmt.Errorf("worker: send %s: %w", m.Type, err)
	}
	return nil
}

func (c *Channel) write(line []byte) error {
	select {
	case <-c.closing:
		return net.ErrClosed
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return err
	}
	n, err := c.conn.Write(line)
	if err != nil && n > 0 {
		c.broken = fmt.Errorf("channel broken by an earlier write cut short after %d of %d bytes (%v); restart the worker", n, len(line), err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the worker has not read its channel for %v: %w", sendTimeout, err)
	}
	return err
}

// Command sends the worker a command and waits for its reply, until ctx is done or the channel
// closes. A reply with ok=false comes back as a *ReplyError.
func (c *Channel) Command(ctx context.Context, name string, args json.RawMessage) (json.RawMessage, error) {
	id := "c" + strconv.FormatUint(c.lastID.Add(1), 10)
	wait := make(chan Message, 1)
	c.mu.Lock()
	c.pending[id] = wait
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if len(args) == 0 {
		args = nil
	}
	if err := c.Send(Message{Type: TypeCommand, ID: id, Name: name, Args: args}); err != nil {
		return nil, fmt.Errorf("worker: command %q: %w", name, err)
	}
	select {
	case r := <-wait:
		return replyResult("command", name, r)
	case <-ctx.Done():
		return nil, fmt.Errorf("worker: command %q: no reply: %w", name, context.Cause(ctx))
	case <-c.done:
		select {
		case r := <-wait: // it came just before the end
			return replyResult("command", name, r)
		default:
		}
		return nil, fmt.Errorf("worker: command %q: the channel closed before the reply (the worker exited or closed fd %d)", name, ChildFD)
	}
}

// replyResult turns a reply into a result or a *ReplyError.
func replyResult(op, name string, r Message) (json.RawMessage, error) {
	if (r.OK != nil && !*r.OK) || r.Error != "" {
		text := r.Error
		if text == "" {
			text = "the other side replied ok=false without an error text"
		}
		return nil, &ReplyError{Op: op, Name: name, Text: text}
	}
	return r.Data, nil
}

// Reply answers the worker's request id: with data (any JSON-encodable value) when err is nil, else
// with ok=false and err's text.
func (c *Channel) Reply(id string, data any, err error) error {
	m, merr := replyOf(id, data, err)
	if merr != nil {
		return fmt.Errorf("worker: reply to request %q: encode data: %w", id, merr)
	}
	return c.Send(m)
}

// Close closes the daemon's end; the worker sees EOF. It waits for the reader to stop, after which
// Messages is closed and waiting Command calls have returned. It is safe to call more than once.
func (c *Channel) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		err = c.conn.Close()
	})
	<-c.done
	if err != nil {
		return fmt.Errorf("worker: close channel: %w", err)
	}
	return nil
}

// read is the one reader goroutine.
func (c *Channel) read() {
	defer func() {
		close(c.done)
		close(c.msgs)
	}()
	lr := newLineReader(c.conn)
	for {
		line, err := lr.next()
		var tooLong *lineTooLongError
		switch {
		case errors.As(err, &tooLong):
			c.problem(fmt.Errorf("worker: message from worker: %w", err))
			continue
		case err != nil:
			select {
			case <-c.closing:
			default:
				if !isEOF(err) {
					c.err = fmt.Errorf("worker: read channel: %w", err)
				}
			}
			return
		}
		if len(line) == 0 {
			continue
		}
		w, err := decode(line)
		if err != nil {
			c.problem(fmt.Errorf("worker: message from worker: %w", err))
			continue
		}
		if !c.dispatch(w) {
			return
		}
	}
}

// dispatch routes one decoded message; false means the channel is closing.
func (c *Channel) dispatch(w wire) bool {
	m := w.Message
	if w.nodeInternal() {
		if w.Cmd != "NODE_HANDLE" {
			return true // acknowledgements and cluster messages: nothing for opsvc to do
		}
		// process.send(message, handle): the descriptor was dropped when the line was read (opsvc
		// reads without ancillary data, so the kernel closes it). Acknowledge it, or Node.js queues
		// every later message until it is, and deliver the message itself.
		c.sendRaw([]byte(`{"cmd":"NODE_HANDLE_ACK"}` + "\n"))
		c.problem(errors.New("worker: message from worker: a Node.js handle came with it; opsvc does not take handles and closed it (send plain messages)"))
		inner, err := decode(w.Msg)
		if err != nil || inner.nodeInternal() {
			return true
		}
		m = inner.Message
	}
	switch m.Type {
	case TypeReply:
		c.mu.Lock()
		wait, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ok {
			wait <- m // buffered, one reply per id
		}
		return true // a reply nobody waits for any more is dropped
	case TypeRequest:
		if m.ID == "" || m.Method == "" {
			c.problem(errors.New(`worker: message from worker: a request needs "id" and "method"`))
			return true
		}
	case TypeEvent:
		if m.Name == "" {
			c.problem(errors.New(`worker: message from worker: an event needs "name"`))
			return true
		}
	case TypeReady, TypeHeartbeat, TypeStatus:
	default:
		return true // unknown types are ignored
	}
	select {
	case c.msgs <- m:
		return true
	case <-c.closing:
		return false
	}
}

// problem tells the worker what was wrong and reports it, dropping the report if nobody reads them.
func (c *Channel) problem(err error) {
	if line, eerr := encode(Message{Type: TypeError, Error: err.Error()}); eerr == nil {
		c.sendRaw(line)
	}
	select {
	case c.problems <- err:
	default:
	}
}

// sendRaw writes a line from the reader; a failure shows up as the reader's next read error.
func (c *Channel) sendRaw(line []byte) {
	_ = c.write(line)
}

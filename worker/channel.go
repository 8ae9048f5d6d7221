package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// sendTimeout bounds how long Send waits for a worker that does not read its channel.
const sendTimeout = time.Second

// ChildEnv is the environment an IPC worker needs beside its own: the channel descriptor for Go
// workers (OPSVC_IPC_FD) and for Node.js (NODE_CHANNEL_FD, NODE_CHANNEL_SERIALIZATION_MODE=json; not
// on Windows), the unit name, and OPSVC_HEARTBEAT_USEC when heartbeat (the unit's watchdog) is above
// zero. On Windows the runner replaces the descriptor number with the handle the worker inherits.
func ChildEnv(unit string, heartbeat time.Duration) []string {
	fd := strconv.Itoa(ChildFD)
	env := []string{
		EnvIPCFD + "=" + fd,
		EnvUnit + "=" + unit,
	}
	if nodeChannel {
		env = append(env, EnvNodeChannelFD+"="+fd, EnvNodeSerialization+"=json")
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
	p        *peer
	msgs     chan Message
	problems chan error

	smu     sync.Mutex
	serving sync.WaitGroup // requests answered by Go
	busy    int            // how many of them run; under smu
	closed  bool           // Close was called: Go starts no more; under smu
}

// MaxServing is how many of one worker's requests Channel.Go answers at once.
const MaxServing = 4

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
func newChannel(f *os.File) (*Channel, error) { return newChannelFrom(f, nil) }

// newChannelFrom is newChannel reading prefix before f.
func newChannelFrom(f *os.File, prefix []byte) (*Channel, error) {
	c := &Channel{
		msgs:     make(chan Message, 64),
		problems: make(chan error, 16),
	}
	p, err := newPeer(f, peerConfig{
		writeTimeout: sendTimeout,
		idPrefix:     "c",
		callOp:       "command",
		gone:         fmt.Sprintf("the worker exited or closed fd %d", ChildFD),
		deliver:      c.deliver,
		problem:      c.problem,
		stopped:      func() { close(c.msgs) },
	})
	if err != nil {
		return nil, err
	}
	c.p = p
	p.prefix = prefix
	p.start()
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
	case <-c.p.done:
		return c.p.err
	default:
		return nil
	}
}

// Send writes one message to the worker. It waits at most a second for a worker that does not read;
// a write cut short by that leaves the channel unusable, and later sends fail.
func (c *Channel) Send(m Message) error { return c.p.send(m) }

// Command sends the worker a command and waits for its reply, until ctx is done or the channel
// closes. A reply with ok=false comes back as a *ReplyError.
func (c *Channel) Command(ctx context.Context, name string, args json.RawMessage) (json.RawMessage, error) {
	if len(args) == 0 {
		args = nil
	}
	return c.p.call(ctx, Message{Type: TypeCommand, Name: name, Args: args}, name)
}

// Reply answers the worker's request id: with data (any JSON-encodable value) when err is nil, else
// with ok=false and err's text (and its code, see WithCode).
func (c *Channel) Reply(id string, data any, err error) error {
	m, merr := replyOf(id, data, err)
	if merr != nil {
		return fmt.Errorf("worker: reply to request %q: encode data: %w", id, merr)
	}
	return c.Send(m)
}

// Go answers the worker's request id from a goroutine of its own with what answer returns, as
// Reply would, so that a slow answer (a write waiting for a file lock or a slow disk) holds up
// neither the caller nor the channel. At most MaxServing requests of a channel are answered at
// once: beyond that, the request is refused at once with CodeUnavailable. An answer whose reply
// cannot be sent (the worker is gone) is dropped. Close waits for the answers under way.
func (c *Channel) Go(id string, answer func() (any, error)) {
	c.smu.Lock()
	switch {
	case c.closed:
		c.smu.Unlock()
		return
	case c.busy >= MaxServing:
		c.smu.Unlock()
		_ = c.Reply(id, nil, WithCode(CodeUnavailable, fmt.Errorf("%d requests of this worker are being answered; ask again later", MaxServing)))
		return
	}
	c.busy++
	c.serving.Add(1)
	c.smu.Unlock()
	go func() {
		defer c.serving.Done()
		data, err := answer()
		c.smu.Lock()
		c.busy--
		c.smu.Unlock()
		_ = c.Reply(id, data, err)
	}()
}

// Close closes the daemon's end; the worker sees EOF. It waits for the reader to stop, after which
// Messages is closed and waiting Command calls have returned, and for the answers Go started. It
// is safe to call more than once.
func (c *Channel) Close() error {
	err := c.p.close()
	c.smu.Lock()
	c.closed = true
	c.smu.Unlock()
	c.serving.Wait()
	return err
}

// deliver checks a message from the worker and passes it on; false means the channel is closing.
func (c *Channel) deliver(m Message) bool {
	switch m.Type {
	case TypeRequest:
		if m.ID == "" || m.Method == "" {
			c.problem(errors.New(`a request needs "id" and "method"`))
			return true
		}
	case TypeEvent:
		if m.Name == "" {
			c.problem(errors.New(`an event needs "name"`))
			return true
		}
	case TypeReady, TypeHeartbeat, TypeStatus:
	default:
		return true // unknown types are ignored
	}
	select {
	case c.msgs <- m:
		return true
	case <-c.p.closing:
		return false
	}
}

// problem tells the worker what was wrong and reports it, dropping the report if nobody reads them.
func (c *Channel) problem(err error) {
	err = fmt.Errorf("worker: message from worker: %w", err)
	if line, eerr := encode(Message{Type: TypeError, Error: err.Error()}); eerr == nil {
		_ = c.p.write(line) // a failure shows up as the reader's next read error
	}
	select {
	case c.problems <- err:
	default:
	}
}

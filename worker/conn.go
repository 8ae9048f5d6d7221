package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// NotSupervisedNotice is the one line a worker started outside opsvc writes to stderr on Connect.
const NotSupervisedNotice = "opsvc worker: not started by opsvc (" + EnvIPCFD + " unset); running without a supervisor"

// EOFNotice is the line the default OnEOF writes to stderr before it exits the worker.
const EOFNotice = "opsvc worker: the daemon closed the IPC channel; exiting"

// ErrNotSupervised is what Request returns on a connection of a worker started outside opsvc: there
// is no daemon to answer.
var ErrNotSupervised = errors.New("worker: request: not started by opsvc, so no daemon can answer (run the worker as an opsvc unit of type \"ipc\")")

// Options changes how ConnectWith behaves. The zero value gives Connect's behaviour.
type Options struct {
	// OnEOF runs once, after Done is closed, when the daemon's end of the channel closes or reading
	// it fails: the daemon is gone. The default writes one line to Stderr and exits the process with
	// status 0, so a worker never outlives its daemon. It does not run after Close.
	OnEOF func()
	// Logf receives diagnostics: an error message from the daemon, a line the worker could not read.
	// The default writes them to Stderr, one line each, prefixed "opsvc worker: ".
	Logf func(format string, args ...any)
	// Stderr is where the defaults above and the not-supervised notice write. Default: os.Stderr.
	Stderr io.Writer
}

// withDefaults fills in what opts leaves unset.
func (opts Options) withDefaults() Options {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logf == nil {
		w := opts.Stderr
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(w, "opsvc worker: "+format+"\n", args...)
		}
	}
	if opts.OnEOF == nil {
		w := opts.Stderr
		opts.OnEOF = func() {
			fmt.Fprintln(w, EOFNotice)
			os.Exit(0)
		}
	}
	return opts
}

// Conn is a Go worker's end of the IPC channel. Its methods are safe for concurrent use. On a worker
// started outside opsvc it is a no-op connection: every method succeeds and does nothing (Request
// returns ErrNotSupervised), Commands never delivers, and Shutdown and Done never fire.
type Conn struct {
	p         *peer // nil on a no-op connection
	opts      Options
	unit      string
	heartbeat time.Duration // automatic heartbeat interval; 0 = none

	mu     sync.Mutex
	closed bool // Close was called: start no heartbeats

	cmds      chan *Command
	wantCmds  atomic.Bool
	shutdown  chan time.Duration
	shutOnce  sync.Once
	drain     atomic.Bool // the shutdown asked for a drain; set before shutdown fires
	readyOnce sync.Once

	done  chan struct{}  // the peer's, or one never closed on a no-op connection
	beats sync.WaitGroup // the heartbeat goroutine
}

// Connect connects a Go worker to its daemon through the channel named by OPSVC_IPC_FD. With the
// variable unset it returns a no-op connection and writes NotSupervisedNotice to stderr. When the
// daemon goes away (EOF) the worker exits with status 0 after one line on stderr; use ConnectWith
// to do otherwise. Connect removes OPSVC_IPC_FD, NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE
// from the environment, so that processes the worker starts (a Node.js program above all) do not
// take an unrelated fd 3 for a channel.
func Connect() (*Conn, error) { return ConnectWith(Options{}) }

// ConnectWith is Connect with options.
func ConnectWith(opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	v := os.Getenv(EnvIPCFD)
	if v == "" {
		fmt.Fprintln(opts.Stderr, NotSupervisedNotice)
		return &Conn{opts: opts, cmds: make(chan *Command), shutdown: make(chan time.Duration), done: make(chan struct{})}, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("worker: connect: %s=%q is not a descriptor number (start the worker with opsvc, or unset %s)", EnvIPCFD, v, EnvIPCFD)
	}
	var heartbeat time.Duration
	if hv := os.Getenv(EnvHeartbeatUSEC); hv != "" {
		us, err := strconv.ParseInt(hv, 10, 64)
		if err != nil || us < 0 {
			return nil, fmt.Errorf("worker: connect: %s=%q is not a number of microseconds", EnvHeartbeatUSEC, hv)
		}
		heartbeat = time.Duration(us) * time.Microsecond / 2
	}
	unit := os.Getenv(EnvUnit)
	for _, k := range []string{EnvIPCFD, EnvNodeChannelFD, EnvNodeSerialization} {
		os.Unsetenv(k)
	}
	f := os.NewFile(uintptr(fd), "opsvc-ipc")
	if f == nil {
		return nil, fmt.Errorf("worker: connect: fd %d from %s is not open (start the worker with opsvc)", fd, EnvIPCFD)
	}
	c, err := newConn(f, opts, unit, heartbeat)
	if err != nil {
		return nil, fmt.Errorf("worker: connect: fd %d from %s: %w (start the worker with opsvc, or unset %s)", fd, EnvIPCFD, err, EnvIPCFD)
	}
	return c, nil
}

// NewConn makes a worker's connection from its end of a channel (the file NewChannel returns), for
// a worker that gets its channel some other way than OPSVC_IPC_FD, such as a test driving a worker
// in-process. It takes over f. Unit reports "" and no heartbeat is sent automatically.
func NewConn(f *os.File, opts Options) (*Conn, error) {
	if f == nil {
		return nil, errors.New("worker: new connection: no file")
	}
	c, err := newConn(f, opts.withDefaults(), "", 0)
	if err != nil {
		return nil, fmt.Errorf("worker: new connection: %w", err)
	}
	return c, nil
}

// newConn takes over f, the worker's end of a channel, and starts the reader. opts is complete.
func newConn(f *os.File, opts Options, unit string, heartbeat time.Duration) (*Conn, error) {
	c := &Conn{
		opts:      opts,
		unit:      unit,
		heartbeat: heartbeat,
		cmds:      make(chan *Command, 16),
		shutdown:  make(chan time.Duration, 1),
	}
	p, err := newPeer(f, peerConfig{
		idPrefix: "r",
		callOp:   "request",
		gone:     "the daemon is gone",
		deliver:  c.deliver,
		problem:  func(err error) { c.opts.Logf("message from the daemon: %v", err) },
		stopped:  c.stopped,
	})
	if err != nil {
		return nil, err
	}
	c.p, c.done = p, p.done
	p.start()
	return c, nil
}

// Unit is the name of the unit the worker runs as (OPSVC_UNIT), or "" outside opsvc.
func (c *Conn) Unit() string { return c.unit }

// Supervised reports whether the worker talks to a daemon (false on a no-op connection).
func (c *Conn) Supervised() bool { return c.p != nil }

// Ready tells the daemon the worker is up. From then on, when the unit has a watchdog
// (OPSVC_HEARTBEAT_USEC), a heartbeat goes out automatically at half its period until Close.
func (c *Conn) Ready() error {
	if c.p == nil {
		return nil
	}
	if err := c.send(Message{Type: TypeReady}); err != nil {
		return err
	}
	c.readyOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.heartbeat > 0 && !c.closed {
			c.beats.Add(1)
			go c.beat()
		}
	})
	return nil
}

// Heartbeat tells the daemon the worker is alive. Ready starts sending them automatically when the
// unit has a watchdog; call it yourself to tie liveness to your own loop as well.
func (c *Conn) Heartbeat() error { return c.send(Message{Type: TypeHeartbeat}) }

// Status sets the worker's status line, shown by opsvc status.
func (c *Conn) Status(text string) error { return c.send(Message{Type: TypeStatus, Text: text}) }

// Publish sends an event, which the daemon re-publishes on its bus under the unit's name. data is
// any JSON-encodable value, or nil.
func (c *Conn) Publish(name string, data any) error {
	if c.p == nil {
		return nil
	}
	raw, err := marshalData(data)
	if err != nil {
		return fmt.Errorf("worker: publish %q: encode data: %w", name, err)
	}
	return c.send(Message{Type: TypeEvent, Name: name, Data: raw})
}

// Request asks the daemon something (method names are the daemon's: "session.acquire", …) and waits
// for its reply until ctx is done or the channel closes. A reply with ok=false comes back as a
// *ReplyError.
func (c *Conn) Request(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if c.p == nil {
		return nil, ErrNotSupervised
	}
	raw, err := marshalData(params)
	if err != nil {
		return nil, fmt.Errorf("worker: request %q: encode params: %w", method, err)
	}
	return c.p.call(ctx, Message{Type: TypeRequest, Method: method, Params: raw}, method)
}

// Command is a command from the daemon (opsvc send UNIT NAME [JSON]). Answer each with Reply.
type Command struct {
	ID   string
	Name string
	Args json.RawMessage

	conn    *Conn
	replied atomic.Bool
}

// Reply answers the command: with data (any JSON-encodable value, or nil) when err is nil, else
// with ok=false and err's text. Only the first reply counts; later ones return an error.
func (cmd *Command) Reply(data any, err error) error {
	if !cmd.replied.CompareAndSwap(false, true) {
		return fmt.Errorf("worker: reply to command %q: already replied", cmd.Name)
	}
	m, merr := replyOf(cmd.ID, data, err)
	if merr != nil {
		cmd.replied.Store(false)
		return fmt.Errorf("worker: reply to command %q: encode data: %w", cmd.Name, merr)
	}
	return cmd.conn.send(m)
}

// Commands delivers the daemon's commands. Call it before Ready: until it is first called, the
// worker answers every command with an error saying it takes none. Commands wait in a small buffer;
// when it is full, reading the channel stops until one is taken.
func (c *Conn) Commands() <-chan *Command {
	c.wantCmds.Store(true)
	return c.cmds
}

// Shutdown delivers, once, the time the daemon gives the worker to stop (deadline_ms; 0 if it gave
// none) when it asks the worker to stop, and is closed right after: a receive from it fires on
// shutdown and stays ready from then on. Finish the work at hand, then return from main; after the
// deadline the daemon kills the worker's process group. ShutdownDrain says whether the daemon asked
// for a drain. On a no-op connection it never fires.
func (c *Conn) Shutdown() <-chan time.Duration { return c.shutdown }

// ShutdownDrain reports whether the shutdown asked the worker to drain: to let the work at hand
// (an orchestrator's running session) finish before it exits. It is valid once Shutdown has fired,
// and false before.
func (c *Conn) ShutdownDrain() bool { return c.drain.Load() }

// Done is closed when the channel is gone: the daemon closed it (EOF), reading it failed, or Close
// was called. On a no-op connection it is never closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close stops the automatic heartbeats and closes the worker's end; the daemon sees EOF. OnEOF
// does not run. It is safe to call more than once, and from OnEOF.
func (c *Conn) Close() error {
	if c.p == nil {
		return nil
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	err := c.p.close()
	c.beats.Wait()
	return err
}

func (c *Conn) send(m Message) error {
	if c.p == nil {
		return nil
	}
	return c.p.send(m)
}

// beat sends the automatic heartbeats.
func (c *Conn) beat() {
	defer c.beats.Done()
	t := time.NewTicker(c.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := c.Heartbeat(); err != nil {
				return // the reader sees the same end and reports it
			}
		case <-c.p.closing:
			return
		case <-c.done:
			return
		}
	}
}

// stopped runs when the reader has stopped: when the daemon went away, OnEOF.
func (c *Conn) stopped() {
	if c.p.eof {
		if c.p.err != nil {
			c.opts.Logf("%v", c.p.err)
		}
		c.opts.OnEOF()
	}
}

// deliver handles one message from the daemon; false means the connection is closing.
func (c *Conn) deliver(m Message) bool {
	switch m.Type {
	case TypeShutdown:
		c.shutOnce.Do(func() {
			c.drain.Store(m.Drain)
			c.shutdown <- time.Duration(m.DeadlineMS) * time.Millisecond
			close(c.shutdown)
		})
	case TypeCommand:
		if m.ID == "" || m.Name == "" {
			c.opts.Logf(`message from the daemon: a command needs "id" and "name"`)
			return true
		}
		cmd := &Command{ID: m.ID, Name: m.Name, Args: m.Args, conn: c}
		if !c.wantCmds.Load() {
			if err := cmd.Reply(nil, fmt.Errorf("worker takes no commands (it never called Commands)")); err != nil {
				c.opts.Logf("reply to command %q: %v", m.Name, err)
			}
			return true
		}
		select {
		case c.cmds <- cmd:
		case <-c.p.closing:
			return false
		}
	case TypeError:
		c.opts.Logf("the daemon reports: %s", m.Error)
	}
	return true // unknown types are ignored
}

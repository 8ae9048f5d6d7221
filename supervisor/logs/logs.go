// Package logs keeps worker output and the daemon's own log lines: a ring of recent lines per
// unit for tail and follow, and a bounded asynchronous queue to journald or to size-capped files.
// It never blocks the writer of a line.
package logs

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Streams of a Line.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamDaemon = "daemon"
)

// Sinks, as Sink reports them.
const (
	SinkJournald = "journald"
	SinkFiles    = "files"
)

// Defaults for Options.
const (
	DefaultRingLines      = 1000
	DefaultFileMaxBytes   = 8 << 20
	DefaultQueueLen       = 8192
	DefaultJournalSocket  = "/run/systemd/journal/socket"
	NoJournal             = "-"     // Options.JournalSocket that never uses journald
	DaemonIdentifier      = "opsvc" // SYSLOG_IDENTIFIER of the daemon's own lines
	followBuffer          = 256     // lines a follower may fall behind before it misses some
	closeDrain            = 2 * time.Second
	droppedReportPriority = "4" // warning
)

// Line is one line of output.
type Line struct {
	Time   time.Time         `json:"time"`
	Unit   string            `json:"unit"`   // "" for the daemon's own lines
	Stream string            `json:"stream"` // "stdout" | "stderr" | "daemon"
	Text   string            `json:"text"`
	PID    int               `json:"pid,omitempty"`
	Fields map[string]string `json:"fields,omitempty"` // extra journald fields, e.g. OPSVC_CHAIN_ID
}

// Options tune Logs.
type Options struct {
	Dir           string // STATE/logs: where the files sink writes; needed when journald is not used
	RingLines     int    // lines kept per unit for Tail; default 1000
	FileMaxBytes  int64  // size of UNIT.log before it rotates to UNIT.log.1 (3 kept); default 8 MiB
	QueueLen      int    // lines waiting for the sink before new ones are dropped; default 8192
	JournalSocket string // "" = /run/systemd/journal/socket; "-" = never use journald
	Now           func() time.Time
}

// Logs is the daemon's line store. It is safe for concurrent use.
type Logs struct {
	opts    Options
	sink    sink
	queue   chan Line
	stopped chan struct{}

	dropped    atomic.Uint64 // lines the sink never got, in total
	unreported atomic.Uint64 // of those, not yet reported in a daemon line

	mu        sync.Mutex
	rings     map[string]*ring
	followers map[string]map[*follower]struct{}
	closed    bool
}

// sink is where queued lines go; only the Logs goroutine calls write.
type sink interface {
	name() string
	write(Line) error
	abort() // make a blocked or later write fail at once (Close after its bound)
	close() error
}

// New decides once where lines go: journald when its socket exists and a connect to it succeeds
// (JournalSocket, default /run/systemd/journal/socket), otherwise files under Dir.
func New(opts Options) (*Logs, error) {
	opts = withDefaults(opts)
	var s sink
	if opts.JournalSocket != NoJournal {
		if j, err := newJournalSink(opts.JournalSocket, journalSendBuffer); err == nil {
			s = j
		}
	}
	if s == nil {
		if opts.Dir == "" {
			return nil, errors.New("logs: no log directory and journald is not reachable: set the state directory (--state)")
		}
		f, err := newFileSink(opts.Dir, opts.FileMaxBytes)
		if err != nil {
			return nil, err
		}
		s = f
	}
	return newLogs(opts, s), nil
}

func withDefaults(opts Options) Options {
	if opts.RingLines <= 0 {
		opts.RingLines = DefaultRingLines
	}
	if opts.FileMaxBytes <= 0 {
		opts.FileMaxBytes = DefaultFileMaxBytes
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.JournalSocket == "" {
		opts.JournalSocket = DefaultJournalSocket
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

func newLogs(opts Options, s sink) *Logs {
	l := &Logs{
		opts:      opts,
		sink:      s,
		queue:     make(chan Line, opts.QueueLen),
		stopped:   make(chan struct{}),
		rings:     make(map[string]*ring),
		followers: make(map[string]map[*follower]struct{}),
	}
	go l.run()
	return l
}

// Sink is "journald" or "files".
func (l *Logs) Sink() string { return l.sink.name() }

// Dropped is how many lines never reached the sink: the queue was full or the sink failed.
func (l *Logs) Dropped() uint64 { return l.dropped.Load() }

// Write stores a line and queues it for the sink. It never blocks: the line goes into its unit's
// ring and to its followers at once; when the sink's queue is full it is dropped from the sink
// only, and a later daemon line reports how many were. A zero Time is set to now. Fields is
// not copied: do not change it after the call.
func (l *Logs) Write(line Line) {
	if line.Time.IsZero() {
		line.Time = l.opts.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keepLocked(line)
	if l.closed {
		return
	}
	select {
	case l.queue <- line:
	default:
		l.dropped.Add(1)
		l.unreported.Add(1)
	}
}

// Logf writes a daemon line (Stream "daemon", no unit).
func (l *Logs) Logf(format string, args ...any) {
	l.Write(Line{Stream: StreamDaemon, Text: fmt.Sprintf(format, args...)})
}

// keepLocked puts a line in its unit's ring and hands it to the unit's followers.
func (l *Logs) keepLocked(line Line) {
	r := l.rings[line.Unit]
	if r == nil {
		r = &ring{lines: make([]Line, 0, min(l.opts.RingLines, 64)), max: l.opts.RingLines}
		l.rings[line.Unit] = r
	}
	r.add(line)
	for f := range l.followers[line.Unit] {
		select {
		case f.ch <- line:
		default:
			f.missed++
		}
	}
}

// Tail returns up to n of the unit's most recent lines, oldest first (n <= 0: every line kept).
// The daemon's own lines are under unit "".
func (l *Logs) Tail(unit string, n int) []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rings[unit]
	if r == nil {
		return nil
	}
	return r.last(n)
}

type follower struct {
	ch     chan Line
	missed int
}

// Follow returns the unit's lines from now on, and a function that stops them and closes the
// channel. A follower that falls behind misses lines; it never slows Write. Close closes every
// follower's channel.
func (l *Logs) Follow(unit string) (<-chan Line, func()) {
	f := &follower{ch: make(chan Line, followBuffer)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(f.ch)
		return f.ch, func() {}
	}
	fs := l.followers[unit]
	if fs == nil {
		fs = make(map[*follower]struct{})
		l.followers[unit] = fs
	}
	fs[f] = struct{}{}
	return f.ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.followers[unit][f]; ok {
			delete(l.followers[unit], f)
			if len(l.followers[unit]) == 0 {
				delete(l.followers, unit)
			}
			close(f.ch)
		}
	}
}

// Close ends every follower, lets the sink take the queued lines (for at most two seconds; what is
// left after that is dropped) and stops the goroutine. Writes after Close still reach the rings.
func (l *Logs) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue)
	for unit, fs := range l.followers {
		for f := range fs {
			close(f.ch)
		}
		delete(l.followers, unit)
	}
	l.mu.Unlock()
	select {
	case <-l.stopped:
	case <-time.After(closeDrain):
		l.sink.abort()
		<-l.stopped
	}
	return l.sink.close()
}

// run is the one goroutine that talks to the sink.
func (l *Logs) run() {
	defer close(l.stopped)
	var lastErr error
	for line := range l.queue {
		if err := l.sink.write(line); err != nil {
			l.dropped.Add(1)
			l.unreported.Add(1)
			lastErr = err
			continue
		}
		if n := l.unreported.Swap(0); n > 0 {
			lastErr = l.reportDropped(n, lastErr)
		}
	}
	if n := l.unreported.Swap(0); n > 0 {
		l.reportDropped(n, lastErr)
	}
}

// reportDropped writes the "N lines dropped" daemon line to the rings and the sink.
func (l *Logs) reportDropped(n uint64, cause error) error {
	text := fmt.Sprintf("logs: %d log lines dropped: the %s sink could not keep up", n, l.sink.name())
	if cause != nil {
		text = fmt.Sprintf("logs: %d log lines dropped: %v", n, cause)
	}
	line := Line{
		Time:   l.opts.Now(),
		Stream: StreamDaemon,
		Text:   text,
		Fields: map[string]string{"PRIORITY": droppedReportPriority},
	}
	l.mu.Lock()
	l.keepLocked(line)
	l.mu.Unlock()
	if err := l.sink.write(line); err != nil {
		l.unreported.Add(n) // report again once the sink takes lines
		return err
	}
	return nil
}

// ring is a fixed-size circular buffer of lines.
type ring struct {
	lines []Line
	next  int // where the next line goes once the ring is full
	max   int
}

func (r *ring) add(line Line) {
	if len(r.lines) < r.max {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % r.max
}

func (r *ring) last(n int) []Line {
	size := len(r.lines)
	if n <= 0 || n > size {
		n = size
	}
	out := make([]Line, 0, n)
	start := r.next + size - n // index of the first wanted line, modulo size
	for i := range n {
		out = append(out, r.lines[(start+i)%size])
	}
	return out
}

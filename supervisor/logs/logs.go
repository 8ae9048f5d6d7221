// Package logs keeps worker output and the daemon's own log lines: a ring of recent lines per
// unit for tail and follow, bounded in bytes, and a bounded asynchronous queue to size-capped,
// rotated files in the state directory and to journald when it is there. It never blocks the
// writer of a line.
package logs

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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

// Defaults for Options, and the bounds of a line.
const (
	DefaultRingLines          = 1000
	DefaultRingBytes          = 1 << 20  // per unit
	DefaultTotalBytes         = 64 << 20 // all units together
	DefaultFileMaxBytes       = 8 << 20
	DefaultQueueLen           = 8192
	DefaultDropReportInterval = 10 * time.Second
	DefaultJournalSocket      = "/run/systemd/journal/socket"
	NoJournal                 = "-"     // Options.JournalSocket that never uses journald
	DaemonIdentifier          = "opsvc" // SYSLOG_IDENTIFIER of the daemon's own lines
	// MaxLineBytes is the longest text a Line keeps; a longer one is cut and ends with a marker
	// saying how many bytes were cut (Line.Truncated holds the number).
	MaxLineBytes = 16 << 10

	followBuffer          = 256 // lines a follower may fall behind before it misses some
	closeDrain            = 2 * time.Second
	droppedReportPriority = "4" // warning
	// lineOverhead is what a kept line costs beside its text, as the rings account for it.
	lineOverhead = 128
)

// Line is one line of output.
type Line struct {
	Time      time.Time         `json:"time"`
	Unit      string            `json:"unit"`   // "" for the daemon's own lines
	Stream    string            `json:"stream"` // "stdout" | "stderr" | "daemon"
	Text      string            `json:"text"`
	PID       int               `json:"pid,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`    // extra journald fields, e.g. OPSVC_CHAIN_ID
	Truncated int               `json:"truncated,omitempty"` // bytes cut from a line longer than MaxLineBytes
}

// Options tune Logs.
type Options struct {
	Dir          string // STATE/logs: where UNIT.log files are kept; needed when journald is not used
	RingLines    int    // lines kept in memory per unit; default 1000
	RingBytes    int64  // bytes kept in memory per unit; default 1 MiB
	TotalBytes   int64  // bytes kept in memory for all units; default 64 MiB
	FileMaxBytes int64  // size of UNIT.log before it rotates to UNIT.log.1; default 8 MiB
	QueueLen     int    // lines waiting for the sinks before new ones are dropped; default 8192
	// UnitQueueShare is how many of the waiting lines one unit may hold; its lines past that are
	// dropped, so one unit cannot take the queue from the others. Default QueueLen/8.
	UnitQueueShare int
	// DropReportInterval is how often dropped lines are reported, in one daemon line with the
	// counts; default 10s.
	DropReportInterval time.Duration
	JournalSocket      string // "" = /run/systemd/journal/socket; "-" = never use journald
	Now                func() time.Time
	// Fault, if set, is called with the error when writing the log files starts failing, and
	// with nil when they take lines again.
	Fault func(error)
}

// Logs is the daemon's line store. It is safe for concurrent use.
type Logs struct {
	opts    Options
	files   *fileSink    // nil without a directory
	journal *journalSink // nil without journald
	sinks   []*sinkQueue // one queue and goroutine per sink: a stalled journald never holds up the files
	stop    chan struct{}
	stopped chan struct{} // the drop reporter has ended
	kick    chan struct{} // a first line was dropped since the last report

	dropped atomic.Uint64 // lines the sinks never got, in total

	mu        sync.Mutex
	units     map[string]*unitLog
	total     int64                 // bytes kept in all rings
	dropping  map[*unitLog]struct{} // units with drops not yet reported
	followers map[string]map[*follower]struct{}
	closed    bool
}

// unitLog is what Logs keeps for one unit. Guarded by Logs.mu.
type unitLog struct {
	name      string
	ring      ring
	queued    [2]int // lines waiting, per sink
	dropped   uint64 // lines dropped since the last report
	lastCause error
	loaded    bool // the lines its files kept from before were read back (or there are none)
}

type queued struct {
	line Line
	u    *unitLog // nil for a drop report
}

// sinkQueue is one sink's queue and the goroutine that writes it.
type sinkQueue struct {
	index   int // in Logs.sinks, and in unitLog.queued
	write   func(Line) error
	fault   func(error) // told of a change between failing and working; nil: not told
	stopped chan struct{}

	// Guarded by Logs.mu. The queue grows as lines come and is let go once written, so an
	// idle daemon does not hold room for QueueLen lines.
	queue   []queued
	pending int  // lines queued or being written, at most QueueLen
	closed  bool // no more lines: write what is queued, then end
	wake    chan struct{}
}

// spareQueue is the most room a written queue keeps for the next lines.
const spareQueue = 64

// pushLocked queues a line for the sink; false when the queue is full or closed.
func (sq *sinkQueue) pushLocked(q queued, max int) bool {
	if sq.closed || sq.pending >= max {
		return false
	}
	sq.queue = append(sq.queue, q)
	sq.pending++
	select {
	case sq.wake <- struct{}{}:
	default:
	}
	return true
}

// New opens the sinks: files under Dir when it is set, and journald when its socket exists and
// a connect to it succeeds (JournalSocket, default /run/systemd/journal/socket). One of them is
// needed.
func New(opts Options) (*Logs, error) {
	opts = withDefaults(opts)
	var j *journalSink
	if opts.JournalSocket != NoJournal {
		if s, err := newJournalSink(opts.JournalSocket, journalSendBuffer); err == nil {
			j = s
		}
	}
	var f *fileSink
	if opts.Dir != "" {
		var err error
		if f, err = newFileSink(opts.Dir, opts.FileMaxBytes); err != nil {
			if j != nil {
				j.close()
			}
			return nil, err
		}
	}
	if f == nil && j == nil {
		return nil, errors.New("logs: no log directory and journald is not reachable: set the state directory (--state)")
	}
	return newLogs(opts, f, j), nil
}

func withDefaults(opts Options) Options {
	if opts.RingLines <= 0 {
		opts.RingLines = DefaultRingLines
	}
	if opts.RingBytes <= 0 {
		opts.RingBytes = DefaultRingBytes
	}
	if opts.TotalBytes <= 0 {
		opts.TotalBytes = DefaultTotalBytes
	}
	if opts.FileMaxBytes <= 0 {
		opts.FileMaxBytes = DefaultFileMaxBytes
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.UnitQueueShare <= 0 {
		opts.UnitQueueShare = max(opts.QueueLen/8, 1)
	}
	if opts.DropReportInterval <= 0 {
		opts.DropReportInterval = DefaultDropReportInterval
	}
	if opts.JournalSocket == "" {
		opts.JournalSocket = DefaultJournalSocket
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

func newLogs(opts Options, f *fileSink, j *journalSink) *Logs {
	l := &Logs{
		opts:      opts,
		files:     f,
		journal:   j,
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		units:     make(map[string]*unitLog),
		dropping:  make(map[*unitLog]struct{}),
		followers: make(map[string]map[*follower]struct{}),
	}
	if f != nil {
		l.sinks = append(l.sinks, &sinkQueue{write: f.write, fault: opts.Fault})
	}
	if j != nil {
		l.sinks = append(l.sinks, &sinkQueue{write: j.write})
	}
	for i, sq := range l.sinks {
		sq.index = i
		sq.wake = make(chan struct{}, 1)
		sq.stopped = make(chan struct{})
		go l.run(sq)
	}
	go l.reportLoop()
	return l
}

// Sink is "journald" when lines go to journald (as well as to the files), else "files".
func (l *Logs) Sink() string {
	if l.journal != nil {
		return SinkJournald
	}
	return SinkFiles
}

// Dropped is how many times a line did not reach a sink (the files, journald): the sink's
// queue or the unit's share of it was full, or the sink failed.
func (l *Logs) Dropped() uint64 { return l.dropped.Load() }

// Bytes is how many bytes the rings keep, all units together, as they account for them (the
// text of each line plus a fixed overhead).
func (l *Logs) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// UnitBytes is how many bytes the unit's ring keeps.
func (l *Logs) UnitBytes(unit string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.units[unit]; u != nil {
		return u.ring.bytes
	}
	return 0
}

// Truncate cuts a text longer than max bytes at a character boundary and ends it with a
// marker saying how many bytes were cut, so that the result is at most max bytes; it returns
// the text and that number.
func Truncate(text string, max int) (string, int) { return CutText(text, max, 0) }

// markerRoom is the most bytes the "…[N bytes cut]" marker takes.
const markerRoom = 40

// CutText is Truncate for a text of which extra bytes were already cut away: the marker
// counts them too.
func CutText(text string, max, extra int) (string, int) {
	if len(text) <= max && extra == 0 {
		return text, 0
	}
	keep := min(len(text), max-markerRoom)
	if keep < 0 {
		keep = 0
	}
	for keep > 0 && keep < len(text) && !utf8.RuneStart(text[keep]) {
		keep--
	}
	cut := len(text) - keep + extra
	return text[:keep] + fmt.Sprintf("…[%d bytes cut]", cut), cut
}

// Write stores a line and queues it for the sinks. It never blocks: the line goes into its
// unit's ring and to its followers at once; when the queue, or the unit's share of it, is full
// it is dropped from the sinks only, and a daemon line reports the count once per interval.
// A zero Time is set to now; a text longer than MaxLineBytes is cut. Fields is not copied: do
// not change it after the call.
func (l *Logs) Write(line Line) {
	if line.Time.IsZero() {
		line.Time = l.opts.Now()
	}
	if len(line.Text) > MaxLineBytes {
		var cut int
		line.Text, cut = Truncate(line.Text, MaxLineBytes)
		line.Truncated += cut
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.unitLocked(line.Unit)
	l.keepLocked(u, line)
	if l.closed {
		return
	}
	for _, sq := range l.sinks {
		if u.queued[sq.index] >= l.opts.UnitQueueShare {
			l.dropLocked(u, nil)
			continue
		}
		if sq.pushLocked(queued{line: line, u: u}, l.opts.QueueLen) {
			u.queued[sq.index]++
		} else {
			l.dropLocked(u, nil)
		}
	}
}

// dropLocked counts a line the sinks did not get.
func (l *Logs) dropLocked(u *unitLog, cause error) {
	l.dropped.Add(1)
	u.dropped++
	if cause != nil {
		u.lastCause = cause
	}
	if len(l.dropping) == 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	l.dropping[u] = struct{}{}
}

// unitLocked returns the unit's log, creating it when the unit has none in memory yet. The
// lines its files kept from before (a daemon restart) are read back when the unit's lines are
// first asked for (Query), not here: writing a line never waits for a file to be read.
func (l *Logs) unitLocked(name string) *unitLog {
	if u := l.units[name]; u != nil {
		return u
	}
	u := &unitLog{name: name, loaded: l.files == nil}
	l.units[name] = u
	return u
}

// loadOlder puts the lines of u's files from before its lines in memory in front of them,
// once.
func (l *Logs) loadOlder(u *unitLog) {
	l.mu.Lock()
	loaded := u.loaded
	var first Line
	empty := u.ring.head >= len(u.ring.lines)
	if !empty {
		first = u.ring.lines[u.ring.head]
	}
	l.mu.Unlock()
	if loaded {
		return
	}
	old := readFileTail(l.files.dir, u.name, l.opts.RingBytes, l.opts.RingLines)
	if !empty {
		old = before(old, first)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.loaded || l.units[u.name] != u {
		return
	}
	u.loaded = true
	if len(old) == 0 {
		return
	}
	kept := u.ring.all()
	l.total -= u.ring.bytes
	u.ring = ring{}
	for _, line := range append(old, kept...) {
		l.addLocked(u, line)
	}
}

// Logf writes a daemon line (Stream "daemon", no unit).
func (l *Logs) Logf(format string, args ...any) {
	l.Write(Line{Stream: StreamDaemon, Text: fmt.Sprintf(format, args...)})
}

// keepLocked puts a line in its unit's ring and hands it to the unit's followers.
func (l *Logs) keepLocked(u *unitLog, line Line) {
	l.addLocked(u, line)
	for f := range l.followers[line.Unit] {
		select {
		case f.ch <- line:
		default:
			f.missed++
		}
	}
}

// addLocked adds a line to a ring and evicts old lines past the unit's and the total bounds:
// the unit's own first, then those of the unit that keeps the most.
func (l *Logs) addLocked(u *unitLog, line Line) {
	l.total += u.ring.add(line, l.opts.RingLines, l.opts.RingBytes)
	for l.total > l.opts.TotalBytes {
		big := u
		if u.ring.bytes < l.opts.TotalBytes/int64(len(l.units)) {
			for _, o := range l.units {
				if o.ring.bytes > big.ring.bytes {
					big = o
				}
			}
		}
		freed := big.ring.evict()
		if freed == 0 {
			break
		}
		l.total -= freed
	}
}

// Forget frees the lines kept in memory for a unit that was removed; its files stay.
func (l *Logs) Forget(unit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.units[unit]
	if u == nil {
		return
	}
	l.total -= u.ring.bytes
	u.ring = ring{}
	delete(l.units, unit)
}

// Tail returns up to n of the unit's most recent lines, oldest first (n <= 0: every line kept).
// The daemon's own lines are under unit "". A unit without lines in memory (none since the
// daemon started) is read from its files.
func (l *Logs) Tail(unit string, n int) []Line {
	if n <= 0 {
		n = -1
	}
	return l.Query(unit, Query{N: n})
}

// Query selects a unit's lines.
type Query struct {
	// N is how many of the most recent matching lines: 0 = none, negative = every one kept.
	N int
	// Since and Until bound the lines' times (inclusive); zero = unbounded.
	Since, Until time.Time
	// Stream is "stdout" or "stderr" (or "daemon"); "" = any.
	Stream string
	// Grep keeps lines containing it; Match keeps lines it matches (nil = any).
	Grep  string
	Match interface{ MatchString(string) bool }
}

func (q Query) match(line Line) bool {
	if !q.Since.IsZero() && line.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && line.Time.After(q.Until) {
		return false
	}
	if q.Stream != "" && line.Stream != q.Stream {
		return false
	}
	if q.Grep != "" && !strings.Contains(line.Text, q.Grep) {
		return false
	}
	return q.Match == nil || q.Match.MatchString(line.Text)
}

// Query returns the last q.N of the unit's lines that match q, oldest first: from memory, or,
// for a unit without lines in memory, from its files (so after a daemon restart too).
func (l *Logs) Query(unit string, q Query) []Line {
	if q.N == 0 {
		return nil
	}
	l.mu.Lock()
	u := l.units[unit]
	l.mu.Unlock()
	if u != nil {
		l.loadOlder(u)
	}
	l.mu.Lock()
	var lines []Line
	if u != nil {
		lines = u.ring.all()
	}
	l.mu.Unlock()
	if u == nil && l.files != nil {
		lines = readFileTail(l.files.dir, unit, l.opts.RingBytes, l.opts.RingLines)
	}
	out := lines[:0:0]
	for _, line := range lines {
		if q.match(line) {
			out = append(out, line)
		}
	}
	if q.N > 0 && len(out) > q.N {
		out = out[len(out)-q.N:]
	}
	return out
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

// Close ends every follower, lets the sinks take the queued lines (for at most two seconds;
// what is left after that is dropped) and stops the goroutines. Writes after Close still
// reach the rings.
func (l *Logs) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	for unit, fs := range l.followers {
		for f := range fs {
			close(f.ch)
		}
		delete(l.followers, unit)
	}
	l.mu.Unlock()
	<-l.stopped // the reporter is not writing to the queues any more
	l.mu.Lock()
	for _, sq := range l.sinks {
		sq.closed = true
		select {
		case sq.wake <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
	deadline := time.After(closeDrain)
	for _, sq := range l.sinks {
		select {
		case <-sq.stopped:
		case <-deadline:
			if l.journal != nil {
				l.journal.abort()
			}
			<-sq.stopped
		}
	}
	l.reportDropped() // to the rings only, now
	var errs []error
	if l.files != nil {
		errs = append(errs, l.files.close())
	}
	if l.journal != nil {
		errs = append(errs, l.journal.close())
	}
	return errors.Join(errs...)
}

// run is the goroutine that writes one sink's queue.
func (l *Logs) run(sq *sinkQueue) {
	defer close(sq.stopped)
	var failing error
	var spare []queued
	for {
		l.mu.Lock()
		for len(sq.queue) == 0 && !sq.closed {
			l.mu.Unlock()
			<-sq.wake
			l.mu.Lock()
		}
		batch := sq.queue
		if len(batch) == 0 { // closed, and every line written
			l.mu.Unlock()
			return
		}
		sq.queue = spare[:0]
		l.mu.Unlock()
		for i := range batch {
			q := &batch[i]
			err := sq.write(q.line)
			if sq.fault != nil && (err == nil) != (failing == nil) {
				sq.fault(err)
			}
			failing = err
			l.mu.Lock()
			sq.pending--
			if q.u != nil {
				q.u.queued[sq.index]--
				if err != nil {
					l.dropLocked(q.u, err)
				}
			}
			l.mu.Unlock()
			*q = queued{}
		}
		spare = nil
		if cap(batch) <= spareQueue {
			spare = batch[:0]
		}
	}
}

// reportLoop reports dropped lines one interval after the first of them, until Close; while
// nothing is dropped it sleeps.
func (l *Logs) reportLoop() {
	defer close(l.stopped)
	t := time.NewTimer(l.opts.DropReportInterval)
	t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		}
		t.Reset(l.opts.DropReportInterval)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
			l.reportDropped()
		}
	}
}

// maxReportUnits is how many units a drop report names.
const maxReportUnits = 10

// reportDropped writes one daemon line with the lines dropped since the last report, if any,
// to the rings and (before Close) to the sinks, without waiting for them.
func (l *Logs) reportDropped() {
	l.mu.Lock()
	if len(l.dropping) == 0 {
		l.mu.Unlock()
		return
	}
	type count struct {
		unit string
		n    uint64
	}
	var counts []count
	var total uint64
	var cause error
	for u := range l.dropping {
		counts = append(counts, count{u.name, u.dropped})
		total += u.dropped
		if u.lastCause != nil {
			cause = u.lastCause
		}
		u.dropped, u.lastCause = 0, nil
		delete(l.dropping, u)
	}
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].n != counts[j].n {
			return counts[i].n > counts[j].n
		}
		return counts[i].unit < counts[j].unit
	})
	var b strings.Builder
	fmt.Fprintf(&b, "logs: %d log lines dropped in the last %s (", total, l.opts.DropReportInterval)
	for i, c := range counts {
		if i == maxReportUnits {
			fmt.Fprintf(&b, ", and %d more units", len(counts)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		name := c.unit
		if name == "" {
			name = "opsvc"
		}
		fmt.Fprintf(&b, "%s %d", name, c.n)
	}
	b.WriteString(")")
	if cause != nil {
		fmt.Fprintf(&b, ": %v", cause)
	} else {
		b.WriteString(": a unit printed faster than the logs are written (it keeps its own recent lines in memory)")
	}
	line := Line{
		Time:   l.opts.Now(),
		Stream: StreamDaemon,
		Text:   b.String(),
		Fields: map[string]string{"PRIORITY": droppedReportPriority},
	}
	u := l.unitLocked("")
	if l.closed || len(l.sinks) == 0 {
		l.keepLocked(u, line)
	} else {
		// A report may take one place beyond a full queue: it is what says lines are
		// missing. When even that place is taken (the sink has not written the last
		// report yet) and no sink took it, its counts go to the next report.
		taken := false
		for _, sq := range l.sinks {
			if sq.pushLocked(queued{line: line}, l.opts.QueueLen+1) {
				taken = true
			}
		}
		if taken {
			l.keepLocked(u, line)
		} else {
			for _, c := range counts {
				cu := l.unitLocked(c.unit)
				cu.dropped += c.n
				l.dropping[cu] = struct{}{}
			}
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
	l.mu.Unlock()
}

// ring is a queue of lines bounded in count and bytes.
type ring struct {
	lines []Line // lines[head:] are kept, oldest first
	head  int
	bytes int64
}

func lineCost(line Line) int64 { return int64(len(line.Text)) + lineOverhead }

// add appends a line, evicts the oldest past the bounds (keeping at least the new one) and
// returns the change in bytes.
func (r *ring) add(line Line, maxLines int, maxBytes int64) int64 {
	before := r.bytes
	if r.head > 0 && r.head >= len(r.lines)/2 {
		n := copy(r.lines, r.lines[r.head:])
		clear(r.lines[n:])
		r.lines, r.head = r.lines[:n], 0
	}
	r.lines = append(r.lines, line)
	r.bytes += lineCost(line)
	for len(r.lines)-r.head > 1 && (len(r.lines)-r.head > maxLines || r.bytes > maxBytes) {
		r.evict()
	}
	return r.bytes - before
}

// evict drops the oldest line and returns its cost (0 when the ring is empty).
func (r *ring) evict() int64 {
	if r.head >= len(r.lines) {
		return 0
	}
	c := lineCost(r.lines[r.head])
	r.lines[r.head] = Line{}
	r.head++
	r.bytes -= c
	if r.head == len(r.lines) {
		r.lines, r.head = r.lines[:0], 0
	}
	return c
}

// all returns a copy of the kept lines, oldest first.
func (r *ring) all() []Line {
	return append([]Line(nil), r.lines[r.head:]...)
}

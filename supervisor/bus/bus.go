// Package bus is the daemon's replayable event bus: a gap-free sequence of events appended to a
// size-capped log in the state directory and fanned out to subscribers. It never blocks a publisher
// on a subscriber.
package bus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
)

// Event is one thing that happened, as stored in the log and sent to subscribers.
type Event struct {
	Seq  uint64         `json:"seq"`
	Time time.Time      `json:"time"` // RFC3339Nano on the wire
	Type string         `json:"type"` // "unit.started", …
	Unit string         `json:"unit,omitempty"`
	PID  int            `json:"pid,omitempty"`
	Data map[string]any `json:"data,omitempty"`
	// Unstored marks an event that could not be written to the log (the disk is full, say): it
	// is sent live with seq 0, and a client resuming with since= will not see it again.
	Unstored bool `json:"unstored,omitempty"`
	// Source is who caused the event, for the per-source rate limit ("" = the unit, or the
	// type for an event of no unit). It is not sent.
	Source string `json:"-"`
}

// TypeLagged is the type of the last event a subscriber gets when it fell behind and was cut off.
// It is never stored and has Seq 0; its data.dropped_after is the seq to resume from.
const TypeLagged = "bus.lagged"

// File names inside the state directory.
const (
	LogName     = "events.log"
	RotatedName = "events.log.1"
)

// Types of the events the bus itself publishes.
const (
	// TypeSuppressed says how many events of one source the rate limit kept out in the last
	// interval: data.source, data.count, data.interval.
	TypeSuppressed = api.TypeBusSuppressed
	// TypeDegraded says that a part of the daemon cannot write to disk: data.component,
	// data.error. It is kept in memory (Faults) even when it cannot be stored.
	TypeDegraded = api.TypeDaemonDegraded
	// TypeRecovered says that a part that could not write to disk can again: data.component.
	TypeRecovered = api.TypeDaemonRecovered
)

// Defaults for Options, and the bounds of an event.
const (
	DefaultMaxBytes         = 16 << 20
	DefaultSubscriberBuffer = 4096
	// MaxEventBytes is the most an event takes in the log; the data of a larger one is cut
	// and marked with data.truncated.
	MaxEventBytes = 64 << 10
	// MaxListItems is how many items of a list (errors, say), or lines of a text, an event
	// keeps; the rest are summed up as "… and N more".
	MaxListItems = 50
	// MaxStringBytes is the longest string an event's data keeps whole once the event is
	// over the size where its data is bounded.
	MaxStringBytes = 8 << 10
	// DefaultSourceRate and DefaultSourceBurst bound the events of one source (a unit, or the
	// type of an event of no unit): a token bucket, each event costing one token per KiB
	// (at least one).
	DefaultSourceRate  = 20
	DefaultSourceBurst = 200
	// DefaultInterval is how often suppressed and coalesced events are summed up.
	DefaultInterval = 10 * time.Second
	// DefaultRetryInterval is how often a log that cannot be written is tried again when no
	// event comes.
	DefaultRetryInterval = 2 * time.Second
	// Unlimited as Options.SourceRate turns the rate limit off.
	Unlimited = -1
)

// boundAbove is the size of its data past which an event's lists, lines and strings are
// bounded (below it, an event is stored as it is).
const boundAbove = 4 << 10

// DefaultCoalesce lists the event types that are coalesced by default: refusals that anyone
// can cause at will.
var DefaultCoalesce = []string{"unit.notify_refused", "unit.ipc_error", "api.denied"}

// Options tune a Bus. The zero value is usable.
type Options struct {
	// MaxBytes caps events.log: a write that would take it past MaxBytes first renames it to
	// events.log.1 (replacing the older one). Default 16 MiB, so at most about twice that is kept.
	MaxBytes int64
	// SubscriberBuffer is how many events a subscriber may fall behind before it is cut off with a
	// bus.lagged event. Default 4096.
	SubscriberBuffer int
	// Now is the clock that stamps events. Default time.Now.
	Now func() time.Time
	// Logf, if set, receives the errors Publish cannot return (a failed append or rotation).
	Logf func(format string, args ...any)
	// SourceRate (events per second) and SourceBurst bound each source; defaults 20 and 200.
	// Unlimited turns the limit off. Events of type daemon.* and bus.* are never limited.
	SourceRate  float64
	SourceBurst float64
	// Interval is how often the events kept out by the rate limit are summed up in a
	// bus.suppressed event, and repeats of a coalesced type in one event; default 10s.
	Interval time.Duration
	// Coalesce lists the event types of which only the first in an interval is published at
	// once, per unit; the repeats are counted and published once at the end of the interval,
	// as the last of them with data.repeated. Default DefaultCoalesce; empty slice: none.
	Coalesce []string
	// RetryInterval is how often a log that cannot be written is tried again; default 2s.
	RetryInterval time.Duration
}

// Bus is a replayable event bus backed by STATE/events.log. It is safe for concurrent use.
type Bus struct {
	dir  string
	opts Options

	mu      sync.Mutex
	f       *os.File                   // events.log, O_APPEND; nil after Close
	size    int64                      // bytes of complete events in f
	torn    bool                       // f may end with a partial line that could not be cut
	seq     uint64                     // last stored seq
	subs    map[*Subscription]struct{} // every open subscription
	closed  bool
	limiter limiter
	faults  map[string]*Fault // by component
	stop    chan struct{}     // closed by Close: ends the ticker goroutine
	kick    chan struct{}     // a fault began: the ticker retries at RetryInterval
	wake    chan struct{}     // the limiter was idle and holds something now: the sleeping ticker starts

	wg sync.WaitGroup // subscription goroutines and the ticker goroutine
}

// Fault is a part of the daemon that cannot write to disk.
type Fault struct {
	Component string    `json:"component"` // "events", "registry", "logs"
	Error     string    `json:"error"`
	Since     time.Time `json:"since"`
	Event     Event     `json:"-"` // the daemon.degraded event (Seq 0 if it could not be stored)
}

// Open opens (creating it if needed) the event log in dir and continues its sequence. A torn last
// line, left by a process killed in the middle of a write, is cut away, so the sequence goes on
// without a gap from the last complete event.
func Open(dir string, opts Options) (*Bus, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = DefaultSubscriberBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SourceRate == 0 {
		opts.SourceRate = DefaultSourceRate
	}
	if opts.SourceBurst <= 0 {
		opts.SourceBurst = DefaultSourceBurst
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Coalesce == nil {
		opts.Coalesce = DefaultCoalesce
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w (check --state and its permissions)", err)
	}
	b := &Bus{dir: dir, opts: opts, subs: make(map[*Subscription]struct{})}
	path := filepath.Join(dir, LogName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the event log: %w (check --state and its permissions)", err)
	}
	last, good, err := scanLog(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read the event log %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Size() != good {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut the torn tail of the event log %s: %w", path, err)
		}
	}
	if last == 0 {
		// The current log is empty (new, or just rotated): the sequence goes on from the older one.
		if old, err := os.Open(filepath.Join(dir, RotatedName)); err == nil {
			last, _, err = scanLog(old)
			old.Close()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("read the event log %s: %w", filepath.Join(dir, RotatedName), err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("open the event log: %w", err)
		}
	}
	b.f, b.size, b.seq = f, good, last
	b.limiter = newLimiter(opts, opts.Now())
	b.faults = make(map[string]*Fault)
	b.stop = make(chan struct{})
	b.kick = make(chan struct{}, 1)
	b.wake = make(chan struct{}, 1)
	b.wg.Add(1)
	go b.tick()
	return b, nil
}

// tick sums up suppressed and coalesced events once per interval and, while
// the event log cannot be written, tries it again every RetryInterval, even
// when no event comes. When there is nothing to sum up or retry it sleeps
// until an event is limited or coalesced: an idle daemon does not wake.
func (b *Bus) tick() {
	defer b.wg.Done()
	t := time.NewTimer(b.opts.Interval)
	defer t.Stop()
	asleep := false
	for {
		select {
		case <-b.stop:
			return
		case <-b.kick:
			asleep = false
			t.Reset(min(b.opts.Interval, b.opts.RetryInterval))
		case <-b.wake:
			if asleep {
				asleep = false
				t.Reset(b.opts.Interval)
			}
		case <-t.C:
			next := b.opts.Interval
			b.mu.Lock()
			if !b.closed {
				b.flushLocked(b.opts.Now())
				if b.faults[componentEvents] != nil {
					b.retryLocked()
				}
				if b.faults[componentEvents] != nil {
					next = min(next, b.opts.RetryInterval)
				}
			}
			asleep = b.closed || (b.faults[componentEvents] == nil && b.limiter.idle())
			b.mu.Unlock()
			if !asleep {
				t.Reset(next)
			}
		}
	}
}

// scanLog reads a log from the start and returns the highest seq of its complete lines and the
// offset just past the last complete line (a trailing line without '\n' is torn).
func scanLog(f *os.File) (last uint64, good int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return last, off, nil
			}
			return 0, 0, err
		}
		off += int64(len(line))
		if seq, ok := lineSeq(line); ok && seq > last {
			last = seq
		}
	}
}

// seqPrefix is how every stored line starts: Event's first field.
const seqPrefix = `{"seq":`

// lineSeq reads the seq of a stored line without decoding the rest of it.
func lineSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(seqPrefix))
	if !ok {
		var e Event
		if json.Unmarshal(line, &e) != nil {
			return 0, false
		}
		return e.Seq, e.Seq > 0
	}
	end := bytes.IndexAny(rest, ",}")
	if end <= 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return seq, err == nil && seq > 0
}

// LastSeq is the seq of the last published event (0 when none ever was).
func (b *Bus) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// Publish stamps e with the next seq and the current time, appends it to the log in a single
// write, and hands it to every matching subscriber. It never waits for a subscriber: one whose
// buffer is full is cut off with a bus.lagged event. After Close, Publish returns e unchanged.
// Data is stored as JSON, so a replayed event has JSON types (numbers are float64).
//
// Publish bounds what it is given: data past MaxEventBytes is cut (data.truncated); lists
// and texts keep MaxListItems items; a source over its rate has its events counted instead
// (bus.suppressed, once per interval); a coalesced type is published once per interval and
// unit, with the count of repeats. Such an event is returned with Seq 0 and not published.
// An event that cannot be written to the log is sent live, unstored (Seq 0), and never takes
// a seq: the sequence stays gap-free; the failure is published as daemon.degraded.
func (b *Bus) Publish(e Event) Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return e
	}
	now := b.opts.Now()
	b.flushLocked(now)
	e.Data = boundData(e.Data)
	idle := b.limiter.idle()
	admitted := b.limiter.admit(e, now)
	if idle && !b.limiter.idle() {
		select {
		case b.wake <- struct{}{}: // the tick has something to sum up or forget
		default:
		}
	}
	if !admitted {
		return e
	}
	return b.publishLocked(e, now)
}

// publishLocked stores and delivers one event whose data is bounded.
func (b *Bus) publishLocked(e Event, now time.Time) Event {
	e.Time = now.Round(0)
	e.Unstored = false
	e.Seq = b.seq + 1
	line, err := json.Marshal(e)
	if err != nil {
		e.Data = map[string]any{"marshal_error": err.Error()}
		line, _ = json.Marshal(e)
	}
	line = append(line, '\n')
	if err := b.appendLocked(line); err != nil {
		e.Seq, e.Unstored = 0, true
		b.deliverLocked(e)
		b.faultLocked(componentEvents, err, now)
		return e
	}
	b.seq = e.Seq
	b.deliverLocked(e)
	if b.faults[componentEvents] != nil && e.Type != TypeRecovered {
		b.faultLocked(componentEvents, nil, now)
	}
	return e
}

func (b *Bus) deliverLocked(e Event) {
	for s := range b.subs {
		s.offerLocked(e)
	}
}

// componentEvents is the event log's name in Faults.
const componentEvents = "events"

// ReportFault tells the bus that a part of the daemon (component: "registry", "logs") cannot
// write (err != nil) or can again (err == nil). The first failure publishes daemon.degraded
// and the recovery daemon.recovered; repeats change nothing.
func (b *Bus) ReportFault(component string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.faultLocked(component, err, b.opts.Now())
}

func (b *Bus) faultLocked(component string, err error, now time.Time) {
	f := b.faults[component]
	switch {
	case err != nil && f == nil:
		f = &Fault{Component: component, Error: err.Error(), Since: now}
		b.faults[component] = f
		select {
		case b.kick <- struct{}{}:
		default:
		}
		b.logf("the %s log cannot be written: %v (the daemon keeps running; check free space in the state directory)", component, err)
		f.Event = b.publishLocked(Event{Type: TypeDegraded, Data: dataOf(Degraded{
			Component: component,
			Error:     err.Error(),
			Hint:      "the daemon keeps running; free space in the state directory and it recovers by itself",
		})}, now)
	case err == nil && f != nil:
		delete(b.faults, component)
		b.logf("the %s log can be written again", component)
		b.publishLocked(recovered(component, f.Since), now)
	}
}

// retryLocked tries the failed event log again by storing daemon.recovered.
func (b *Bus) retryLocked() {
	f := b.faults[componentEvents]
	now := b.opts.Now()
	e := b.publishLocked(recovered(componentEvents, f.Since), now)
	if !e.Unstored {
		delete(b.faults, componentEvents)
		b.logf("the %s log can be written again", componentEvents)
	}
}

// Faults returns the parts of the daemon that cannot write to disk now, by component; empty
// when all is well. The status header and sd_notify STATUS= show them.
func (b *Bus) Faults() []Fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Fault, 0, len(b.faults))
	for _, f := range b.faults {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Component < out[j].Component })
	return out
}

// FaultText sums up Faults in one line for a status header or sd_notify STATUS=: "" when
// all is well, else "degraded: events: ERROR; registry: ERROR".
func (b *Bus) FaultText() string {
	faults := b.Faults()
	if len(faults) == 0 {
		return ""
	}
	parts := make([]string, len(faults))
	for i, f := range faults {
		parts[i] = f.Component + ": " + f.Error
	}
	return "degraded: " + strings.Join(parts, "; ")
}

// flushLocked publishes what the limiter summed up, once its interval is over.
func (b *Bus) flushLocked(now time.Time) {
	for _, e := range b.limiter.flush(now) {
		b.publishLocked(e, now)
	}
}

// appendLocked writes one line to the log, rotating first when it would pass MaxBytes.
func (b *Bus) appendLocked(line []byte) error {
	if b.f == nil {
		return errors.New("the event log is closed")
	}
	if b.size > 0 && b.size+int64(len(line)) > b.opts.MaxBytes {
		b.rotateLocked()
	}
	if b.torn {
		// A partial line is left at the end: end it, so it stays a line of its own that
		// does not decode.
		if _, err := b.f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("append to %s: %w", b.f.Name(), err)
		}
		b.torn = false
		if st, err := b.f.Stat(); err == nil {
			b.size = st.Size()
		}
	}
	n, err := b.f.Write(line)
	if err != nil {
		// Never leave a partial line for the next one to be glued to.
		if n > 0 {
			if terr := b.f.Truncate(b.size); terr != nil {
				b.torn = true
			}
		}
		return fmt.Errorf("append to %s: %w", b.f.Name(), err)
	}
	b.size += int64(n)
	return nil
}

func (b *Bus) rotateLocked() {
	cur := filepath.Join(b.dir, LogName)
	if err := os.Rename(cur, filepath.Join(b.dir, RotatedName)); err != nil {
		b.logf("rotate the event log: %v", err)
		return
	}
	f, err := os.OpenFile(cur, os.O_RDWR|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		b.logf("rotate the event log: %v (keeping the rotated file open)", err)
		// Keep appending to the renamed file rather than losing events; the next rotation retries.
		return
	}
	b.f.Close()
	b.f, b.size = f, 0
}

func (b *Bus) logf(format string, args ...any) {
	if b.opts.Logf != nil {
		b.opts.Logf(format, args...)
	}
}

// closeDrain bounds how long Close lets subscribers take the events already queued for them.
const closeDrain = time.Second

// Close ends every subscription, after it got the events already published (waiting at most a
// second for subscribers that do not read), and closes the log. Publish after Close does nothing.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.stop)
	for s := range b.subs {
		s.wakeLocked()
	}
	var err error
	if b.f != nil {
		err = b.f.Close()
		b.f = nil
	}
	b.mu.Unlock()
	// Subscribers get what is already queued for them (the last events before a shutdown are the
	// interesting ones), but a subscriber that does not read is not waited for long.
	drained := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(closeDrain):
		b.mu.Lock()
		for s := range b.subs {
			s.endLocked()
		}
		b.mu.Unlock()
		<-drained
	}
	if err != nil {
		return fmt.Errorf("close the event log: %w", err)
	}
	return nil
}

// Filter selects events. The zero Filter matches every event.
type Filter struct {
	Unit  string   // exact unit name; "" = any
	Types []string // any of: an exact type, or a prefix written "unit.*" or "unit."; empty = any
}

// Match reports whether e passes the filter.
func (f Filter) Match(e Event) bool {
	if f.Unit != "" && e.Unit != f.Unit {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(e.Type, p) {
				return true
			}
		} else if strings.HasSuffix(t, ".") {
			if strings.HasPrefix(e.Type, t) {
				return true
			}
		} else if e.Type == t {
			return true
		}
	}
	return false
}

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
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one thing that happened, as stored in the log and sent to subscribers (DESIGN §7).
type Event struct {
	Seq  uint64         `json:"seq"`
	Time time.Time      `json:"time"` // RFC3339Nano on the wire
	Type string         `json:"type"` // "unit.started", …
	Unit string         `json:"unit,omitempty"`
	PID  int            `json:"pid,omitempty"`
	Data map[string]any `json:"data,omitempty"`
}

// TypeLagged is the type of the last event a subscriber gets when it fell behind and was cut off.
// It is never stored and has Seq 0; its data.dropped_after is the seq to resume from.
const TypeLagged = "bus.lagged"

// File names inside the state directory.
const (
	LogName     = "events.log"
	RotatedName = "events.log.1"
)

// Defaults for Options.
const (
	DefaultMaxBytes         = 16 << 20
	DefaultSubscriberBuffer = 4096
)

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
}

// Bus is a replayable event bus backed by STATE/events.log. It is safe for concurrent use.
type Bus struct {
	dir  string
	opts Options

	mu     sync.Mutex
	f      *os.File                   // events.log, O_APPEND; nil after Close
	size   int64                      // bytes of complete events in f
	seq    uint64                     // last assigned seq
	subs   map[*Subscription]struct{} // every open subscription
	closed bool

	wg sync.WaitGroup // subscription goroutines
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
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("bus: create state directory: %w (check --state and its permissions)", err)
	}
	b := &Bus{dir: dir, opts: opts, subs: make(map[*Subscription]struct{})}
	path := filepath.Join(dir, LogName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("bus: open event log: %w (check --state and its permissions)", err)
	}
	last, good, err := scanLog(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bus: read event log %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Size() != good {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("bus: cut torn tail of event log %s: %w", path, err)
		}
	}
	if last == 0 {
		// The current log is empty (new, or just rotated): the sequence goes on from the older one.
		if old, err := os.Open(filepath.Join(dir, RotatedName)); err == nil {
			last, _, err = scanLog(old)
			old.Close()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("bus: read event log %s: %w", filepath.Join(dir, RotatedName), err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("bus: open event log: %w", err)
		}
	}
	b.f, b.size, b.seq = f, good, last
	return b, nil
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
// buffer is full is cut off with a bus.lagged event. A failed append is reported through
// Options.Logf; the event is still delivered live. After Close, Publish returns e unchanged.
// Data is stored as JSON, so a replayed event has JSON types (numbers are float64).
func (b *Bus) Publish(e Event) Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return e
	}
	b.seq++
	e.Seq = b.seq
	e.Time = b.opts.Now().Round(0)
	line, err := json.Marshal(e)
	if err != nil {
		e.Data = map[string]any{"marshal_error": err.Error()}
		line, _ = json.Marshal(e)
	}
	line = append(line, '\n')
	b.appendLocked(line)
	for s := range b.subs {
		s.offerLocked(e)
	}
	return e
}

// appendLocked writes one line to the log, rotating first when it would pass MaxBytes.
func (b *Bus) appendLocked(line []byte) {
	if b.f == nil {
		return
	}
	if b.size > 0 && b.size+int64(len(line)) > b.opts.MaxBytes {
		b.rotateLocked()
	}
	n, err := b.f.Write(line)
	if err != nil {
		// Never leave a partial line for the next one to be glued to.
		if n > 0 {
			_ = b.f.Truncate(b.size)
		}
		b.logf("bus: append event %d to %s: %v (check free space in the state directory)", b.seq, b.f.Name(), err)
		return
	}
	b.size += int64(n)
}

func (b *Bus) rotateLocked() {
	cur := filepath.Join(b.dir, LogName)
	if err := os.Rename(cur, filepath.Join(b.dir, RotatedName)); err != nil {
		b.logf("bus: rotate event log: %v", err)
		return
	}
	f, err := os.OpenFile(cur, os.O_RDWR|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		b.logf("bus: rotate event log: %v (keeping the rotated file open)", err)
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
		return fmt.Errorf("bus: close event log: %w", err)
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

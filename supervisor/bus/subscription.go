package bus

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Subscription is a stream of events from Subscribe. Each subscription has one goroutine that
// sends the stored events, then the live ones Publish queued for it; Publish only ever appends to
// that bounded queue, so it never waits for the subscriber.
type Subscription struct {
	bus    *Bus
	filter Filter
	follow bool
	buffer int
	out    chan Event
	wake   chan struct{} // capacity 1: "the queue changed"
	done   chan struct{} // closed by Close, and by Bus.Close for a subscriber that does not read
	exited chan struct{} // closed when the goroutine has ended
	once   sync.Once

	// Guarded by bus.mu.
	queue   []Event // live events not yet sent, queue[head:]
	head    int
	lagged  bool   // cut off: no more events are queued; bus.lagged follows the queued ones
	dropped uint64 // data.dropped_after of that bus.lagged event

	// held counts the events the goroutine took from the queue and has not
	// begun to send: they count as queued for the cutoff.
	held atomic.Int32
}

// replaySource is a stored log opened when a subscription starts, read up to limit bytes.
type replaySource struct {
	f     *os.File
	limit int64 // -1 = the whole file
}

// Subscribe returns the stored events with seq > since that match f, then, when follow is set,
// the live ones, with no gap and no duplicate between the two. A since older than the oldest kept
// event replays from the oldest kept one (the log is size-capped). The subscription's channel is
// closed after the stored events (follow false), or on Close, Bus.Close or a lag cutoff, which
// is announced by a last event of type bus.lagged.
func (b *Bus) Subscribe(since uint64, f Filter, follow bool) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("subscribe to events: the daemon is shutting down")
	}
	upTo := b.seq
	var srcs []replaySource
	if since < upTo {
		var err error
		if srcs, err = b.openStoredLocked(); err != nil {
			return nil, err
		}
	}
	s := &Subscription{
		bus:    b,
		filter: f,
		follow: follow,
		buffer: b.opts.SubscriberBuffer,
		out:    make(chan Event),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	if follow {
		// The faults of a log that cannot be written are kept in memory: a new follower
		// learns of them even though they are not in the log.
		for _, comp := range sortedKeys(b.faults) {
			if e := b.faults[comp].Event; e.Unstored && f.Match(e) {
				s.queue = append(s.queue, e)
			}
		}
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	go s.run(srcs, since, upTo)
	return s, nil
}

// openStoredLocked opens events.log.1 and events.log as they are now. Held open, they stay
// readable across a rotation; the current one is read only up to its present size.
func (b *Bus) openStoredLocked() ([]replaySource, error) {
	var srcs []replaySource
	if old, err := os.Open(filepath.Join(b.dir, RotatedName)); err == nil {
		srcs = append(srcs, replaySource{f: old, limit: -1})
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("subscribe to events: open the event log: %w", err)
	}
	if b.f != nil {
		cur, err := os.Open(b.f.Name())
		if err != nil {
			for _, src := range srcs {
				src.f.Close()
			}
			return nil, fmt.Errorf("subscribe to events: open the event log: %w", err)
		}
		srcs = append(srcs, replaySource{f: cur, limit: b.size})
	}
	return srcs, nil
}

// C is the subscription's channel. It is closed at the end of the stream.
func (s *Subscription) C() <-chan Event { return s.out }

// Close ends the subscription and closes its channel. It is idempotent and returns once the
// subscription's goroutine has ended.
func (s *Subscription) Close() {
	s.once.Do(func() { close(s.done) })
	<-s.exited
}

// offerLocked queues a published event for the subscription without ever waiting. When the
// queue is full the subscription is cut off: it stops receiving, and its goroutine sends what is
// queued, then bus.lagged, then closes the channel.
func (s *Subscription) offerLocked(e Event) {
	if !s.follow || s.lagged || !s.filter.Match(e) {
		return
	}
	if len(s.queue)-s.head+int(s.held.Load()) >= s.buffer {
		s.lagged, s.dropped = true, e.Seq-1
	} else {
		if len(s.queue) == cap(s.queue) && s.head > 0 {
			n := copy(s.queue, s.queue[s.head:])
			clear(s.queue[n:])
			s.queue, s.head = s.queue[:n], 0
		}
		s.queue = append(s.queue, e)
	}
	s.wakeLocked()
}

// wakeLocked makes the subscription's goroutine look at its state again.
func (s *Subscription) wakeLocked() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// endLocked tells the subscription's goroutine to stop (Bus.Close).
func (s *Subscription) endLocked() {
	delete(s.bus.subs, s)
	s.once.Do(func() { close(s.done) })
}

func (s *Subscription) run(srcs []replaySource, since, upTo uint64) {
	b := s.bus
	defer b.wg.Done()
	defer close(s.exited)
	defer close(s.out)
	defer func() {
		b.mu.Lock()
		delete(b.subs, s)
		s.queue, s.head = nil, 0
		b.mu.Unlock()
	}()
	ok := s.replayStored(srcs, since, upTo)
	for _, src := range srcs {
		src.f.Close()
	}
	if !ok || !s.follow {
		return
	}
	// Events are taken from the queue in batches: one hold of the bus's
	// lock for up to sendBatch of them, not one each, while the publisher
	// and every other subscription want it too.
	batch := make([]Event, 0, sendBatch)
	for {
		b.mu.Lock()
		if s.head < len(s.queue) {
			n := min(len(s.queue)-s.head, sendBatch)
			batch = append(batch[:0], s.queue[s.head:s.head+n]...)
			clear(s.queue[s.head : s.head+n])
			s.head += n
			if s.head == len(s.queue) {
				s.queue, s.head = s.queue[:0], 0
			}
			s.held.Store(int32(n))
			b.mu.Unlock()
			for i := range batch {
				s.held.Add(-1)
				if !s.send(batch[i]) {
					return
				}
				batch[i] = Event{}
			}
			continue
		}
		lagged, dropped, closed := s.lagged, s.dropped, b.closed
		b.mu.Unlock()
		if lagged {
			s.send(lagEvent(dropped, b.opts.Now()))
			return
		}
		if closed {
			return
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// sendBatch is how many queued events a subscription takes at once; those
// not yet sent still count as queued when a subscriber that falls behind is
// cut off (SubscriberBuffer).
const sendBatch = 64

func lagEvent(after uint64, now time.Time) Event {
	return Event{
		Time: now.Round(0),
		Type: TypeLagged,
		Data: map[string]any{
			"dropped_after": after,
			"hint":          "the subscriber fell behind; subscribe again with since=dropped_after",
		},
	}
}

// send delivers one event, waiting for the subscriber (this is the subscription's own
// goroutine); false once the subscription is closed.
func (s *Subscription) send(e Event) bool {
	select {
	case s.out <- e:
		return true
	case <-s.done:
		return false
	}
}

// replayStored sends the stored events in (since, upTo] that match the filter; lines that do not
// decode are skipped. It reports false when the subscription was closed meanwhile.
func (s *Subscription) replayStored(srcs []replaySource, since, upTo uint64) bool {
	for _, src := range srcs {
		var rd io.Reader = src.f
		if src.limit >= 0 {
			rd = io.LimitReader(src.f, src.limit)
		}
		r := bufio.NewReaderSize(rd, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				seq, ok := lineSeq(line)
				if ok && seq > upTo {
					return true
				}
				if ok && seq > since {
					var e Event
					if json.Unmarshal(line, &e) == nil && s.filter.Match(e) && !s.send(e) {
						return false
					}
				}
			}
			if err != nil {
				break
			}
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

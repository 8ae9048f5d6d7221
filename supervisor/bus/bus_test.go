package bus

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Environment of the re-executed test binary acting as a publisher process.
const (
	helperEnv    = "OPSVC_BUS_TEST_HELPER"
	helperDirEnv = "OPSVC_BUS_TEST_DIR"
	helperMaxEnv = "OPSVC_BUS_TEST_MAX_BYTES"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "publish" {
		os.Exit(helperPublish())
	}
	goleak.VerifyTestMain(m)
}

// helperPublish publishes forever, printing each seq once its event is stored.
func helperPublish() int {
	max, _ := strconv.ParseInt(os.Getenv(helperMaxEnv), 10, 64)
	b, err := Open(os.Getenv(helperDirEnv), Options{MaxBytes: max, SourceRate: Unlimited})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	pad := strings.Repeat("x", 300)
	for i := 0; ; i++ {
		e := b.Publish(Event{Type: "test.tick", Unit: "helper", Data: map[string]any{"i": i, "pad": pad}})
		fmt.Fprintln(w, e.Seq)
		if i%16 == 0 {
			w.Flush()
		}
	}
}

const waitFor = 10 * time.Second

func openT(t *testing.T, dir string, opts Options) *Bus {
	t.Helper()
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// collect reads a subscription until its channel closes.
func collect(t *testing.T, s *Subscription) []Event {
	t.Helper()
	var got []Event
	timeout := time.After(waitFor)
	for {
		select {
		case e, ok := <-s.C():
			if !ok {
				return got
			}
			got = append(got, e)
		case <-timeout:
			t.Fatalf("subscription not closed after %v; got %d events", waitFor, len(got))
		}
	}
}

// next reads one event or fails.
func next(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case e, ok := <-s.C():
		if !ok {
			t.Fatal("subscription closed early")
		}
		return e
	case <-time.After(waitFor):
		t.Fatalf("no event after %v", waitFor)
	}
	return Event{}
}

func seqs(es []Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// wantConsecutive checks es are seq from, from+1, …, to.
func wantConsecutive(t *testing.T, es []Event, from, to uint64) {
	t.Helper()
	if uint64(len(es)) != to-from+1 {
		t.Fatalf("got %d events (%v…), want seq %d..%d", len(es), firstSeqs(es), from, to)
	}
	for i, e := range es {
		if e.Seq != from+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d (seqs %v…)", i, e.Seq, from+uint64(i), firstSeqs(es))
		}
	}
}

func firstSeqs(es []Event) []uint64 {
	if len(es) > 20 {
		es = es[:20]
	}
	return seqs(es)
}

func TestPublishAssignsSeqAndTime(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	b := openT(t, t.TempDir(), Options{Now: func() time.Time { return now }})
	e := b.Publish(Event{Seq: 99, Type: "unit.started", Unit: "web", PID: 42})
	if e.Seq != 1 || !e.Time.Equal(now) || b.LastSeq() != 1 {
		t.Fatalf("Publish = seq %d time %v, LastSeq %d; want 1, %v, 1", e.Seq, e.Time, b.LastSeq(), now)
	}
	raw, err := os.ReadFile(filepath.Join(b.dir, LogName))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"time":"2026-11-25T10:00:00.123456789Z","type":"unit.started","unit":"web","pid":42}` + "\n"
	if string(raw) != want {
		t.Fatalf("log =\n%s\nwant\n%s", raw, want)
	}
}

func TestSeqGapFreeAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		b, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			want := uint64(round*5 + i + 1)
			if e := b.Publish(Event{Type: "t"}); e.Seq != want {
				t.Fatalf("round %d: seq %d, want %d", round, e.Seq, want)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b := openT(t, dir, Options{})
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantConsecutive(t, collect(t, s), 1, 15)
}

func TestReplaySinceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		b.Publish(Event{Type: "unit.started", Unit: "u" + strconv.Itoa(i), Data: map[string]any{"i": i}})
	}
	b.Close()

	b = openT(t, dir, Options{})
	s, err := b.Subscribe(7, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, s)
	wantConsecutive(t, got, 8, 10)
	if got[0].Unit != "u7" || got[0].Data["i"] != float64(7) || got[0].Time.IsZero() {
		t.Fatalf("replayed event = %+v, want unit u7, data.i 7 and a time", got[0])
	}
}

func TestTornLastLineIsCut(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b.Publish(Event{Type: "t"})
	}
	b.Close()
	path := filepath.Join(dir, LogName)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":4,"time":"2026-11-`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b = openT(t, dir, Options{})
	if b.LastSeq() != 3 {
		t.Fatalf("LastSeq = %d, want 3", b.LastSeq())
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("torn tail not cut: log is\n%s", after)
	}
	if e := b.Publish(Event{Type: "t"}); e.Seq != 4 {
		t.Fatalf("next seq %d, want 4", e.Seq)
	}
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantConsecutive(t, collect(t, s), 1, 4)
}

func TestFilter(t *testing.T) {
	tests := []struct {
		f    Filter
		e    Event
		want bool
	}{
		{Filter{}, Event{Type: "x"}, true},
		{Filter{Unit: "web"}, Event{Type: "x", Unit: "web"}, true},
		{Filter{Unit: "web"}, Event{Type: "x", Unit: "webby"}, false},
		{Filter{Types: []string{"unit.started"}}, Event{Type: "unit.started"}, true},
		{Filter{Types: []string{"unit.started"}}, Event{Type: "unit.stopped"}, false},
		{Filter{Types: []string{"unit.*"}}, Event{Type: "unit.stopped"}, true},
		{Filter{Types: []string{"unit."}}, Event{Type: "unit.stopped"}, true},
		{Filter{Types: []string{"unit."}}, Event{Type: "units.x"}, false},
		{Filter{Types: []string{"unit"}}, Event{Type: "unit.stopped"}, false},
		{Filter{Types: []string{"chain.*", "daemon.ready"}}, Event{Type: "daemon.ready"}, true},
		{Filter{Unit: "web", Types: []string{"unit.*"}}, Event{Type: "unit.started", Unit: "db"}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Match(tt.e); got != tt.want {
			t.Errorf("%+v.Match(%+v) = %v, want %v", tt.f, tt.e, got, tt.want)
		}
	}
}

func TestFilteredReplayAndFollow(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	for i := range 12 {
		unit := []string{"web", "db"}[i%2]
		typ := []string{"unit.started", "unit.stopped", "chain.created"}[i%3]
		b.Publish(Event{Type: typ, Unit: unit})
	}
	s, err := b.Subscribe(0, Filter{Unit: "web", Types: []string{"unit.*"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// web: seq 1,3,5,7,9,11; types by (seq-1)%3: 1 started, 3 chain, 5 stopped, 7 started, 9 chain, 11 stopped.
	var got []uint64
	for range 4 {
		got = append(got, next(t, s).Seq)
	}
	if fmt.Sprint(got) != "[1 5 7 11]" {
		t.Fatalf("filtered replay = %v, want [1 5 7 11]", got)
	}
	b.Publish(Event{Type: "unit.started", Unit: "db"})
	b.Publish(Event{Type: "chain.created", Unit: "web"})
	b.Publish(Event{Type: "unit.ready", Unit: "web"})
	if e := next(t, s); e.Seq != 15 || e.Type != "unit.ready" {
		t.Fatalf("live event = %+v, want seq 15 unit.ready", e)
	}
}

// TestFollowNoGapNoDuplicate subscribes while other goroutines publish: the stored and the live
// parts must join exactly.
func TestFollowNoGapNoDuplicate(t *testing.T) {
	b := openT(t, t.TempDir(), Options{SourceRate: Unlimited})
	for range 200 {
		b.Publish(Event{Type: "before"})
	}
	const live = 2000
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			<-start
			for range live / 4 {
				b.Publish(Event{Type: "during"})
			}
		})
	}
	close(start)
	s, err := b.Subscribe(50, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Event
	for len(got) < 200+live-50 {
		got = append(got, next(t, s))
	}
	wg.Wait()
	wantConsecutive(t, got, 51, 200+live)
}

func TestConcurrentPublishers(t *testing.T) {
	b := openT(t, t.TempDir(), Options{SourceRate: Unlimited})
	s, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const workers, each = 8, 300
	var mu sync.Mutex
	seen := make(map[uint64]bool)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := b.Publish(Event{Type: "t", Data: map[string]any{"w": w, "i": i}})
				mu.Lock()
				dup := seen[e.Seq]
				seen[e.Seq] = true
				mu.Unlock()
				if dup {
					t.Errorf("seq %d assigned twice", e.Seq)
				}
			}
		})
	}
	var got []Event
	for len(got) < workers*each {
		got = append(got, next(t, s))
	}
	wg.Wait()
	wantConsecutive(t, got, 1, workers*each)
	r, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantConsecutive(t, collect(t, r), 1, workers*each)
}

func TestLagCutoff(t *testing.T) {
	b := openT(t, t.TempDir(), Options{SubscriberBuffer: 4})
	slow, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range 50 {
			b.Publish(Event{Type: "t"})
			// fast keeps up; slow reads nothing until the end.
			select {
			case e := <-fast.C():
				if e.Seq != uint64(i+1) {
					t.Errorf("fast got %+v, want seq %d", e, i+1)
					return
				}
			case <-time.After(waitFor):
				t.Errorf("fast got no event %d", i+1)
				return
			}
		}
	}()
	select {
	case <-published:
	case <-time.After(waitFor):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	got := collect(t, slow)
	if len(got) < 2 {
		t.Fatalf("slow got %v, want some events then bus.lagged", got)
	}
	last := got[len(got)-1]
	events := got[:len(got)-1]
	if last.Type != TypeLagged || last.Seq != 0 {
		t.Fatalf("last event = %+v, want a bus.lagged with seq 0", last)
	}
	// The buffer holds 4, the subscription's goroutine may hold one more in hand.
	if n := len(events); n < 4 || n > 5 {
		t.Fatalf("slow got %d events before being cut off, want 4 or 5", n)
	}
	wantConsecutive(t, events, 1, uint64(len(events)))
	if d := last.Data["dropped_after"]; d != uint64(len(events)) {
		t.Fatalf("dropped_after = %v (%T), want %d", d, d, len(events))
	}
	if b.LastSeq() != 50 {
		t.Fatalf("LastSeq %d, want 50", b.LastSeq())
	}
}

func TestLagWhileReplaying(t *testing.T) {
	b := openT(t, t.TempDir(), Options{SubscriberBuffer: 3})
	for range 10 {
		b.Publish(Event{Type: "t"})
	}
	s, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Nobody reads: the replay waits, live events queue, the fourth live one cuts it off.
	for range 10 {
		b.Publish(Event{Type: "t"})
	}
	got := collect(t, s)
	last := got[len(got)-1]
	wantConsecutive(t, got[:len(got)-1], 1, 13)
	if last.Type != TypeLagged || last.Data["dropped_after"] != uint64(13) {
		t.Fatalf("last = %+v, want bus.lagged with dropped_after 13", last)
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	b, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b.Publish(Event{Type: "t"})
	}
	live, err := b.Subscribe(5, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	replaying, err := b.Subscribe(0, Filter{}, true) // nobody reads: stuck in the replay
	if err != nil {
		t.Fatal(err)
	}
	closedOne, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	closedOne.Close()
	closedOne.Close() // idempotent
	if _, ok := <-closedOne.C(); ok {
		t.Fatal("a closed subscription still delivers")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, live); len(got) != 0 {
		t.Fatalf("live subscription got %v after Close", got)
	}
	collect(t, replaying)
	if e := b.Publish(Event{Type: "t"}); e.Seq != 0 {
		t.Fatalf("Publish after Close assigned seq %d", e.Seq)
	}
	if _, err := b.Subscribe(0, Filter{}, false); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
	live.Close()
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const max = 2048
	b, err := Open(dir, Options{MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 100)
	for range 100 {
		b.Publish(Event{Type: "t", Data: map[string]any{"pad": pad}})
	}
	for _, name := range []string{LogName, RotatedName} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 || st.Size() > max {
			t.Fatalf("%s is %d bytes, want 1..%d", name, st.Size(), max)
		}
	}
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, s)
	if len(got) == 0 || got[0].Seq == 1 {
		t.Fatalf("replay from 0 = %v…, want to start at the oldest kept event, after 1", firstSeqs(got))
	}
	wantConsecutive(t, got, got[0].Seq, 100)
	b.Close()

	// A crash between the rename and the new file leaves no events.log: the seq still continues.
	if err := os.Rename(filepath.Join(dir, LogName), filepath.Join(dir, RotatedName)); err != nil {
		t.Fatal(err)
	}
	b = openT(t, dir, Options{MaxBytes: max})
	if e := b.Publish(Event{Type: "t"}); e.Seq != 101 {
		t.Fatalf("seq after reopen = %d, want 101", e.Seq)
	}
	s, err = b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	got = collect(t, s)
	if len(got) < 2 {
		t.Fatalf("replay after reopen = %v", seqs(got))
	}
	wantConsecutive(t, got, got[0].Seq, 101)
}

// TestReplayAcrossConcurrentRotation subscribes while publishing rotates the log underneath.
func TestReplayAcrossConcurrentRotation(t *testing.T) {
	b := openT(t, t.TempDir(), Options{MaxBytes: 64 << 10, SourceRate: Unlimited})
	for range 300 {
		b.Publish(Event{Type: "t"})
	}
	s, err := b.Subscribe(0, Filter{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := next(t, s)
	pad := strings.Repeat("r", 1000)
	// Several rotations happen before the subscriber reads on; its files stay open.
	for range 200 {
		b.Publish(Event{Type: "t", Data: map[string]any{"pad": pad}})
	}
	got := []Event{first}
	for len(got) < 500 {
		got = append(got, next(t, s))
	}
	wantConsecutive(t, got, 1, 500)
}

func TestSubscribeSinceBeyondLastSeq(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	b.Publish(Event{Type: "t"})
	s, err := b.Subscribe(7, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, s); len(got) != 0 {
		t.Fatalf("got %v, want nothing", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(file, "state"), Options{})
	if err == nil || strings.HasPrefix(err.Error(), "bus") || !strings.Contains(err.Error(), "create state directory") || !strings.Contains(err.Error(), "--state") {
		t.Fatalf("Open under a file: err = %v, want an error that names the state directory and --state, in the user's words", err)
	}
}

func TestPublishUnmarshalableData(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	e := b.Publish(Event{Type: "t", Data: map[string]any{"f": func() {}}})
	if e.Seq != 1 {
		t.Fatalf("seq %d", e.Seq)
	}
	s, err := b.Subscribe(0, Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, s)
	if len(got) != 1 || got[0].Data["marshal_error"] == nil {
		t.Fatalf("stored = %+v, want the event with data.marshal_error", got)
	}
}

func BenchmarkFanout(b *testing.B) {
	const subscribers = 10
	bus, err := Open(b.TempDir(), Options{SubscriberBuffer: 1 << 16, SourceRate: Unlimited})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	var wg sync.WaitGroup
	var lagged sync.Map
	for i := range subscribers {
		s, err := bus.Subscribe(0, Filter{}, true)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			n := 0
			for e := range s.C() {
				if e.Type == TypeLagged {
					lagged.Store(i, true)
					return
				}
				if n++; n == b.N {
					s.Close()
					return
				}
			}
		})
	}
	e := Event{Type: "unit.started", Unit: "web", PID: 1234, Data: map[string]any{"restarts": 3}}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		bus.Publish(e)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	n := 0
	lagged.Range(func(any, any) bool { n++; return true })
	b.ReportMetric(float64(n), "lagged-subs")
}

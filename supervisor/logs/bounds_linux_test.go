package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRingBoundedInBytes: a unit printing very long lines keeps at most RingBytes in memory,
// every unit together at most TotalBytes, and Forget gives a removed unit's bytes back.
func TestRingBoundedInBytes(t *testing.T) {
	l := newFiles(t, Options{FileMaxBytes: 256 << 10})
	w := l.Reader("long", StreamStdout, 0)
	chunk := []byte(strings.Repeat("x", 64<<10))
	for range 200 { // 200 lines of 1 MiB each
		for range 16 {
			w.Write(chunk)
		}
		w.Write([]byte("\n"))
	}
	w.Close()
	if got := l.UnitBytes("long"); got > DefaultRingBytes || got < DefaultRingBytes/2 {
		t.Fatalf("the unit keeps %d bytes, want between %d and %d", got, DefaultRingBytes/2, DefaultRingBytes)
	}
	lines := l.Tail("long", 0)
	for _, ln := range lines {
		if len(ln.Text) > MaxLineBytes || ln.Truncated != 1<<20-(MaxLineBytes-markerRoom) {
			t.Fatalf("a kept line has %d bytes and %d cut, want at most %d and the rest cut", len(ln.Text), ln.Truncated, MaxLineBytes)
		}
	}
	if len(lines) < 10 {
		t.Fatalf("%d lines kept, want the ring to hold many cut lines", len(lines))
	}
	l.Forget("long")
	if got := l.Bytes(); got != 0 {
		t.Fatalf("after Forget the rings keep %d bytes, want 0", got)
	}
	if got := l.UnitBytes("long"); got != 0 {
		t.Fatalf("a forgotten unit keeps %d bytes", got)
	}
}

func TestTotalBytesBound(t *testing.T) {
	const total = 256 << 10
	l := newFiles(t, Options{RingBytes: 64 << 10, TotalBytes: total})
	text := strings.Repeat("y", 1000)
	for i := range 5000 {
		l.Write(Line{Unit: fmt.Sprintf("u%d", i%40), Stream: StreamStdout, Text: text})
		if got := l.Bytes(); got > total {
			t.Fatalf("after %d lines the rings keep %d bytes, want at most %d", i+1, got, total)
		}
	}
	// The newest unit to print still has its last line.
	if got := l.Tail("u39", 1); len(got) != 1 {
		t.Fatalf("u39 keeps %d lines, want its last one", len(got))
	}
	var sum int64
	for i := range 40 {
		sum += l.UnitBytes(fmt.Sprintf("u%d", i))
	}
	if sum != l.Bytes() {
		t.Fatalf("units keep %d bytes in all, total says %d", sum, l.Bytes())
	}
}

// TestUnitQueueShare: a unit that floods a stalled sink loses its own lines past its share of
// the queue; another unit's lines still get through, and the drops are reported once with the
// count rather than per line.
func TestUnitQueueShare(t *testing.T) {
	fj := newFakeJournal(t)
	l, err := New(Options{JournalSocket: fj.path, QueueLen: 64, UnitQueueShare: 16, DropReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		l.Write(Line{Unit: "flood", Stream: StreamStdout, Text: fmt.Sprintf("f%d", i)})
	}
	for i := range 10 {
		l.Write(Line{Unit: "quiet", Stream: StreamStdout, Text: fmt.Sprintf("q%d", i)})
	}
	quiet := 0
	for quiet < 10 {
		e, _ := fj.recv(t)
		if strings.HasPrefix(e["MESSAGE"], "q") {
			quiet++
		}
	}
	if err := l.Close(); err != nil { // Close reports what is left
		t.Fatal(err)
	}
	if d := l.Dropped(); d < 4000 { // the socket's buffer takes some before it stalls
		t.Fatalf("%d lines dropped, want the flood past its share", d)
	}
	var reports []string
	for _, ln := range l.Tail("", 0) {
		if strings.Contains(ln.Text, "log lines dropped") {
			reports = append(reports, ln.Text)
		}
	}
	if len(reports) != 1 || !strings.Contains(reports[0], fmt.Sprintf("flood %d", l.Dropped())) || strings.Contains(reports[0], "quiet") {
		t.Fatalf("drop reports %q, want one naming flood with %d", reports, l.Dropped())
	}
}

// TestDropReportsPerInterval: a flood that lasts many report intervals yields at most one
// report per interval, and together they count every dropped line.
func TestDropReportsPerInterval(t *testing.T) {
	fj := newFakeJournal(t)
	const interval = 20 * time.Millisecond
	l, err := New(Options{JournalSocket: fj.path, QueueLen: 8, DropReportInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 200000 {
		l.Write(Line{Unit: "flood", Stream: StreamStdout, Text: fmt.Sprintf("f%d", i)})
	}
	fj.conn.Close() // journald goes away: what is queued fails fast
	if err := l.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	elapsed := time.Since(start)
	var reports int
	var counted uint64
	for _, ln := range l.Tail("", 0) {
		if strings.Contains(ln.Text, "log lines dropped") {
			reports++
			var n uint64
			fmt.Sscanf(ln.Text, "logs: %d", &n)
			counted += n
		}
	}
	if max := int(elapsed/interval) + 2; reports == 0 || reports > max {
		t.Fatalf("%d drop reports in %s, want 1..%d", reports, elapsed, max)
	}
	if counted != l.Dropped() {
		t.Fatalf("reports count %d dropped lines, Dropped says %d", counted, l.Dropped())
	}
}

// TestLogsOutliveRestart: lines written by one Logs are read back from the files by the next
// one on the same directory, and new lines follow them without duplicates.
func TestLogsOutliveRestart(t *testing.T) {
	dir := t.TempDir()
	l1, err := New(Options{JournalSocket: NoJournal, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 20 {
		st := StreamStdout
		if i%2 == 1 {
			st = StreamStderr
		}
		l1.Write(Line{Time: base.Add(time.Duration(i) * time.Minute), Unit: "web", Stream: st, Text: fmt.Sprintf("line %02d\\ok\nnext", i)})
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := newFiles(t, Options{Dir: dir})
	got := l2.Tail("web", 3)
	if want := "[line 17\\ok\nnext line 18\\ok\nnext line 19\\ok\nnext]"; fmt.Sprint(texts(got)) != want {
		t.Fatalf("after a restart Tail = %q, want %q", texts(got), want)
	}
	if !got[0].Time.Equal(base.Add(17*time.Minute)) || got[0].Stream != StreamStderr || got[0].Unit != "web" {
		t.Fatalf("line read back as %+v", got[0])
	}
	for _, tc := range []struct {
		name string
		q    Query
		want int
	}{
		{"n=0 is no lines", Query{N: 0}, 0},
		{"all", Query{N: -1}, 20},
		{"stderr", Query{N: -1, Stream: StreamStderr}, 10},
		{"since", Query{N: -1, Since: base.Add(15 * time.Minute)}, 5},
		{"until", Query{N: -1, Until: base.Add(4 * time.Minute)}, 5},
		{"grep", Query{N: -1, Grep: "line 1"}, 10},
		{"regexp", Query{N: 2, Match: regexp.MustCompile(`line 0[2-5]`)}, 2},
	} {
		if got := l2.Query("web", tc.q); len(got) != tc.want {
			t.Errorf("%s: %d lines, want %d", tc.name, len(got), tc.want)
		}
	}
	l2.Write(Line{Unit: "web", Stream: StreamStdout, Text: "after restart"})
	all := texts(l2.Tail("web", 0))
	if len(all) != 21 || all[0] != "line 00\\ok\nnext" || all[20] != "after restart" {
		t.Fatalf("after a restart and a new line the ring holds %d lines: first %q last %q", len(all), all[0], all[len(all)-1])
	}
	if got := l2.Query("nope", Query{N: 5}); got != nil {
		t.Fatalf("unknown unit: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.log")); err != nil {
		t.Fatal(err)
	}
}

// TestLogsOutliveRestartAcrossRotation: the lines from before a restart are read back from
// UNIT.log.1 when the file rotated since, without the new lines twice; once rotated away they
// are gone, and the new lines are still not doubled.
func TestLogsOutliveRestartAcrossRotation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		room    float64 // FileMaxBytes past the old file, in lines
		wantOld bool
	}{
		{"one rotation", 4.5, true},
		{"rotated away", 1.5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l1 := newFiles(t, Options{Dir: dir})
			for i := range 5 {
				l1.Write(Line{Unit: "web", Stream: StreamStdout, Text: fmt.Sprintf("old %d %s", i, strings.Repeat("o", 30))})
			}
			l1.Close()
			st, err := os.Stat(filepath.Join(dir, "web.log"))
			if err != nil {
				t.Fatal(err)
			}
			lineLen := float64(st.Size()) / 5
			l2 := newFiles(t, Options{Dir: dir, FileMaxBytes: st.Size() + int64(tc.room*lineLen)})
			for i := range 10 {
				l2.Write(Line{Unit: "web", Stream: StreamStdout, Text: fmt.Sprintf("new %d %s", i, strings.Repeat("n", 30))})
			}
			l2.Close() // the files have taken every line
			var got []string
			for _, ln := range l2.Tail("web", 0) {
				got = append(got, strings.Join(strings.Fields(ln.Text)[:2], " "))
			}
			want := "new 0 new 1 new 2 new 3 new 4 new 5 new 6 new 7 new 8 new 9"
			if tc.wantOld {
				want = "old 0 old 1 old 2 old 3 old 4 " + want
			}
			if strings.Join(got, " ") != want {
				t.Fatalf("lines %v, want %s", got, want)
			}
		})
	}
}

// TestStalledJournaldDoesNotStopFiles: the files get every line while journald does not read.
func TestStalledJournaldDoesNotStopFiles(t *testing.T) {
	fj := newFakeJournal(t)
	dir := t.TempDir()
	l, err := New(Options{JournalSocket: fj.path, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	deadline := time.Now().Add(waitFor)
	for i := range 3000 {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: fmt.Sprintf("line %d %s", i, strings.Repeat("j", 200))})
		if i%500 == 499 { // stay within the unit's share of the files' queue
			for {
				l.mu.Lock()
				n := l.units["web"].queued[0]
				l.mu.Unlock()
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the files' queue still holds %d lines while journald stalls", n)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	l.Write(Line{Unit: "web", Stream: StreamStdout, Text: "marker"})
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "web.log"))
		if strings.Contains(string(b), " stdout marker\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the files did not get the last line while journald stalls (%d bytes written)", len(b))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

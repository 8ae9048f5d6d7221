package logs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 10 * time.Second

func newFiles(t *testing.T, opts Options) *Logs {
	t.Helper()
	opts.JournalSocket = NoJournal
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func texts(lines []Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

func TestRingTail(t *testing.T) {
	l := newFiles(t, Options{RingLines: 5})
	for i := 1; i <= 12; i++ {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: strconv.Itoa(i)})
	}
	l.Write(Line{Unit: "db", Stream: StreamStderr, Text: "db1"})
	l.Logf("daemon %d", 1)
	for _, tc := range []struct {
		unit string
		n    int
		want string
	}{
		{"web", 3, "[10 11 12]"},
		{"web", 0, "[8 9 10 11 12]"},
		{"web", 99, "[8 9 10 11 12]"},
		{"db", 5, "[db1]"},
		{"", 1, "[daemon 1]"},
		{"nope", 5, "[]"},
	} {
		if got := fmt.Sprint(texts(l.Tail(tc.unit, tc.n))); got != tc.want {
			t.Errorf("Tail(%q, %d) = %s, want %s", tc.unit, tc.n, got, tc.want)
		}
	}
	if tl := l.Tail("web", 1); tl[0].Time.IsZero() || tl[0].Stream != StreamStdout {
		t.Errorf("tail line %+v: want a time and the stream", tl[0])
	}
	// A partly filled ring.
	l.Write(Line{Unit: "db", Text: "db2"})
	if got := fmt.Sprint(texts(l.Tail("db", 0))); got != "[db1 db2]" {
		t.Errorf("Tail(db) = %s", got)
	}
}

func TestFollow(t *testing.T) {
	l := newFiles(t, Options{})
	ch, stop := l.Follow("web")
	l.Write(Line{Unit: "db", Text: "not mine"})
	l.Write(Line{Unit: "web", Text: "mine"})
	select {
	case got := <-ch:
		if got.Text != "mine" {
			t.Fatalf("followed %+v, want the web line", got)
		}
	case <-time.After(waitFor):
		t.Fatal("no followed line")
	}
	stop()
	stop() // idempotent
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after stop")
	}

	// A follower that does not read misses lines but never slows Write.
	slow, stopSlow := l.Follow("web")
	defer stopSlow()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range followBuffer * 4 {
			l.Write(Line{Unit: "web", Text: strconv.Itoa(i)})
		}
	}()
	select {
	case <-wrote:
	case <-time.After(waitFor):
		t.Fatal("Write blocked on a follower that does not read")
	}
	for i := range followBuffer {
		if got := <-slow; got.Text != strconv.Itoa(i) {
			t.Fatalf("line %d = %q", i, got.Text)
		}
	}
	select {
	case got := <-slow:
		t.Fatalf("got %q beyond the follower's buffer", got.Text)
	default:
	}
}

func TestCloseEndsFollowers(t *testing.T) {
	l, err := New(Options{JournalSocket: NoJournal, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ch, stop := l.Follow("web")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("follower open after Close")
	}
	stop()
	late, _ := l.Follow("web")
	if _, ok := <-late; ok {
		t.Fatal("Follow after Close gave an open channel")
	}
	l.Write(Line{Unit: "web", Text: "after close"}) // must not panic
	if got := texts(l.Tail("web", 1)); len(got) != 1 || got[0] != "after close" {
		t.Fatalf("Tail after Close = %v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReaderSplitsLines(t *testing.T) {
	l := newFiles(t, Options{RingLines: 100})
	w := l.Reader("web", StreamStderr, 42)
	for _, chunk := range []string{"a", "\nb\r", "\n\nc"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprintf("%q", texts(l.Tail("web", 0))); got != `["a" "b" ""]` {
		t.Fatalf("lines before Close = %s", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := l.Tail("web", 0)
	if fmt.Sprintf("%q", texts(got)) != `["a" "b" "" "c"]` {
		t.Fatalf("lines after Close = %q", texts(got))
	}
	if got[0].Unit != "web" || got[0].Stream != StreamStderr || got[0].PID != 42 {
		t.Fatalf("line = %+v, want unit web, stderr, pid 42", got[0])
	}
	if _, err := w.Write([]byte("x\n")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
}

func TestReaderLongLines(t *testing.T) {
	l := newFiles(t, Options{RingLines: 100})
	w := l.Reader("u", StreamStdout, 0)
	long := strings.Repeat("x", 2*MaxLineBytes+10)
	w.Write([]byte(long + "\n"))
	// Exactly MaxLineBytes, its newline in the next write: one whole line.
	w.Write([]byte(strings.Repeat("y", MaxLineBytes)))
	w.Write([]byte("\nz\n"))
	// A long line in many writes is cut once.
	for range 10 {
		w.Write([]byte(strings.Repeat("w", MaxLineBytes/2)))
	}
	w.Close()
	got := l.Tail("u", 0)
	if len(got) != 4 {
		t.Fatalf("%d lines, want 4", len(got))
	}
	for i, want := range []int{len(long) - (MaxLineBytes - markerRoom), 0, 0, 5*MaxLineBytes - (MaxLineBytes - markerRoom)} {
		if got[i].Truncated != want || len(got[i].Text) > MaxLineBytes {
			t.Errorf("line %d: %d bytes, %d cut; want at most %d bytes, %d cut", i, len(got[i].Text), got[i].Truncated, MaxLineBytes, want)
		}
		if want > 0 && !strings.HasSuffix(got[i].Text, fmt.Sprintf("…[%d bytes cut]", want)) {
			t.Errorf("line %d ends %q, want the cut marker", i, got[i].Text[len(got[i].Text)-30:])
		}
	}
	if len(got[1].Text) != MaxLineBytes || got[2].Text != "z" {
		t.Errorf("lines 1 and 2: %d bytes and %q, want %d bytes and z", len(got[1].Text), got[2].Text, MaxLineBytes)
	}
}

// readFileLines returns the "time stream text" lines of a log file, checking their shape.
func readFileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ts, rest, ok := strings.Cut(sc.Text(), " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); !ok || err != nil {
			t.Fatalf("%s: line %q does not start with an RFC3339Nano time", path, sc.Text())
		}
		out = append(out, rest)
	}
	return out
}

func TestFilesSinkAndRotation(t *testing.T) {
	dir := t.TempDir()
	const max = 300
	l, err := New(Options{JournalSocket: NoJournal, Dir: dir, FileMaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	if l.Sink() != SinkFiles {
		t.Fatalf("sink %q, want files", l.Sink())
	}
	for i := range 40 {
		l.Write(Line{Unit: "web", Stream: StreamStdout, Text: fmt.Sprintf("line %02d", i)})
	}
	l.Write(Line{Stream: StreamDaemon, Text: `daemon\nsays` + "\nit"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, name := range []string{"web.log.1", "web.log"} {
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 || st.Size() > max {
			t.Fatalf("%s is %d bytes, want 1..%d", name, st.Size(), max)
		}
		kept = append(kept, readFileLines(t, path)...)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.log.2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("web.log.2: %v, want only 1 rotated file", err)
	}
	if len(kept) >= 40 || kept[len(kept)-1] != "stdout line 39" {
		t.Fatalf("kept %d lines ending %q, want fewer than 40 ending with line 39", len(kept), kept[len(kept)-1])
	}
	first, _ := strconv.Atoi(strings.TrimPrefix(kept[0], "stdout line "))
	for i, k := range kept {
		if want := fmt.Sprintf("stdout line %02d", first+i); k != want {
			t.Fatalf("kept line %d = %q, want %q", i, k, want)
		}
	}
	if got := readFileLines(t, filepath.Join(dir, DaemonFile)); len(got) != 1 || got[0] != `daemon daemon\\nsays\nit` {
		t.Fatalf("daemon file = %q", got)
	}
}

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		"web":       "web.log",
		"tick@a.b":  "tick@a.b.log",
		"":          DaemonFile,
		"../etc/pw": "_._etc_pw.log",
		".hidden":   "_hidden.log",
	} {
		if got := FileName(in); got != want {
			t.Errorf("FileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewNeedsDirWithoutJournald(t *testing.T) {
	_, err := New(Options{JournalSocket: filepath.Join(t.TempDir(), "absent")})
	if err == nil || !strings.HasPrefix(err.Error(), "logs: ") || !strings.Contains(err.Error(), "--state") {
		t.Fatalf("err = %v, want a logs: error saying to set --state", err)
	}
	// A path that is not a socket means files.
	file := filepath.Join(t.TempDir(), "notasocket")
	os.WriteFile(file, nil, 0o600)
	l, err := New(Options{JournalSocket: file, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Sink() != SinkFiles {
		t.Fatalf("sink %q, want files", l.Sink())
	}
}

func TestValidFieldName(t *testing.T) {
	for name, want := range map[string]bool{
		"OPSVC_CHAIN_ID":          true,
		"A":                       true,
		"A1_":                     true,
		"":                        false,
		"_PID":                    false,
		"1ABC":                    false,
		"lower":                   false,
		"WITH-DASH":               false,
		strings.Repeat("A", 64):   true,
		strings.Repeat("A", 65):   false,
		"OPSVC_ÜNIT":              false,
		"OPSVC_UNIT=injected\nX=": false,
	} {
		if got := ValidFieldName(name); got != want {
			t.Errorf("ValidFieldName(%q) = %v, want %v", name, got, want)
		}
	}
}

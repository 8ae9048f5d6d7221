package logs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// parseEntry decodes journald's native protocol, failing on anything malformed.
func parseEntry(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i <= 0 {
			t.Fatalf("malformed entry at %q", b)
		}
		key := string(b[:i])
		if !ValidFieldName(key) {
			t.Fatalf("invalid field name %q sent", key)
		}
		if b[i] == '=' {
			j := bytes.IndexByte(b[i+1:], '\n')
			if j < 0 {
				t.Fatalf("field %s without newline", key)
			}
			out[key] = string(b[i+1 : i+1+j])
			b = b[i+1+j+1:]
			continue
		}
		if len(b) < i+9 {
			t.Fatalf("field %s: short length", key)
		}
		n := int(binary.LittleEndian.Uint64(b[i+1 : i+9]))
		if len(b) < i+9+n+1 || b[i+9+n] != '\n' {
			t.Fatalf("field %s: bad binary value", key)
		}
		out[key] = string(b[i+9 : i+9+n])
		b = b[i+9+n+1:]
	}
	return out
}

func TestJournalEntry(t *testing.T) {
	tests := []struct {
		line Line
		want map[string]string
	}{
		{
			Line{Unit: "web", Stream: StreamStdout, Text: "hello", PID: 7},
			map[string]string{"MESSAGE": "hello", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "web", "OPSVC_UNIT": "web", "OPSVC_STREAM": "stdout", "OBJECT_PID": "7"},
		},
		{
			Line{Unit: "web", Stream: StreamStderr, Text: "two\nlines"},
			map[string]string{"MESSAGE": "two\nlines", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "web", "OPSVC_UNIT": "web", "OPSVC_STREAM": "stderr"},
		},
		{
			Line{Stream: StreamDaemon, Text: "started", Fields: map[string]string{"PRIORITY": "4"}},
			map[string]string{"MESSAGE": "started", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "opsvc", "OPSVC_STREAM": "daemon"},
		},
		{
			Line{Unit: "orch", Stream: StreamDaemon, Text: "x", Fields: map[string]string{
				"OPSVC_CHAIN_ID": "c1", "OPSVC_SESSION": "0", "PRIORITY": "9", "MESSAGE": "spoof",
				"_PID": "1", "bad name": "v", "OPSVC_UNIT": "other", "NOTE": "a\nb",
			}},
			map[string]string{"MESSAGE": "x", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "opsvc", "OPSVC_UNIT": "orch",
				"OPSVC_STREAM": "daemon", "OPSVC_CHAIN_ID": "c1", "OPSVC_SESSION": "0", "NOTE": "a\nb"},
		},
	}
	for _, tt := range tests {
		got := parseEntry(t, journalEntry(nil, tt.line))
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("journalEntry(%+v) =\n%v\nwant\n%v", tt.line, got, tt.want)
		}
	}
	// Exact bytes of the binary form.
	want := "MESSAGE\n\x03\x00\x00\x00\x00\x00\x00\x00a\nb\n"
	if got := string(appendField(nil, "MESSAGE", "a\nb")); got != want {
		t.Errorf("appendField = %q, want %q", got, want)
	}
}

// fakeJournal is a unixgram socket standing in for journald.
type fakeJournal struct {
	path string
	conn *net.UnixConn
}

func newFakeJournal(t *testing.T) *fakeJournal {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeJournal{path: path, conn: conn}
}

// recv reads one entry, from the datagram or from the fd passed with an empty one.
func (j *fakeJournal) recv(t *testing.T) (entry map[string]string, viaFD bool) {
	t.Helper()
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4*4))
	j.conn.SetReadDeadline(time.Now().Add(waitFor))
	n, oobn, _, _, err := j.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("fake journald: %v", err)
	}
	if oobn == 0 {
		return parseEntry(t, buf[:n]), false
	}
	if n != 0 {
		t.Fatalf("fd datagram with a %d-byte payload; journald ignores those", n)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v %v", fds, err)
	}
	f := os.NewFile(uintptr(fds[0]), "entry")
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 || seals&unix.F_SEAL_SHRINK == 0 {
		t.Fatalf("passed fd seals %#x (%v), want write and shrink sealed", seals, err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return parseEntry(t, data), true
}

func TestJournalSinkSends(t *testing.T) {
	fj := newFakeJournal(t)
	l, err := New(Options{JournalSocket: fj.path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Sink() != SinkJournald {
		t.Fatalf("sink %q, want journald", l.Sink())
	}
	l.Write(Line{Unit: "web", Stream: StreamStderr, Text: "boom", Fields: map[string]string{"OPSVC_CHAIN_ID": "c9"}})
	e, viaFD := fj.recv(t)
	if viaFD || e["MESSAGE"] != "boom" || e["PRIORITY"] != "3" || e["SYSLOG_IDENTIFIER"] != "web" || e["OPSVC_CHAIN_ID"] != "c9" {
		t.Fatalf("entry %v (fd %v)", e, viaFD)
	}
}

func TestJournalSinkLargeEntryViaMemfd(t *testing.T) {
	fj := newFakeJournal(t)
	js, err := newJournalSink(fj.path, 16<<10) // a small send buffer: EMSGSIZE comes early
	if err != nil {
		t.Fatal(err)
	}
	defer js.close()
	// Logs cuts a line's text at MaxLineBytes, but fields can still make an entry this large.
	big := strings.Repeat("z", 200<<10)
	if err := js.write(Line{Unit: "web", Stream: StreamStdout, Text: big}); err != nil {
		t.Fatal(err)
	}
	if err := js.write(Line{Unit: "web", Stream: StreamStdout, Text: "small"}); err != nil {
		t.Fatal(err)
	}
	e, viaFD := fj.recv(t)
	if !viaFD || e["MESSAGE"] != big || e["OPSVC_UNIT"] != "web" {
		t.Fatalf("large entry: via fd %v, message %d bytes, fields %d", viaFD, len(e["MESSAGE"]), len(e))
	}
	if e, viaFD := fj.recv(t); viaFD || e["MESSAGE"] != "small" {
		t.Fatalf("next entry %v via fd %v", e, viaFD)
	}
}

// TestWriteNeverBlocksOnStalledJournald fills a journald socket nobody reads: Write must keep
// returning, lines beyond the queue are counted as dropped, Close ends in bounded time, and once
// the socket is read again the drop is reported.
func TestWriteNeverBlocksOnStalledJournald(t *testing.T) {
	fj := newFakeJournal(t)
	l, err := New(Options{JournalSocket: fj.path, QueueLen: 32, UnitQueueShare: 32, RingLines: 10, DropReportInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range n {
			l.Write(Line{Unit: "chatty", Stream: StreamStdout, Text: fmt.Sprintf("line %d", i)})
		}
	}()
	select {
	case <-wrote:
	case <-time.After(waitFor):
		t.Fatal("Write blocked behind a stalled journald")
	}
	if d := l.Dropped(); d < n-32-1000 {
		t.Fatalf("Dropped = %d after %d writes into a 32-line queue, want most of them", d, n)
	}
	if got := texts(l.Tail("chatty", 1)); got[0] != fmt.Sprintf("line %d", n-1) {
		t.Fatalf("ring holds %v, want the last line", got)
	}

	// Unstall: the first entries arrive in order, then the report of what was dropped.
	first, _ := fj.recv(t)
	if first["MESSAGE"] != "line 0" {
		t.Fatalf("first entry %v, want line 0", first)
	}
	var report map[string]string
	for report == nil {
		e, _ := fj.recv(t)
		if strings.Contains(e["MESSAGE"], "log lines dropped") {
			report = e
		}
	}
	if report["PRIORITY"] != "4" || report["SYSLOG_IDENTIFIER"] != "opsvc" {
		t.Fatalf("drop report %v, want PRIORITY 4 from opsvc", report)
	}
	if got := l.Tail("", 1); len(got) != 1 || !strings.Contains(got[0].Text, "log lines dropped") {
		t.Fatalf("daemon ring %v, want the drop report", got)
	}

	closed := make(chan error)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
}

// TestCloseBoundedOnStalledJournald: Close gives up on a journald that never reads.
func TestCloseBoundedOnStalledJournald(t *testing.T) {
	fj := newFakeJournal(t)
	l, err := New(Options{JournalSocket: fj.path, QueueLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		l.Write(Line{Unit: "chatty", Stream: StreamStdout, Text: fmt.Sprint(i)})
	}
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(closeDrain + waitFor):
		t.Fatal("Close did not return on a stalled journald")
	}
}

func TestJournalSinkReconnects(t *testing.T) {
	fj := newFakeJournal(t)
	l, err := New(Options{JournalSocket: fj.path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(Line{Unit: "u", Stream: StreamStdout, Text: "before"})
	if e, _ := fj.recv(t); e["MESSAGE"] != "before" {
		t.Fatalf("got %v", e)
	}
	// journald restarts: a new socket at the same path.
	fj.conn.Close()
	os.Remove(fj.path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: fj.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	fj.conn = conn
	l.Write(Line{Unit: "u", Stream: StreamStdout, Text: "after"})
	if e, _ := fj.recv(t); e["MESSAGE"] != "after" {
		t.Fatalf("got %v", e)
	}
}

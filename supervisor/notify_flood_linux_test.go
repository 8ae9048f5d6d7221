//go:build unix

package supervisor

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/bus"
)

// notifySocketOf reads NOTIFY_SOCKET from a process's environment.
func notifySocketOf(t *testing.T, pid int) string {
	t.Helper()
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("NOTIFY_SOCKET=")); ok {
			return string(v)
		}
	}
	t.Fatalf("process %d has no NOTIFY_SOCKET", pid)
	return ""
}

// TestNotifyFloodBounded: another process floods a unit's notify socket with datagrams the
// unit may not send. The refusals are coalesced: the event log grows by a few events, not one
// per datagram, and another unit's stored history is all still there.
func TestNotifyFloodBounded(t *testing.T) {
	h := newHarness(t, map[string]string{
		"other.toml":  "[service]\nexec = [\"sleep\", \"1000\"]\n",
		"target.toml": "[service]\nexec = [\"sleep\", \"1000\"]\nwatchdog = \"1h\"\n",
	})
	started := map[string]bus.Event{}
	for len(started) < 2 {
		e := h.waitEvent("unit.started", "")
		started[e.Unit] = e
	}
	addr := notifySocketOf(t, started["target"].PID)
	logBefore := fileSize(t, filepath.Join(h.state, bus.LogName))

	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const flood = 5000
	sent := 0
	for range flood {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("STATUS=not yours to say\nREADY=1")); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			t.Fatal(err)
		}
		sent++
	}
	if sent < flood/2 {
		t.Fatalf("only %d of %d datagrams could be sent", sent, flood)
	}
	// Wait until the daemon has handled the flood: a marker event after it.
	h.write("marker.toml", "[service]\nexec = [\"sleep\", \"1000\"]\n")
	h.waitEvent("unit.started", "marker")

	s, err := h.bus.Subscribe(0, bus.Filter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var refused, other int
	for e := range s.C() {
		switch {
		case e.Type == "unit.notify_refused":
			refused++
		case e.Unit == "other":
			other++
		}
	}
	if refused == 0 || refused > 3 {
		t.Fatalf("%d datagrams refused gave %d stored events, want 1 to 3", sent, refused)
	}
	if other == 0 || started["other"].Seq == 0 {
		t.Fatalf("the other unit's history is gone: %d events", other)
	}
	if grew := fileSize(t, filepath.Join(h.state, bus.LogName)) - logBefore; grew > 64<<10 {
		t.Fatalf("the event log grew by %d bytes during the flood", grew)
	}
	if st := h.status("target"); st.State != Active || strings.Contains(st.StatusText, "not yours") {
		t.Fatalf("target after the flood: %+v", st)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

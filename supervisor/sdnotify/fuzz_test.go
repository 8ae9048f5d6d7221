package sdnotify

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: Parse never panics, refuses exactly what systemd drops (too long, a NUL), and
// what it accepts is consistent with the payload's lines. Seeds: testdata/fuzz/FuzzParse and
// the ones below.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"READY=1",
		"READY=1\nSTATUS=serving 3 clients\nMAINPID=4242",
		"STOPPING=1\r\nERRNO=2\n",
		"WATCHDOG=1\nWATCHDOG_USEC=30000000",
		"WATCHDOG=trigger",
		"EXTEND_TIMEOUT_USEC=18446744073709551615",
		"MAINPID=-1\nMAINPID=7",
		"STATUS=\xff\xfe",
		"=novalue\nnoequals\n\n",
		"BARRIER=1",
		"READY=1\x00",
		strings.Repeat("X", MaxMessageSize+1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := Parse(payload)
		bad := len(payload) > MaxMessageSize || bytes.IndexByte(payload, 0) >= 0
		if bad != (err != nil) {
			t.Fatalf("Parse(%q): err %v, want an error only for a payload too long or with a NUL", payload, err)
		}
		if err != nil {
			return
		}
		lines := strings.FieldsFunc(string(payload), func(r rune) bool { return r == '\n' || r == '\r' })
		has := func(line string) bool {
			for _, l := range lines {
				if l == line {
					return true
				}
			}
			return false
		}
		if m.Ready != has("READY=1") || m.Stopping != has("STOPPING=1") || m.Watchdog != has("WATCHDOG=1") || m.WatchdogTrigger != has("WATCHDOG=trigger") {
			t.Fatalf("Parse(%q): flags %+v do not match the lines", payload, m)
		}
		for _, fl := range m.Fields {
			if fl.Key == "" || strings.ContainsAny(fl.Key+fl.Value, "\n\r") || strings.Contains(fl.Key, "=") {
				t.Fatalf("Parse(%q): bad field %q", payload, fl)
			}
		}
		if m.Status != nil {
			if v, _ := m.Get("STATUS"); v != *m.Status || !utf8.ValidString(v) {
				t.Fatalf("Parse(%q): status %q, first STATUS= %q", payload, *m.Status, v)
			}
		}
		if m.MainPID < 0 || m.ExtendTimeout < 0 || m.WatchdogTimeout < 0 || (m.Errno != nil && *m.Errno < 0) {
			t.Fatalf("Parse(%q): negative value in %+v", payload, m)
		}
		if m.PID != 0 || m.UID != 0 || m.GID != 0 {
			t.Fatalf("Parse(%q) set credentials", payload)
		}
	})
}

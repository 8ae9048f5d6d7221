package sdnotify

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Message
	}{
		{name: "empty", payload: "", want: Message{}},
		{
			name:    "ready with status",
			payload: "READY=1\nSTATUS=up and running",
			want: Message{
				Fields: []Field{{"READY", "1"}, {"STATUS", "up and running"}},
				Ready:  true, Status: ptr("up and running"),
			},
		},
		{
			name:    "trailing newline, CRLF and blank lines",
			payload: "\nREADY=1\r\n\r\nWATCHDOG=1\n",
			want:    Message{Fields: []Field{{"READY", "1"}, {"WATCHDOG", "1"}}, Ready: true, Watchdog: true},
		},
		{
			name:    "every known key",
			payload: "READY=1\nSTOPPING=1\nRELOADING=1\nMONOTONIC_USEC=123\nWATCHDOG=1\nWATCHDOG=trigger\nSTATUS=s\nERRNO=2\nEXTEND_TIMEOUT_USEC=1500000\nMAINPID=4242\nWATCHDOG_USEC=30000000",
			want: Message{
				Fields: []Field{
					{"READY", "1"}, {"STOPPING", "1"}, {"RELOADING", "1"}, {"MONOTONIC_USEC", "123"},
					{"WATCHDOG", "1"}, {"WATCHDOG", "trigger"}, {"STATUS", "s"}, {"ERRNO", "2"},
					{"EXTEND_TIMEOUT_USEC", "1500000"}, {"MAINPID", "4242"}, {"WATCHDOG_USEC", "30000000"},
				},
				Ready: true, Stopping: true, Reloading: true, Watchdog: true, WatchdogTrigger: true,
				Status: ptr("s"), Errno: ptr(2), ExtendTimeout: 1500 * time.Millisecond, MainPID: 4242,
				WatchdogTimeout: 30 * time.Second,
			},
		},
		{
			name:    "empty status clears",
			payload: "STATUS=",
			want:    Message{Fields: []Field{{"STATUS", ""}}, Status: ptr("")},
		},
		{
			name:    "status keeps equals signs",
			payload: "STATUS=a=b",
			want:    Message{Fields: []Field{{"STATUS", "a=b"}}, Status: ptr("a=b")},
		},
		{
			name:    "status not UTF-8 is ignored",
			payload: "STATUS=\xff\xfe",
			want:    Message{Fields: []Field{{"STATUS", "\xff\xfe"}}},
		},
		{
			name:    "first occurrence wins",
			payload: "STATUS=one\nSTATUS=two\nMAINPID=7\nMAINPID=8\nERRNO=1\nERRNO=3",
			want: Message{
				Fields: []Field{{"STATUS", "one"}, {"STATUS", "two"}, {"MAINPID", "7"}, {"MAINPID", "8"}, {"ERRNO", "1"}, {"ERRNO", "3"}},
				Status: ptr("one"), MainPID: 7, Errno: ptr(1),
			},
		},
		{
			name:    "bad values stay in fields only",
			payload: "ERRNO=-1\nMAINPID=0\nEXTEND_TIMEOUT_USEC=-5\nWATCHDOG_USEC=soon\nREADY=0\nREADY=yes\nWATCHDOG=2",
			want: Message{Fields: []Field{
				{"ERRNO", "-1"}, {"MAINPID", "0"}, {"EXTEND_TIMEOUT_USEC", "-5"}, {"WATCHDOG_USEC", "soon"},
				{"READY", "0"}, {"READY", "yes"}, {"WATCHDOG", "2"},
			}},
		},
		{
			name:    "mainpid beyond pid_t",
			payload: "MAINPID=4294967297",
			want:    Message{Fields: []Field{{"MAINPID", "4294967297"}}},
		},
		{
			name:    "huge extend timeout saturates",
			payload: "EXTEND_TIMEOUT_USEC=18446744073709551615",
			want:    Message{Fields: []Field{{"EXTEND_TIMEOUT_USEC", "18446744073709551615"}}, ExtendTimeout: math.MaxInt64},
		},
		{
			name:    "unknown keys kept, lines without a key skipped",
			payload: "X_OPSVC=1\nFDSTORE=1\nnonsense\n=value\nBARRIER=1",
			want:    Message{Fields: []Field{{"X_OPSVC", "1"}, {"FDSTORE", "1"}, {"BARRIER", "1"}}},
		},
		{
			name:    "exactly the size limit",
			payload: "X=" + strings.Repeat("a", MaxMessageSize-2),
			want:    Message{Fields: []Field{{"X", strings.Repeat("a", MaxMessageSize-2)}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.payload))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.payload, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.payload, diff)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, payload, wantErr string
	}{
		{"NUL byte", "READY=1\x00STATUS=x", "sdnotify: parse message: NUL byte at offset 7"},
		{"NUL at end", "READY=1\x00", "NUL byte"},
		{"one byte too long", "X=" + strings.Repeat("a", MaxMessageSize-1), "4097 bytes, more than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.payload))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMessageGet(t *testing.T) {
	m, err := Parse([]byte("RELOADING=1\nMONOTONIC_USEC=99\nMONOTONIC_USEC=100"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Get("MONOTONIC_USEC"); !ok || v != "99" {
		t.Errorf(`Get("MONOTONIC_USEC") = %q, %v; want "99", true`, v, ok)
	}
	if v, ok := m.Get("MISSING"); ok || v != "" {
		t.Errorf(`Get("MISSING") = %q, %v; want "", false`, v, ok)
	}
}

func TestIsBarrier(t *testing.T) {
	for payload, want := range map[string]bool{
		"BARRIER=1":            true,
		"BARRIER=1\n":          true,
		"BARRIER=1\nREADY=1":   false,
		"BARRIER=0":            false,
		"READY=1":              false,
		"":                     false,
		"BARRIER=1\nBARRIER=1": false,
	} {
		m, err := Parse([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		if got := isBarrier(m); got != want {
			t.Errorf("isBarrier(%q) = %v, want %v", payload, got, want)
		}
	}
}

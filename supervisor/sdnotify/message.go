package sdnotify

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxMessageSize is the largest payload accepted, in bytes (PIPE_BUF, as systemd's NOTIFY_BUFFER_MAX).
const MaxMessageSize = 4096

// Message is one sd_notify datagram, parsed.
//
// Boolean fields are set when their exact line is present anywhere in the payload (READY=1,
// STOPPING=1, RELOADING=1, WATCHDOG=1, WATCHDOG=trigger). Valued fields take their first occurrence, as
// systemd does; a value that does not parse leaves the field unset but stays in Fields.
type Message struct {
	// PID, UID and GID are the sender's credentials (SCM_CREDENTIALS). Parse leaves them zero.
	PID, UID, GID int
	// Ancestors are the sender's parent, grandparent, … as read from /proc when the datagram
	// arrived (at most MaxAncestors), so that a sender that exits right after sending is still
	// known as a descendant of a unit's main process. Parse leaves it nil.
	Ancestors []int
	// Fields holds every KEY=VALUE line in order, unknown keys included.
	Fields []Field

	Ready, Stopping, Reloading, Watchdog, WatchdogTrigger bool

	// Status is STATUS=: nil if absent or not valid UTF-8; a pointer to "" clears the status.
	Status *string
	// Errno is ERRNO= (a non-negative integer), nil if absent.
	Errno *int
	// ExtendTimeout is EXTEND_TIMEOUT_USEC=, 0 if absent.
	ExtendTimeout time.Duration
	// MainPID is MAINPID= (a positive pid), 0 if absent.
	MainPID int
	// WatchdogTimeout is WATCHDOG_USEC=, the new watchdog timeout, 0 if absent.
	WatchdogTimeout time.Duration
}

// Field is one KEY=VALUE line of a message.
type Field struct{ Key, Value string }

// Get returns the value of the first field named key.
func (m Message) Get(key string) (string, bool) {
	for _, f := range m.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// Parse parses an sd_notify payload: lines separated by newlines (or carriage returns, as systemd
// splits them), each KEY=VALUE. Empty lines and lines without a key are skipped. It refuses a payload
// longer than MaxMessageSize or containing a NUL byte, as systemd drops those.
func Parse(payload []byte) (Message, error) {
	var m Message
	if len(payload) > MaxMessageSize {
		return m, fmt.Errorf("sdnotify: parse message: %d bytes, more than %d", len(payload), MaxMessageSize)
	}
	if i := bytes.IndexByte(payload, 0); i >= 0 {
		return m, fmt.Errorf("sdnotify: parse message: NUL byte at offset %d", i)
	}
	lines := strings.FieldsFunc(string(payload), func(r rune) bool { return r == '\n' || r == '\r' })
	seen := make(map[string]bool, len(lines))
	for _, line := range lines {
		key, value, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			continue
		}
		m.Fields = append(m.Fields, Field{Key: key, Value: value})
		switch line {
		case "READY=1":
			m.Ready = true
		case "STOPPING=1":
			m.Stopping = true
		case "RELOADING=1":
			m.Reloading = true
		case "WATCHDOG=1":
			m.Watchdog = true
		case "WATCHDOG=trigger":
			m.WatchdogTrigger = true
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		switch key {
		case "STATUS":
			if utf8.ValidString(value) {
				m.Status = &value
			}
		case "ERRNO":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 {
				m.Errno = &n
			}
		case "EXTEND_TIMEOUT_USEC":
			if u, err := strconv.ParseUint(value, 10, 64); err == nil {
				m.ExtendTimeout = usec(u)
			}
		case "MAINPID":
			if n, err := strconv.ParseInt(value, 10, 32); err == nil && n > 0 {
				m.MainPID = int(n)
			}
		case "WATCHDOG_USEC":
			if u, err := strconv.ParseUint(value, 10, 64); err == nil {
				m.WatchdogTimeout = usec(u)
			}
		}
	}
	return m, nil
}

// usec converts microseconds to a Duration, saturating instead of overflowing.
func usec(u uint64) time.Duration {
	if u > math.MaxInt64/uint64(time.Microsecond) {
		return math.MaxInt64
	}
	return time.Duration(u) * time.Microsecond
}

// isBarrier reports whether m is a BARRIER=1 datagram: that line alone, which the server answers by
// closing the fd it carries and never hands to the handler.
func isBarrier(m Message) bool {
	return len(m.Fields) == 1 && m.Fields[0] == Field{Key: "BARRIER", Value: "1"}
}

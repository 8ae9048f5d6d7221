package console

import (
	"log"
	"strings"
)

// newLogger turns the server's own errors (TLS handshakes, …) into Logf lines.
func newLogger(logf func(string, ...any)) *log.Logger {
	return log.New(logfWriter(logf), "", 0)
}

type logfWriter func(string, ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("console: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

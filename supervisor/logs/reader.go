package logs

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// MaxLineBytes is the longest line Reader passes on; longer ones are split.
const MaxLineBytes = 64 << 10

// Reader returns a writer that splits the bytes written to it into lines (without the "\n" or
// "\r\n"; longer than MaxLineBytes: split) and writes each as a Line of unit, stream and pid.
// Close passes on a last line that had no newline. The supervisor hands it to the goroutine
// copying a worker's stdout or stderr pipe.
func (l *Logs) Reader(unit string, stream string, pid int) io.WriteCloser {
	return &lineWriter{l: l, unit: unit, stream: stream, pid: pid}
}

type lineWriter struct {
	l      *Logs
	unit   string
	stream string
	pid    int

	mu     sync.Mutex
	buf    []byte
	closed bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		room := MaxLineBytes - len(w.buf)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i <= room:
			w.buf = append(w.buf, p[:i]...)
			w.emit()
			p = p[i+1:]
		case len(p) <= room:
			w.buf = append(w.buf, p...)
			p = nil
		default:
			w.buf = append(w.buf, p[:room]...)
			w.emit()
			p = p[room:]
		}
	}
	return n, nil
}

func (w *lineWriter) emit() {
	text := bytes.TrimSuffix(w.buf, []byte{'\r'})
	w.l.Write(Line{Unit: w.unit, Stream: w.stream, Text: string(text), PID: w.pid})
	w.buf = w.buf[:0]
}

// Close passes on the last, unterminated line, if any. Writes after Close fail.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if len(w.buf) > 0 {
		w.emit()
	}
	w.buf = nil
	return nil
}

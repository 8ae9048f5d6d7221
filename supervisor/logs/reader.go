package logs

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// Reader returns a writer that splits the bytes written to it into lines (without the "\n" or
// "\r\n") and writes each as a Line of unit, stream and pid. A line longer than MaxLineBytes
// keeps its first bytes and ends with a marker saying how many were cut; the rest is never
// held. Close passes on a last line that had no newline.
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
	cut    int // bytes of the current line past MaxLineBytes
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
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		room := MaxLineBytes + 1 - len(w.buf) // one byte more, to tell a long line apart
		if len(chunk) <= room {
			w.buf = append(w.buf, chunk...)
		} else {
			w.buf = append(w.buf, chunk[:room]...)
			w.cut += len(chunk) - room
		}
		if i < 0 {
			break
		}
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit() {
	text, cut := CutText(string(bytes.TrimSuffix(w.buf, []byte{'\r'})), MaxLineBytes, w.cut)
	w.l.Write(Line{Unit: w.unit, Stream: w.stream, Text: text, PID: w.pid, Truncated: cut})
	w.buf, w.cut = w.buf[:0], 0
}

// Close passes on the last, unterminated line, if any. Writes after Close fail.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if len(w.buf) > 0 || w.cut > 0 {
		w.emit()
	}
	w.buf = nil
	return nil
}

package supervisor

import (
	"bytes"
	"io"
	"os"

	"github.com/opsvc/opsvc/supervisor/logs"
)

// maxLine is the longest output line kept; a longer one keeps its first
// bytes and ends with a marker saying how many were cut.
const maxLine = logs.MaxLineBytes

// readQuantum is the most one read of an output pipe takes.
const readQuantum = 32 << 10

// readOutput copies the lines read from r, the read end of a worker's stdout
// or stderr pipe, to w (discarding them when w is nil) until every process
// holding the write end has closed it, then closes r. A goroutine per pipe
// does this: there is no epoll for pipes on Windows, and units are few.
func readOutput(r *os.File, w io.Writer) {
	defer r.Close()
	if w == nil {
		w = io.Discard
	}
	lw := &lineSplitter{w: w}
	buf := make([]byte, readQuantum)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			lw.feed(buf[:n])
		}
		if err != nil {
			break
		}
	}
	lw.flush()
}

// lineSplitter writes whole lines, holding a partial last one (at most
// maxLine of it: the rest of a long line is counted and dropped).
type lineSplitter struct {
	w       io.Writer
	pending []byte
	cut     int // bytes of the current line past maxLine, not kept
}

func (l *lineSplitter) feed(data []byte) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if len(l.pending) > 0 || l.cut > 0 || i+1 > maxLine {
			l.hold(data[:i+1])
			l.flush()
		} else {
			l.w.Write(data[:i+1])
		}
		data = data[i+1:]
	}
	l.hold(data)
}

// hold adds to the pending line what fits in maxLine (one byte more, to tell
// a long line apart) and counts the rest as cut.
func (l *lineSplitter) hold(data []byte) {
	room := maxLine + 1 - len(l.pending)
	if len(data) <= room {
		l.pending = append(l.pending, data...)
		return
	}
	if room > 0 {
		l.pending = append(l.pending, data[:room]...)
		data = data[room:]
	}
	if len(data) > 0 && data[len(data)-1] == '\n' {
		l.cut += len(data) - 1
		l.pending = append(l.pending, '\n')
		return
	}
	l.cut += len(data)
}

func (l *lineSplitter) flush() {
	if len(l.pending) > 0 || l.cut > 0 {
		line := bytes.TrimSuffix(l.pending, []byte{'\n'})
		if len(line) > maxLine || l.cut > 0 {
			text, _ := logs.CutText(string(line), maxLine, l.cut)
			l.w.Write([]byte(text + "\n"))
		} else {
			l.w.Write(l.pending)
		}
	}
	l.cut = 0
	if cap(l.pending) > 4096 {
		l.pending = nil
	} else {
		l.pending = l.pending[:0]
	}
}

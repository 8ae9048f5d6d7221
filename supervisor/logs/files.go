package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files sink layout.
const (
	// DaemonFile holds the daemon's own lines (unit "") in the files sink.
	DaemonFile = "opsvc.log"
	// KeepRotated is how many rotated files (UNIT.log.1) are kept.
	KeepRotated = 1
)

// fileSink writes DIR/UNIT.log, one "RFC3339Nano stream text" line per line, rotating a file
// that would pass maxBytes to UNIT.log.1 (replacing the older one). Only the Logs goroutine
// uses it.
type fileSink struct {
	dir      string
	maxBytes int64
	files    map[string]*logFile // by file name
	buf      []byte
}

type logFile struct {
	f    *os.File
	size int64
}

func newFileSink(dir string, maxBytes int64) (*fileSink, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("logs: create log directory: %w (check --state and its permissions)", err)
	}
	return &fileSink{dir: dir, maxBytes: maxBytes, files: make(map[string]*logFile)}, nil
}

// FileName is the file of a unit's lines in the files sink: UNIT.log, DaemonFile for "". A name
// that could leave the directory has its separators and leading dots replaced by "_" (on Windows
// also ":", which would name a stream of another file).
func FileName(unit string) string {
	if unit == "" {
		return DaemonFile
	}
	unit = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || (r == ':' && colonIsSeparator) {
			return '_'
		}
		return r
	}, unit)
	if strings.HasPrefix(unit, ".") {
		unit = "_" + unit[1:]
	}
	return unit + ".log"
}

// formatFileLine is a line as the files sink writes it; in the text a backslash becomes "\\"
// and a newline "\n".
func formatFileLine(buf []byte, line Line) []byte {
	buf = line.Time.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, line.Stream...)
	buf = append(buf, ' ')
	for i := range len(line.Text) {
		switch c := line.Text[i]; c {
		case '\\':
			buf = append(buf, '\\', '\\')
		case '\n':
			buf = append(buf, '\\', 'n')
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '\n')
}

// parseFileLine reads a line formatFileLine wrote.
func parseFileLine(unit string, b []byte) (Line, bool) {
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return Line{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{}, false
	}
	stream, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Line{}, false
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		if text[i] == '\\' && i+1 < len(text) {
			switch text[i+1] {
			case 'n':
				out = append(out, '\n')
				i++
				continue
			case '\\':
				out = append(out, '\\')
				i++
				continue
			}
		}
		out = append(out, text[i])
	}
	line := Line{Time: t, Unit: unit, Stream: string(stream), Text: string(out)}
	if len(line.Text) > MaxLineBytes {
		line.Text, line.Truncated = Truncate(line.Text, MaxLineBytes)
	}
	return line, true
}

// readFileTail returns the last lines (at most maxLines, and about maxBytes of file) kept in
// dir for unit: UNIT.log, and UNIT.log.1 before it when UNIT.log holds less. Lines that do not
// parse are skipped; errors mean no lines.
func readFileTail(dir, unit string, maxBytes int64, maxLines int) []Line {
	base := filepath.Join(dir, FileName(unit))
	var chunks [][]Line
	left := maxBytes
	for _, path := range []string{base, base + ".1"} {
		if left <= 0 {
			break
		}
		lines, read := readTail(path, unit, left)
		chunks = append(chunks, lines)
		left -= read
	}
	var out []Line
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	if len(out) > maxLines {
		out = out[len(out)-maxLines:]
	}
	return out
}

// before returns the lines of a file that come before first, the oldest line in memory:
// those before its copy in the file, or, when the file does not hold it (not written yet, or
// rotated away), those older than it.
func before(lines []Line, first Line) []Line {
	for i := len(lines) - 1; i >= 0; i-- {
		if l := lines[i]; l.Time.Equal(first.Time) && l.Stream == first.Stream && l.Text == first.Text {
			return lines[:i]
		}
	}
	n := 0
	for n < len(lines) && lines[n].Time.Before(first.Time) {
		n++
	}
	return lines[:n]
}

// readTail parses the lines in the last max bytes of a file; a line cut by the start of that
// window is skipped. It returns the bytes read.
func readTail(path, unit string, max int64) ([]Line, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, 0
	}
	end := st.Size()
	start := end - max
	if start < 0 {
		start = 0
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), 64<<10)
	var lines []Line
	first := start > 0
	for {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if err != nil {
			break // EOF: a last line without its newline is still being written
		}
		if first {
			first = false
			continue
		}
		if line, ok := parseFileLine(unit, bytes.TrimSuffix(b, []byte{'\n'})); ok {
			lines = append(lines, line)
		}
	}
	return lines, end - start
}

func (s *fileSink) write(line Line) error {
	name := FileName(line.Unit)
	s.buf = formatFileLine(s.buf[:0], line)
	lf := s.files[name]
	if lf != nil && lf.size > 0 && lf.size+int64(len(s.buf)) > s.maxBytes {
		if err := s.rotate(name, lf); err != nil {
			return err
		}
		lf = nil
	}
	if lf == nil {
		var err error
		if lf, err = s.open(name); err != nil {
			return err
		}
	}
	n, err := lf.f.Write(s.buf)
	if err != nil {
		if n > 0 {
			// Never leave a partial line for the next one to be glued to.
			_ = lf.f.Truncate(lf.size)
		}
		return fmt.Errorf("logs: write %s: %w (check free space in the state directory)", lf.f.Name(), err)
	}
	lf.size += int64(n)
	return nil
}

func (s *fileSink) open(name string) (*logFile, error) {
	path := filepath.Join(s.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("logs: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logs: open %s: %w", path, err)
	}
	lf := &logFile{f: f, size: st.Size()}
	s.files[name] = lf
	return lf, nil
}

// rotate shifts NAME.log.2 → .3, .1 → .2, NAME.log → .1 and forgets the open file.
func (s *fileSink) rotate(name string, lf *logFile) error {
	lf.f.Close()
	delete(s.files, name)
	base := filepath.Join(s.dir, name)
	for i := KeepRotated - 1; i >= 1; i-- {
		err := os.Rename(base+"."+strconv.Itoa(i), base+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("logs: rotate %s: %w", base, err)
		}
	}
	if err := os.Rename(base, base+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("logs: rotate %s: %w", base, err)
	}
	return nil
}

func (s *fileSink) close() error {
	var errs []error
	for name, lf := range s.files {
		if err := lf.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("logs: close %s: %w", name, err))
		}
		delete(s.files, name)
	}
	return errors.Join(errs...)
}

package logs

import (
	"errors"
	"fmt"
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
	// KeepRotated is how many rotated files (UNIT.log.1 … UNIT.log.3) are kept.
	KeepRotated = 3
)

// fileSink writes DIR/UNIT.log, one "RFC3339Nano stream text" line per line, rotating a file
// that would pass maxBytes to UNIT.log.1 (and .1 to .2, .2 to .3). Only the Logs goroutine
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

func (s *fileSink) name() string { return SinkFiles }

// FileName is the file of a unit's lines in the files sink: UNIT.log, DaemonFile for "". A name
// that could leave the directory has its separators and leading dots replaced by "_".
func FileName(unit string) string {
	if unit == "" {
		return DaemonFile
	}
	unit = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, unit)
	if strings.HasPrefix(unit, ".") {
		unit = "_" + unit[1:]
	}
	return unit + ".log"
}

// formatFileLine is a line as the files sink writes it; newlines in the text become "\n".
func formatFileLine(buf []byte, line Line) []byte {
	buf = line.Time.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, line.Stream...)
	buf = append(buf, ' ')
	buf = append(buf, strings.ReplaceAll(line.Text, "\n", `\n`)...)
	return append(buf, '\n')
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
	lf.size += int64(n)
	if err != nil {
		return fmt.Errorf("logs: write %s: %w (check free space in the state directory)", lf.f.Name(), err)
	}
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

func (s *fileSink) abort() {}

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

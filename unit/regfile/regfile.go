// Package regfile reads files that someone else put in place and may have
// got wrong or made hostile: it never blocks on a FIFO or a device, refuses
// anything that is not a regular file, and reads at most a given size. It
// never writes.
package regfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// NotRegularError is a path that names something other than a regular file.
type NotRegularError struct{ Mode fs.FileMode }

func (e *NotRegularError) Error() string {
	what := "not a regular file"
	switch t := e.Mode.Type(); {
	case t&fs.ModeDir != 0:
		what = "a directory"
	case t&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		what = "a socket"
	case t&fs.ModeCharDevice != 0:
		what = "a character device"
	case t&fs.ModeDevice != 0:
		what = "a device"
	}
	if what == "not a regular file" {
		return what
	}
	return "is " + what + ", not a regular file"
}

// TooLargeError is a file larger than the size allowed.
type TooLargeError struct {
	Size  int64 // the file's size, as far as known: at least Limit+1
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("file too large (%d bytes, the limit is %d)", e.Size, e.Limit)
}

// Open opens path for reading. It refuses anything that is not a regular
// file, before opening it and again on the open file (it may have been
// replaced in between), and the open itself never waits for a writer or a
// device. Errors are *fs.PathError; a refusal wraps a *NotRegularError.
func Open(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Mode: fi.Mode()}}
	}
	f, err := openNonblocking(path)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Mode: fi.Mode()}}
		}
		return nil, err
	}
	return f, nil
}

// ReadFile reads the regular file path whole, if it has at most limit bytes.
// Errors are *fs.PathError wrapping a *NotRegularError, a *TooLargeError or
// the system's error.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := Read(f, limit)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return data, nil
}

// Read reads the open file f whole, if it is a regular file of at most
// limit bytes; it returns a *NotRegularError or a *TooLargeError if not.
// f must have been opened without blocking (Open does so): Read checks what
// it is, but once a FIFO is open for reading, opening it may already have
// waited for a writer.
func Read(f fs.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Mode: fi.Mode()}
	}
	if fi.Size() > limit {
		return nil, &TooLargeError{Size: fi.Size(), Limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit { // it grew since Stat
		return nil, &TooLargeError{Size: max(fi.Size(), int64(len(data))), Limit: limit}
	}
	return data, nil
}

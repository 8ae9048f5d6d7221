// Package tomldoc decodes TOML documents that may be hostile, and says where
// each key and value of a document is written. Before decoding it checks the
// document's shape with one linear scan (keys, tables, nesting), so that the
// decoder's work stays bounded, and it gives the decoder a time bound. It
// never reads files.
package tomldoc

import (
	"errors"
	"fmt"
	"time"

	"github.com/BurntSushi/toml"
)

// Limits bound the shape of a document.
type Limits struct {
	Keys   int // key = value lines and keys of inline tables
	Tables int // [table] and [[array]] headers, and inline tables
	Depth  int // levels of nesting: one per part of a dotted key or header, per array and per [[array]]
	KeyLen int // bytes of a key as written, with the tables it is in: "[a.b]" and "c = 1" make a.b.c, 5 bytes
}

// What a LimitError is about.
const (
	Keys    = "keys"
	Tables  = "tables"
	Nesting = "nesting"
	KeyLen  = "key length"
)

// LimitError is a document past one of its Limits.
type LimitError struct {
	What  string // Keys, Tables, Nesting or KeyLen
	N     int    // how many keys or tables the document has; its deepest level; its longest key
	Limit int
	Pos   Pos // where the document first goes past the limit
}

func (e *LimitError) Error() string {
	switch e.What {
	case Nesting:
		return fmt.Sprintf("nested too deeply (%d levels, the limit is %d)", e.N, e.Limit)
	case KeyLen:
		return fmt.Sprintf("key too long (%d bytes, the limit is %d)", e.N, e.Limit)
	}
	return fmt.Sprintf("too many %s (%d, the limit is %d)", e.What, e.N, e.Limit)
}

// Check scans src once and returns every limit it goes past, in the order
// of their positions; nil if it stays within lim. Its work is linear in the
// size of src and it never fails on a document that does not parse.
func Check(src string, lim Limits) []*LimitError {
	c := &counts{lim: lim, keyAt: -1, tableAt: -1, depthAt: -1, lenAt: -1}
	s := &scanner{src: src, c: c}
	s.document()
	var errs []*LimitError
	var lines []int
	add := func(what string, n, limit, at int) {
		if at < 0 {
			return
		}
		if lines == nil {
			lines = lineStarts(src)
		}
		errs = append(errs, &LimitError{What: what, N: n, Limit: limit, Pos: posAt(lines, at)})
	}
	add(Keys, c.keys, lim.Keys, c.keyAt)
	add(Tables, c.tables, lim.Tables, c.tableAt)
	add(Nesting, c.depth, lim.Depth, c.depthAt)
	add(KeyLen, c.keyLen, lim.KeyLen, c.lenAt)
	for i := 1; i < len(errs); i++ { // at most four: insertion sort
		for j := i; j > 0 && before(errs[j].Pos, errs[j-1].Pos); j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
	return errs
}

func before(a, b Pos) bool { return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col }

// TimeoutError is a document the decoder did not finish within its time bound.
type TimeoutError struct{ After time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("decoding took longer than %v", e.After)
}

// Doc is a decoded document.
type Doc struct {
	Data map[string]any
	Meta toml.MetaData // not set by DecodeData
}

// Decode checks src against lim, then decodes it, waiting at most timeout
// for the decoder. A document past its limits is not decoded: the error
// joins its *LimitError values. A decode that takes longer than timeout is
// abandoned with a *TimeoutError; it goes on in the background, with work
// bounded by lim and the size of src, and its result is dropped. A syntax
// error is returned as the decoder's toml.ParseError.
func Decode(src string, lim Limits, timeout time.Duration) (Doc, error) {
	return decode(src, lim, timeout, false, generalDecode)
}

// DecodeData is Decode for a caller that needs only the data, not Meta: a
// document of the plain shape most unit files have is decoded at once by a
// quicker decoder that gives the same values, any other by the general
// one.
func DecodeData(src string, lim Limits, timeout time.Duration) (Doc, error) {
	return decode(src, lim, timeout, true, generalDecode)
}

func generalDecode(src string) (Doc, error) {
	var d Doc
	var err error
	d.Meta, err = toml.Decode(src, &d.Data)
	return d, err
}

func decode(src string, lim Limits, timeout time.Duration, quick bool, fn func(string) (Doc, error)) (Doc, error) {
	if errs := Check(src, lim); len(errs) > 0 {
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return Doc{}, errors.Join(joined...)
	}
	if quick {
		if data, ok := decodeSimple(src); ok {
			return Doc{Data: data}, nil
		}
	}
	type result struct {
		doc Doc
		err error
	}
	done := make(chan result, 1) // never blocks an abandoned decode
	go func() {
		d, err := fn(src)
		done <- result{d, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.doc, r.err
	case <-t.C:
		return Doc{}, &TimeoutError{After: timeout}
	}
}

// ErrorPos returns where a toml.ParseError is, in src. The decoder's
// column can be off by a line's length; its byte offset is exact.
func ErrorPos(src string, pe toml.ParseError) Pos {
	lines := lineStarts(src)
	line := pe.Position.Line
	if line < 1 || line > len(lines) {
		return Pos{1, 1}
	}
	at := Pos{line, 1}
	if c := pe.Position.Start - lines[line-1]; c >= 0 && (line == len(lines) || pe.Position.Start < lines[line]) {
		at.Col = c + 1
	}
	return at
}

package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// AppendUnitStatus appends u as JSON, byte for byte what a json.Encoder
// with SetIndent(prefix, indent) writes for it, without the final newline;
// with both empty, what json.Marshal writes. Lists of thousands of units
// are written with it: encoding/json finds the fields by reflection for
// every unit and indents in a second pass over a copy.
func AppendUnitStatus(b []byte, u *UnitStatus, prefix, indent string) ([]byte, error) {
	w := jsonWriter{b: b, prefix: prefix, indent: indent}
	w.b = append(w.b, '{')
	w.key(1, "name", true)
	w.str(u.Name)
	if u.Description != "" {
		w.key(1, "description", false)
		w.str(u.Description)
	}
	if u.Type != "" {
		w.key(1, "type", false)
		w.str(u.Type)
	}
	w.key(1, "state", false)
	w.str(u.State.String())
	w.key(1, "sub", false)
	w.str(u.Sub)
	w.key(1, "pid", false)
	w.b = strconv.AppendInt(w.b, int64(u.PID), 10)
	w.key(1, "since", false)
	w.b = append(w.b, '"')
	var err error
	if w.b, err = u.Since.AppendText(w.b); err != nil {
		return b, err
	}
	w.b = append(w.b, '"')
	w.key(1, "restarts", false)
	w.b = strconv.AppendInt(w.b, int64(u.Restarts), 10)
	w.key(1, "exit", false)
	if u.Exit == nil {
		w.b = append(w.b, "null"...)
	} else {
		w.b = append(w.b, '{')
		w.key(2, "code", true)
		w.b = strconv.AppendInt(w.b, int64(u.Exit.Code), 10)
		w.key(2, "signal", false)
		w.str(u.Exit.Signal)
		w.nl(1)
		w.b = append(w.b, '}')
	}
	if u.Result != "" {
		w.key(1, "result", false)
		w.str(u.Result)
	}
	w.key(1, "status_text", false)
	w.str(u.StatusText)
	w.key(1, "error", false)
	w.str(u.Error)
	if u.LastError != "" {
		w.key(1, "last_error", false)
		w.str(u.LastError)
	}
	if u.Blocked != "" {
		w.key(1, "blocked", false)
		w.str(u.Blocked)
	}
	w.key(1, "wanted", false)
	w.b = strconv.AppendBool(w.b, u.Wanted)
	w.key(1, "sources", false)
	switch {
	case u.Sources == nil:
		w.b = append(w.b, "null"...)
	case len(u.Sources) == 0:
		w.b = append(w.b, "[]"...)
	default:
		w.b = append(w.b, '[')
		for i, s := range u.Sources {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.nl(2)
			w.str(s)
		}
		w.nl(1)
		w.b = append(w.b, ']')
	}
	if u.Placement != "" {
		w.key(1, "placement", false)
		w.str(u.Placement)
	}
	if u.Host != "" {
		w.key(1, "host", false)
		w.str(u.Host)
	}
	w.nl(0)
	w.b = append(w.b, '}')
	return w.b, nil
}

// jsonWriter appends JSON laid out as json.Indent lays it out.
type jsonWriter struct {
	b              []byte
	prefix, indent string
}

// nl starts a line at depth, unless the output is compact.
func (w *jsonWriter) nl(depth int) {
	if w.prefix == "" && w.indent == "" {
		return
	}
	w.b = append(w.b, '\n')
	w.b = append(w.b, w.prefix...)
	for range depth {
		w.b = append(w.b, w.indent...)
	}
}

// key starts the member key of an object at depth.
func (w *jsonWriter) key(depth int, k string, first bool) {
	if !first {
		w.b = append(w.b, ',')
	}
	w.nl(depth)
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	if w.prefix != "" || w.indent != "" {
		w.b = append(w.b, ' ')
	}
}

// str appends s as encoding/json does (HTML characters escaped, invalid
// UTF-8 replaced).
func (w *jsonWriter) str(s string) { w.b = AppendJSONString(w.b, s) }

// AppendJSONString appends s quoted as json.Marshal quotes it.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// errSlowPath: the input is not the plain shape the fast decoder reads.
type errSlowPath struct{}

func (errSlowPath) Error() string { return "api: not the plain shape" }

// ReadUnitList reads GET /v1/units from b, the same as json.Unmarshal into
// a zero UnitList would, when b is the plain shape the daemon writes. It
// reports false for anything else (unknown, repeated or differently cased
// keys, escapes in strings, unusual numbers, malformed input): the caller
// decodes those with encoding/json, which gives its own errors. Like a
// json.Decoder, it reads the first value and ignores what follows.
func ReadUnitList(b []byte) (UnitList, bool) {
	units, degraded, ok := ReadUnits(b, func(u *UnitStatus) *UnitStatus { return u })
	return UnitList{Units: units, Degraded: degraded}, ok
}

// ReadUnits is ReadUnitList into elements of a client's own type, each
// holding a UnitStatus (status returns it), without a copy of the list.
func ReadUnits[T any](b []byte, status func(*T) *UnitStatus) (units []T, degraded string, ok bool) {
	d := jsonReader{b: b}
	if readUnits(&d, status, &units, &degraded) != nil {
		return nil, "", false
	}
	return units, degraded, true
}

// jsonReader reads the plain JSON of a unit list; any surprise is
// errSlowPath.
type jsonReader struct {
	b []byte
	i int
}

func (d *jsonReader) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c, after white space.
func (d *jsonReader) byte(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek is the next byte after white space (0 at the end).
func (d *jsonReader) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// lit consumes the literal s (null, true, false).
func (d *jsonReader) lit(s string) bool {
	d.ws()
	if bytes.HasPrefix(d.b[d.i:], []byte(s)) {
		d.i += len(s)
		return true
	}
	return false
}

// raw reads a string without escapes, control characters or invalid
// UTF-8, and returns its bytes without the quotes.
func (d *jsonReader) raw() ([]byte, error) {
	if !d.byte('"') {
		return nil, errSlowPath{}
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return nil, errSlowPath{}
			}
			return s, nil
		case c == '\\' || c < 0x20:
			return nil, errSlowPath{}
		case c >= 0x80:
			ascii = false
		}
		d.i++
	}
	return nil, errSlowPath{}
}

// str reads a string, or null (which leaves s as it was).
func (d *jsonReader) str(s *string) error {
	if d.lit("null") {
		return nil
	}
	r, err := d.raw()
	if err != nil {
		return err
	}
	*s = string(r)
	return nil
}

// int reads a JSON integer that fits an int, or null.
func (d *jsonReader) int(n *int) error {
	if d.lit("null") {
		return nil
	}
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.i-digits < 18 && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || (d.b[digits] == '0' && d.i-digits > 1) {
		return errSlowPath{}
	}
	if d.i < len(d.b) {
		if c := d.b[d.i]; c == '.' || c == 'e' || c == 'E' || (c >= '0' && c <= '9') {
			return errSlowPath{}
		}
	}
	v, err := strconv.Atoi(string(d.b[start:d.i]))
	if err != nil {
		return errSlowPath{}
	}
	*n = v
	return nil
}

func (d *jsonReader) bool(v *bool) error {
	switch {
	case d.lit("true"):
		*v = true
	case d.lit("false"):
		*v = false
	case d.lit("null"):
	default:
		return errSlowPath{}
	}
	return nil
}

// object reads an object's members, calling member with each key. A key
// that comes twice is left to encoding/json (which merges some values).
func (d *jsonReader) object(member func(key []byte) error) error {
	if !d.byte('{') {
		return errSlowPath{}
	}
	if d.byte('}') {
		return nil
	}
	var seen [24][]byte // the keys so far, in the input
	n := 0
	for {
		k, err := d.raw()
		if err != nil {
			return err
		}
		for _, s := range seen[:n] {
			if bytes.Equal(s, k) {
				return errSlowPath{}
			}
		}
		if n == len(seen) {
			return errSlowPath{}
		}
		seen[n] = k
		n++
		if !d.byte(':') {
			return errSlowPath{}
		}
		if err := member(k); err != nil {
			return err
		}
		if d.byte('}') {
			return nil
		}
		if !d.byte(',') {
			return errSlowPath{}
		}
	}
}

func readUnits[T any](d *jsonReader, status func(*T) *UnitStatus, units *[]T, degraded *string) error {
	return d.object(func(k []byte) error {
		switch string(k) {
		case "units":
			if d.lit("null") {
				*units = nil
				return nil
			}
			if !d.byte('[') {
				return errSlowPath{}
			}
			list := make([]T, 0, bytes.Count(d.b[d.i:], []byte(`"name"`)))
			defer func() { *units = list }()
			if d.byte(']') {
				return nil
			}
			for {
				var zero T
				list = append(list, zero)
				if err := d.unit(status(&list[len(list)-1])); err != nil {
					return err
				}
				if d.byte(']') {
					return nil
				}
				if !d.byte(',') {
					return errSlowPath{}
				}
			}
		case "degraded":
			return d.str(degraded)
		}
		return errSlowPath{}
	})
}

func (d *jsonReader) unit(u *UnitStatus) error {
	return d.object(func(k []byte) error {
		switch string(k) {
		case "name":
			return d.str(&u.Name)
		case "description":
			return d.str(&u.Description)
		case "type":
			return d.str(&u.Type)
		case "state":
			if d.peek() == 'n' {
				return errSlowPath{}
			}
			r, err := d.raw()
			if err != nil {
				return err
			}
			if u.State.UnmarshalText(r) != nil {
				return errSlowPath{}
			}
			return nil
		case "sub":
			return d.str(&u.Sub)
		case "pid":
			return d.int(&u.PID)
		case "since":
			if d.peek() == 'n' {
				return errSlowPath{}
			}
			r, err := d.raw()
			if err != nil {
				return err
			}
			if u.Since.UnmarshalText(r) != nil {
				return errSlowPath{}
			}
			return nil
		case "restarts":
			return d.int(&u.Restarts)
		case "exit":
			if d.lit("null") {
				u.Exit = nil
				return nil
			}
			e := new(ExitStatus)
			u.Exit = e
			return d.object(func(k []byte) error {
				switch string(k) {
				case "code":
					return d.int(&e.Code)
				case "signal":
					return d.str(&e.Signal)
				}
				return errSlowPath{}
			})
		case "result":
			return d.str(&u.Result)
		case "status_text":
			return d.str(&u.StatusText)
		case "error":
			return d.str(&u.Error)
		case "last_error":
			return d.str(&u.LastError)
		case "blocked":
			return d.str(&u.Blocked)
		case "wanted":
			return d.bool(&u.Wanted)
		case "sources":
			if d.lit("null") {
				u.Sources = nil
				return nil
			}
			if !d.byte('[') {
				return errSlowPath{}
			}
			u.Sources = []string{}
			if d.byte(']') {
				return nil
			}
			for {
				var s string
				if err := d.str(&s); err != nil {
					return err
				}
				u.Sources = append(u.Sources, s)
				if d.byte(']') {
					return nil
				}
				if !d.byte(',') {
					return errSlowPath{}
				}
			}
		case "placement":
			return d.str(&u.Placement)
		case "host":
			return d.str(&u.Host)
		}
		return errSlowPath{}
	})
}

package tomldoc

import (
	"strconv"
	"unicode/utf8"
)

// decodeSimple decodes the shape most unit files have without the general
// decoder, which costs several times more per file: [table] headers and
// keys that are bare names, and values that are strings without escapes,
// decimal integers, decimals, booleans, and arrays of these (which may span
// lines, with comments). ok is false for anything else, and the general
// decoder then reads the document. It gives what the general decoder gives
// (string, int64, float64, bool, []any, map[string]any) and never accepts a
// document the general decoder refuses: FuzzSimpleAgrees holds it to that.
func decodeSimple(src string) (doc map[string]any, ok bool) {
	if !utf8.ValidString(src) {
		return nil, false
	}
	p := simple{src: src}
	root := make(map[string]any)
	cur := root
	for {
		p.space()
		if p.eof() {
			return root, true
		}
		switch c := p.src[p.i]; {
		case c == '\n' || c == '\r' || c == '#':
			if !p.endLine() {
				return nil, false
			}
		case c == '[':
			p.i++
			p.space()
			name, ok := p.bareKey()
			if !ok {
				return nil, false
			}
			p.space()
			if p.eof() || p.src[p.i] != ']' {
				return nil, false // [[array]], a dotted or quoted name
			}
			p.i++
			if _, dup := root[name]; dup {
				return nil, false
			}
			cur = make(map[string]any)
			root[name] = cur
			if !p.endLine() {
				return nil, false
			}
		default:
			key, ok := p.bareKey()
			if !ok {
				return nil, false
			}
			p.space()
			if p.eof() || p.src[p.i] != '=' {
				return nil, false
			}
			p.i++
			p.space()
			v, ok := p.value(0)
			if !ok {
				return nil, false
			}
			if _, dup := cur[key]; dup {
				return nil, false
			}
			cur[key] = v
			if !p.endLine() {
				return nil, false
			}
		}
	}
}

type simple struct {
	src string
	i   int
}

func (p *simple) eof() bool { return p.i >= len(p.src) }

// space skips spaces and tabs.
func (p *simple) space() {
	for p.i < len(p.src) && (p.src[p.i] == ' ' || p.src[p.i] == '\t') {
		p.i++
	}
}

// endLine takes an optional comment and the end of the line (or of the
// document); false for anything else.
func (p *simple) endLine() bool {
	p.space()
	if p.eof() {
		return true
	}
	if p.src[p.i] == '#' {
		if !p.comment() {
			return false
		}
		if p.eof() {
			return true
		}
	}
	return p.newline()
}

// comment skips a comment up to its line's end; false for a control
// character in it.
func (p *simple) comment() bool {
	p.i++ // '#'
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c == '\n' || c == '\r' {
			return true
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
		p.i++
	}
	return true
}

// newline takes "\n" or "\r\n".
func (p *simple) newline() bool {
	switch {
	case p.src[p.i] == '\n':
		p.i++
		return true
	case p.src[p.i] == '\r' && p.i+1 < len(p.src) && p.src[p.i+1] == '\n':
		p.i += 2
		return true
	}
	return false
}

func (p *simple) bareKey() (string, bool) {
	start := p.i
	for p.i < len(p.src) && simpleKeyByte(p.src[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", false
	}
	// A dotted key, or a key written next to something else: not simple.
	if p.i < len(p.src) && p.src[p.i] == '.' {
		return "", false
	}
	return p.src[start:p.i], true
}

// value reads a value; depth counts the arrays it is in.
func (p *simple) value(depth int) (any, bool) {
	if p.eof() {
		return nil, false
	}
	switch c := p.src[p.i]; {
	case c == '"' || c == '\'':
		return p.str(c)
	case c == '[':
		if depth > 0 {
			return nil, false // arrays of arrays go to the general decoder
		}
		return p.array()
	case c == 't' || c == 'f':
		for _, w := range []string{"true", "false"} {
			if len(p.src)-p.i >= len(w) && p.src[p.i:p.i+len(w)] == w {
				p.i += len(w)
				if !p.valueEnds() {
					return nil, false
				}
				return w == "true", true
			}
		}
		return nil, false
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return nil, false
}

// valueEnds reports whether what follows a bare value ends it.
func (p *simple) valueEnds() bool {
	if p.eof() {
		return true
	}
	switch p.src[p.i] {
	case ' ', '\t', '\n', '\r', '#', ',', ']':
		return true
	}
	return false
}

// str reads a one-line string without escapes, quoted with q.
func (p *simple) str(q byte) (any, bool) {
	if len(p.src)-p.i >= 3 && p.src[p.i+1] == q && p.src[p.i+2] == q {
		return nil, false // a multi-line string
	}
	start := p.i + 1
	for j := start; j < len(p.src); j++ {
		c := p.src[j]
		switch {
		case c == q:
			p.i = j + 1
			return p.src[start:j], true
		case c == '\\' && q == '"':
			return nil, false // escapes go to the general decoder
		case c < 0x20 && c != '\t' || c == 0x7f:
			return nil, false
		}
	}
	return nil, false
}

// number reads a decimal integer (int64) or a decimal with a fraction and
// no exponent (float64); other forms go to the general decoder.
func (p *simple) number() (any, bool) {
	start := p.i
	j := p.i
	if p.src[j] == '+' || p.src[j] == '-' {
		j++
	}
	digits := func() int {
		n := 0
		for j < len(p.src) && p.src[j] >= '0' && p.src[j] <= '9' {
			j++
			n++
		}
		return n
	}
	intStart := j
	n := digits()
	if n == 0 || n > 1 && p.src[intStart] == '0' {
		return nil, false // no digits, or a leading zero
	}
	isFloat := false
	if j < len(p.src) && p.src[j] == '.' {
		j++
		if digits() == 0 {
			return nil, false
		}
		isFloat = true
	}
	p.i = j
	if !p.valueEnds() {
		return nil, false // 1e5, 1_000, 0x1f, a date…
	}
	text := p.src[start:j]
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, false
		}
		return f, true
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return nil, false // out of range
	}
	return v, true
}

// array reads an array of values, which may span lines and hold comments.
func (p *simple) array() (any, bool) {
	p.i++ // '['
	out := []any{}
	for {
		if !p.gap() {
			return nil, false
		}
		if p.eof() {
			return nil, false
		}
		if p.src[p.i] == ']' {
			p.i++
			return out, true
		}
		v, ok := p.value(1)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if !p.gap() || p.eof() {
			return nil, false
		}
		switch p.src[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return out, true
		default:
			return nil, false
		}
	}
}

// gap skips spaces, line ends and comments inside an array.
func (p *simple) gap() bool {
	for !p.eof() {
		switch p.src[p.i] {
		case ' ', '\t':
			p.i++
		case '\n', '\r':
			if !p.newline() {
				return false
			}
		case '#':
			if !p.comment() {
				return false
			}
		default:
			return true
		}
	}
	return true
}

// simpleKeyByte is a byte of a bare key: A-Z a-z 0-9 _ -.
func simpleKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

package unit

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pos is a place in a file: 1-based line and 1-based byte column, as in
// toml.ParseError.
type pos struct{ line, col int }

func (p pos) valid() bool { return p.line > 0 }

// posIndex says where each key and each value of one TOML document is
// written. The toml package keeps no key positions, so a small scanner walks
// the source of a document that has already parsed without error.
//
// Paths are the key's parts joined by pathSep; array elements add a part
// "[N]". The first place a path is written wins.
type posIndex struct {
	keys  map[string]pos
	vals  map[string]pos
	lines []int // byte offset of the start of each line
}

const pathSep = "\x00"

func pathOf(parts ...string) string { return strings.Join(parts, pathSep) }

func elemPath(path string, i int) string { return path + pathSep + "[" + strconv.Itoa(i) + "]" }

// key returns where the key path is written, or the zero pos.
func (x *posIndex) key(path string) pos { return x.keys[path] }

// val returns where the value of path starts, falling back to its key.
func (x *posIndex) val(path string) pos {
	if p, ok := x.vals[path]; ok {
		return p
	}
	return x.keys[path]
}

func (x *posIndex) at(off int) pos {
	line := sort.Search(len(x.lines), func(i int) bool { return x.lines[i] > off }) // first line after off
	if line == 0 {
		return pos{1, 1}
	}
	return pos{line, off - x.lines[line-1] + 1}
}

// maxScanDepth bounds nesting of arrays and inline tables in the scanner.
const maxScanDepth = 256

type posScanner struct {
	src string
	i   int
	x   *posIndex
}

// indexPositions scans src, a TOML document that parsed without error.
// It never fails: on anything unexpected it skips ahead, so at worst some
// positions are missing.
func indexPositions(src string) *posIndex {
	x := &posIndex{keys: make(map[string]pos), vals: make(map[string]pos), lines: lineStarts(src)}
	s := &posScanner{src: src, x: x}
	s.document()
	return x
}

func (s *posScanner) eof() bool { return s.i >= len(s.src) }

func (s *posScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *posScanner) has(prefix string) bool { return strings.HasPrefix(s.src[s.i:], prefix) }

// space skips blanks within a line.
func (s *posScanner) space() {
	for !s.eof() && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

// blank skips blanks, newlines and comments.
func (s *posScanner) blank() {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		case '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *posScanner) document() {
	if s.has("\ufeff") {
		s.i = len("\ufeff")
	}
	var table []string
	for {
		s.blank()
		if s.eof() {
			return
		}
		start := s.i
		if s.peek() == '[' {
			double := s.has("[[")
			s.i++
			if double {
				s.i++
			}
			s.space()
			table = s.key(nil)
			s.space()
			if s.peek() == ']' {
				s.i++
			}
			if double && s.peek() == ']' {
				s.i++
			}
		} else {
			path := s.key(table)
			s.space()
			if s.peek() == '=' {
				s.i++
			}
			s.space()
			s.value(path, 0)
		}
		if s.i == start {
			s.i++ // never stall
		}
	}
}

// key reads a dotted key and records the place of each of its prefixes under
// base. It returns base plus the key's parts.
func (s *posScanner) key(base []string) []string {
	path := append([]string(nil), base...)
	for !s.eof() {
		start := s.i
		part, ok := s.keyPart()
		if !ok {
			break
		}
		path = append(path, part)
		p := pathOf(path...)
		if _, seen := s.x.keys[p]; !seen {
			s.x.keys[p] = s.x.at(start)
		}
		s.space()
		if s.peek() != '.' {
			break
		}
		s.i++
		s.space()
	}
	return path
}

func (s *posScanner) keyPart() (string, bool) {
	switch c := s.peek(); c {
	case '"':
		start := s.i + 1
		s.skipBasic()
		end := max(start, s.i-1)
		return unescapeBasic(s.src[start:end]), true
	case '\'':
		start := s.i + 1
		s.i++
		for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
			s.i++
		}
		end := s.i
		if !s.eof() && s.src[s.i] == '\'' {
			s.i++
		}
		return s.src[start:end], true
	default:
		start := s.i
		for !s.eof() && bareKeyByte(s.src[s.i]) {
			s.i++
		}
		return s.src[start:s.i], s.i > start
	}
}

func bareKeyByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '=', '.', '[', ']', '{', '}', '"', '\'', '#', ',':
		return false
	}
	return true
}

// skipBasic skips a one-line basic string starting at its quote.
func (s *posScanner) skipBasic() {
	s.i++
	for !s.eof() {
		switch s.src[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		case '\n':
			return
		default:
			s.i++
		}
	}
	s.i = min(s.i, len(s.src))
}

// skipMulti skips a multi-line string starting at its opening delimiter,
// three double or three single quotes, including up to two quotes that end
// its content.
func (s *posScanner) skipMulti(delim string, escapes bool) {
	s.i += 3
	for !s.eof() {
		if escapes && s.src[s.i] == '\\' {
			s.i += 2
			continue
		}
		if s.has(delim) {
			s.i += 3
			for n := 0; n < 2 && !s.eof() && s.src[s.i] == delim[0]; n++ {
				s.i++
			}
			return
		}
		s.i++
	}
	s.i = min(s.i, len(s.src))
}

func (s *posScanner) value(path []string, depth int) {
	p := pathOf(path...)
	if _, seen := s.x.vals[p]; !seen {
		s.x.vals[p] = s.x.at(s.i)
	}
	switch {
	case s.has(`"""`):
		s.skipMulti(`"""`, true)
	case s.has(`'''`):
		s.skipMulti(`'''`, false)
	case s.peek() == '"':
		s.skipBasic()
	case s.peek() == '\'':
		s.i++
		for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
			s.i++
		}
		if !s.eof() && s.src[s.i] == '\'' {
			s.i++
		}
	case s.peek() == '[' && depth < maxScanDepth:
		s.i++
		for n := 0; ; n++ {
			s.blank()
			if s.eof() {
				return
			}
			if s.peek() == ']' {
				s.i++
				return
			}
			start := s.i
			s.value(append(path[:len(path):len(path)], "["+strconv.Itoa(n)+"]"), depth+1)
			s.blank()
			if s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.i++
			}
		}
	case s.peek() == '{' && depth < maxScanDepth:
		s.i++
		for {
			s.blank()
			if s.eof() {
				return
			}
			if s.peek() == '}' {
				s.i++
				return
			}
			start := s.i
			k := s.key(path)
			s.space()
			if s.peek() == '=' {
				s.i++
			}
			s.space()
			s.value(k, depth+1)
			s.blank()
			if s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.i++
			}
		}
	default:
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

// unescapeBasic decodes the escapes of a TOML basic string; an escape it
// does not know is kept as written.
func unescapeBasic(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case '"', '\\':
			b.WriteByte(c)
		case 'x', 'u', 'U':
			n := 2
			if c == 'u' {
				n = 4
			} else if c == 'U' {
				n = 8
			}
			if i+1+n > len(s) {
				b.WriteByte('\\')
				b.WriteByte(c)
				continue
			}
			r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(r)) {
				b.WriteByte('\\')
				b.WriteByte(c)
				continue
			}
			b.WriteRune(rune(r))
			i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

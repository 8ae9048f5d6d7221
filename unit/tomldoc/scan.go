package tomldoc

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Pos is a place in a document: 1-based line and 1-based byte column, as in
// toml.ParseError.
type Pos struct{ Line, Col int }

// Valid reports whether p is a place (the zero Pos is not).
func (p Pos) Valid() bool { return p.Line > 0 }

// Index says where each key and each value of one document is written.
// Paths are a key's parts, from the top of the document; an array element
// adds the part Elem(N). The first place a path is written wins.
type Index struct {
	lines []int        // byte offset of the start of each line
	nodes map[edge]int // path trie: a child of a node, by part
	keys  []Pos        // by node
	vals  []Pos        // by node
}

// edge names a child in the path trie: a key part, or an array element.
type edge struct {
	parent int
	part   string
	elem   int // -1 for a key part
}

// Elem is the path part of the element i of an array.
func Elem(i int) string { return "[" + strconv.Itoa(i) + "]" }

// NewIndex scans src. It never fails: on anything unexpected it skips
// ahead, so on a document that does not parse some positions are missing.
// Its work and memory are linear in the size of src.
func NewIndex(src string) *Index {
	x := &Index{lines: lineStarts(src), nodes: make(map[edge]int), keys: []Pos{{}}, vals: []Pos{{}}}
	s := &scanner{src: src, x: x}
	s.document()
	return x
}

// Key returns where the key path is written, or the zero Pos.
func (x *Index) Key(path ...string) Pos {
	if n, ok := x.find(path); ok {
		return x.keys[n]
	}
	return Pos{}
}

// Value returns where the value of path starts, falling back to its key.
func (x *Index) Value(path ...string) Pos {
	n, ok := x.find(path)
	if !ok {
		return Pos{}
	}
	if x.vals[n].Valid() {
		return x.vals[n]
	}
	return x.keys[n]
}

// At returns the position of the byte offset off.
func (x *Index) At(off int) Pos { return posAt(x.lines, off) }

func (x *Index) find(path []string) (int, bool) {
	n := 0
	for _, p := range path {
		e := edge{parent: n, part: p, elem: -1}
		if len(p) > 2 && p[0] == '[' && p[len(p)-1] == ']' {
			if i, err := strconv.Atoi(p[1 : len(p)-1]); err == nil && i >= 0 {
				e = edge{parent: n, elem: i}
			}
		}
		c, ok := x.nodes[e]
		if !ok {
			return 0, false
		}
		n = c
	}
	return n, len(path) > 0
}

func (x *Index) child(parent int, e edge) int {
	e.parent = parent
	if c, ok := x.nodes[e]; ok {
		return c
	}
	c := len(x.keys)
	x.nodes[e] = c
	x.keys = append(x.keys, Pos{})
	x.vals = append(x.vals, Pos{})
	return c
}

func posAt(lines []int, off int) Pos {
	line := sort.Search(len(lines), func(i int) bool { return lines[i] > off }) // first line after off
	if line == 0 {
		return Pos{1, 1}
	}
	return Pos{line, off - lines[line-1] + 1}
}

// lineStarts returns the byte offset of the start of each line of src.
func lineStarts(src string) []int {
	starts := []int{0}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// counts is what a scan counts, for Check.
type counts struct {
	keys, tables  int // so far
	depth, keyLen int // the deepest level, the longest key so far
	// Offsets of the first key, table, level and key length past the
	// limits; -1 if none.
	keyAt, tableAt, depthAt, lenAt int
	lim                            Limits
}

// scanner walks a document once, front to back, never going back: with an
// index it records positions, with counts it counts. It keeps its own stack
// of open arrays and inline tables, so nesting costs no recursion.
type scanner struct {
	src string
	i   int
	x   *Index  // or nil
	c   *counts // or nil
}

// place is where a key or value is in the document's tree.
type place struct {
	node  int // its path in the index
	depth int // its level
	len   int // the length of its full key, in bytes as written: the keys above it, dots, its own
}

// frame is an open array or inline table.
type frame struct {
	kind byte // '[' or '{'
	at   place
	n    int // elements so far (arrays)
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *scanner) has(prefix string) bool { return strings.HasPrefix(s.src[s.i:], prefix) }

// space skips blanks within a line.
func (s *scanner) space() {
	for !s.eof() && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

// blank skips blanks, newlines and comments.
func (s *scanner) blank() {
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

func (s *scanner) document() {
	if s.has("\ufeff") {
		s.i = len("\ufeff")
	}
	var table place
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
			s.countTable(start)
			s.space()
			table = s.key(place{})
			if double {
				table.depth++
				s.level(table, start)
			}
			s.space()
			if s.peek() == ']' {
				s.i++
			}
			if double && s.peek() == ']' {
				s.i++
			}
		} else {
			s.countKey(start)
			at := s.key(table)
			s.space()
			if s.peek() == '=' {
				s.i++
			}
			s.space()
			s.value(at)
		}
		if s.i == start {
			s.i++ // never stall
		}
	}
}

// key reads a dotted key below at, and records the place of each of its
// prefixes. It returns the key's place.
func (s *scanner) key(at place) place {
	for !s.eof() {
		start := s.i
		part, ok := s.keyPart()
		if !ok {
			break
		}
		at.depth++
		if at.len > 0 {
			at.len++ // the dot
		}
		at.len += s.i - start
		s.level(at, start)
		if s.x != nil {
			at.node = s.x.child(at.node, edge{part: part, elem: -1})
			if !s.x.keys[at.node].Valid() {
				s.x.keys[at.node] = s.x.At(start)
			}
		}
		s.space()
		if s.peek() != '.' {
			break
		}
		s.i++
		s.space()
	}
	return at
}

func (s *scanner) keyPart() (string, bool) {
	switch c := s.peek(); c {
	case '"':
		start := s.i + 1
		s.skipBasic()
		if s.x == nil {
			return "", true
		}
		end := max(start, s.i-1)
		return unescapeBasic(s.src[start:end]), true
	case '\'':
		s.i++
		start := s.i
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
func (s *scanner) skipBasic() {
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

// skipLiteral skips a one-line literal string starting at its quote.
func (s *scanner) skipLiteral() {
	s.i++
	for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.i++
	}
	if !s.eof() && s.src[s.i] == '\'' {
		s.i++
	}
}

// skipMulti skips a multi-line string starting at its opening delimiter,
// three double or three single quotes, including up to two quotes that end
// its content.
func (s *scanner) skipMulti(delim string, escapes bool) {
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

// value reads the value at at, with every array and inline table inside it.
func (s *scanner) value(at place) {
	var stack []frame
	for {
		start := s.i
		if s.x != nil && !s.x.vals[at.node].Valid() {
			s.x.vals[at.node] = s.x.At(s.i)
		}
		opened := false
		switch {
		case s.has(`"""`):
			s.skipMulti(`"""`, true)
		case s.has(`'''`):
			s.skipMulti(`'''`, false)
		case s.peek() == '"':
			s.skipBasic()
		case s.peek() == '\'':
			s.skipLiteral()
		case s.peek() == '[':
			s.i++
			stack = append(stack, frame{kind: '[', at: at})
			opened = true
		case s.peek() == '{':
			s.countTable(s.i)
			s.i++
			stack = append(stack, frame{kind: '{', at: at})
			opened = true
		default:
			for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
				s.i++
			}
		}
		if s.i == start && !s.eof() && len(stack) > 0 {
			s.i++ // never stall inside a container
		}
		// Find the next value: close the containers that end here.
		for {
			if len(stack) == 0 {
				return
			}
			f := &stack[len(stack)-1]
			s.blank()
			if !opened && s.peek() == ',' {
				s.i++
				s.blank()
			}
			opened = false
			if s.eof() {
				return
			}
			if (f.kind == '[' && s.peek() == ']') || (f.kind == '{' && s.peek() == '}') {
				s.i++
				stack = stack[:len(stack)-1]
				continue
			}
			if f.kind == '[' {
				at = f.at
				at.depth++
				s.level(at, s.i)
				if s.x != nil {
					at.node = s.x.child(f.at.node, edge{elem: f.n})
				}
				f.n++
				break
			}
			s.countKey(s.i)
			at = s.key(f.at)
			s.space()
			if s.peek() == '=' {
				s.i++
			}
			s.space()
			break
		}
	}
}

func (s *scanner) countKey(off int) {
	if c := s.c; c != nil {
		c.keys++
		if c.keys > c.lim.Keys && c.keyAt < 0 {
			c.keyAt = off
		}
	}
}

func (s *scanner) countTable(off int) {
	if c := s.c; c != nil {
		c.tables++
		if c.tables > c.lim.Tables && c.tableAt < 0 {
			c.tableAt = off
		}
	}
}

// level notes that the scan reached at, at the byte offset off.
func (s *scanner) level(at place, off int) {
	if c := s.c; c != nil {
		c.depth = max(c.depth, at.depth)
		if at.depth > c.lim.Depth && c.depthAt < 0 {
			c.depthAt = off
		}
		c.keyLen = max(c.keyLen, at.len)
		if at.len > c.lim.KeyLen && c.lenAt < 0 {
			c.lenAt = off
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

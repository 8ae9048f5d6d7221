package config

import (
	"strings"
)

// keyPos is where a key is set in a TOML file: its line, the column of the
// key and the column of its value (1-based, in bytes, as toml counts).
type keyPos struct {
	key             []string
	line, col, vcol int
}

// locator finds the position of keys in a TOML file the toml package has
// already parsed without error (it reports no positions of its own).
type locator struct{ entries []keyPos }

// locate scans the lines of a valid TOML file for table headers and
// key = value lines, skipping the inside of strings, comments, and values
// spanning lines. Keys inside inline tables are not recorded; find falls
// back to the inline table itself.
func locate(data []byte) locator {
	var (
		l      locator
		table  []string
		depth  int    // brackets and braces open in a value spanning lines
		mlOpen string // the delimiter closing a multi-line string we are inside
	)
	for i, line := range strings.Split(string(data), "\n") {
		ln := i + 1
		if mlOpen != "" {
			end := strings.Index(line, mlOpen)
			if end < 0 {
				continue
			}
			mlOpen = ""
			depth, mlOpen = scanValue(line, end+3, depth)
			continue
		}
		if depth > 0 {
			depth, mlOpen = scanValue(line, 0, depth)
			continue
		}
		j := skipSpace(line, 0)
		if j >= len(line) || line[j] == '#' || line[j] == '\r' {
			continue
		}
		if line[j] == '[' {
			start := j + 1
			if strings.HasPrefix(line[j:], "[[") {
				start = j + 2
			}
			start = skipSpace(line, start)
			table, _ = parseKey(line, start)
			l.entries = append(l.entries, keyPos{key: table, line: ln, col: start + 1, vcol: start + 1})
			continue
		}
		pieces, end := parseKey(line, j)
		eq := skipSpace(line, end)
		if eq >= len(line) || line[eq] != '=' {
			continue
		}
		v := skipSpace(line, eq+1)
		full := append(append([]string(nil), table...), pieces...)
		l.entries = append(l.entries, keyPos{key: full, line: ln, col: j + 1, vcol: v + 1})
		depth, mlOpen = scanValue(line, v, 0)
	}
	return l
}

// find returns the position of key (of its value if atValue): where it is
// set, else where a key below it is first set (a dotted key), else where its
// nearest parent is (an inline table), else the start of the file.
func (l locator) find(key []string, atValue bool) (line, col int) {
	for _, e := range l.entries {
		if equalKeys(e.key, key) {
			if atValue {
				return e.line, e.vcol
			}
			return e.line, e.col
		}
	}
	for _, e := range l.entries {
		if len(e.key) > len(key) && equalKeys(e.key[:len(key)], key) {
			return e.line, e.col
		}
	}
	for n := len(key) - 1; n > 0; n-- {
		for _, e := range l.entries {
			if equalKeys(e.key, key[:n]) {
				return e.line, e.vcol
			}
		}
	}
	return 1, 1
}

func equalKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// parseKey reads a possibly dotted key of bare and quoted parts starting at
// i, and returns its parts and the index after it.
func parseKey(s string, i int) ([]string, int) {
	var parts []string
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return parts, i
		}
		switch s[i] {
		case '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			parts = append(parts, b.String())
			i++
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return append(parts, s[i+1:]), len(s)
			}
			parts = append(parts, s[i+1:i+1+end])
			i += end + 2
		default:
			start := i
			for i < len(s) && isBare(s[i]) {
				i++
			}
			parts = append(parts, s[start:i])
		}
		i = skipSpace(s, i)
		if i >= len(s) || s[i] != '.' {
			return parts, i
		}
		i++
	}
}

func isBare(c byte) bool {
	return c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// scanValue scans a value from index i, starting with depth open brackets,
// and returns the brackets still open at the end of the line and the
// delimiter of a multi-line string left open ("" if none).
func scanValue(s string, i, depth int) (int, string) {
	for i < len(s) {
		switch c := s[i]; c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '"', '\'':
			delim := string([]byte{c, c, c})
			if strings.HasPrefix(s[i:], delim) {
				end := strings.Index(s[i+3:], delim)
				if end < 0 {
					return depth, delim
				}
				i += 3 + end + 3
				continue
			}
			i++
			for i < len(s) && s[i] != c {
				if c == '"' && s[i] == '\\' {
					i++
				}
				i++
			}
		}
		i++
	}
	return depth, ""
}

package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/opsvc/opsvc/supervisor"
)

// palette colours text, or leaves it as it is when colour is off.
type palette struct{ on bool }

// colors decides colour for stdout: --color, then NO_COLOR, then whether
// stdout is a terminal.
func (c *cli) colors() palette { return c.colorsFor(c.stdout) }

func (c *cli) colorsFor(w io.Writer) palette {
	switch c.args.get("color") {
	case "always":
		return palette{on: true}
	case "never":
		return palette{}
	}
	if c.env.getenv("NO_COLOR") != "" || c.env.getenv("TERM") == "dumb" {
		return palette{}
	}
	return palette{on: isTerminal(w)}
}

func (p palette) wrap(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) red(s string) string { return p.wrap("31", s) }

func (p palette) state(st supervisor.State, s string) string {
	switch st {
	case supervisor.Active:
		return p.wrap("32", s)
	case supervisor.Failed:
		return p.wrap("1;31", s)
	case supervisor.Activating, supervisor.Deactivating:
		return p.wrap("33", s)
	}
	return s
}

// unit colours a unit's name by a hash of it, so each unit keeps its colour.
func (p palette) unit(name string) string {
	codes := []string{"36", "35", "34", "33", "32", "96", "95", "94"}
	h := fnv.New32a()
	h.Write([]byte(name))
	return p.wrap(codes[h.Sum32()%uint32(len(codes))], name)
}

// escapeControl makes a worker's text safe for a terminal: control
// characters and invalid UTF-8 are shown as \xNN, tabs are kept.
func escapeControl(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 0x20 && b != '\t') || b == 0x7f || b >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

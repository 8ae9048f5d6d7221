package unit

import (
	"fmt"
	"strings"
)

// maxNameLen is the longest unit name, in bytes.
const maxNameLen = 128

const allowedNames = "names use A-Z a-z 0-9 : _ . -, at most one @ (NAME@ for a template, NAME@INST for an instance), " +
	"do not start with '.', and are at most 128 bytes"

// ValidName reports whether name can name a unit: characters
// [A-Za-z0-9:_.-], not starting with '.', at most one '@' with a non-empty
// prefix before it ("tick@" is a template, "tick@a" an instance), at most
// maxNameLen bytes, and no path separator.
func ValidName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("unit: invalid unit name %q: %s (%s)", name, why, allowedNames)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxNameLen:
		return bad(fmt.Sprintf("%d bytes long", len(name)))
	case strings.ContainsAny(name, `/\`):
		return bad("it contains a path separator")
	case name[0] == '.':
		return bad("it starts with '.'")
	case name[0] == '@':
		return bad("nothing before '@'")
	case strings.Count(name, "@") > 1:
		return bad("more than one '@'")
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return bad(fmt.Sprintf("%q is not allowed", rune(name[i])))
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '_' || c == '.' || c == '-' || c == '@'
}

// splitName splits "tick@a" into ("tick", "a", true); a name without '@'
// gives (name, "", false). A template "tick@" gives ("tick", "", true).
func splitName(name string) (prefix, inst string, at bool) {
	prefix, inst, at = strings.Cut(name, "@")
	return prefix, inst, at
}

// isTemplate reports whether name is a template name such as "tick@".
func isTemplate(name string) bool {
	_, inst, at := splitName(name)
	return at && inst == ""
}

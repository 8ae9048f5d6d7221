package unit

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		want string // "" = valid, else a part of the error
	}{
		{"web", ""},
		{"Web-1_a:b.c", ""},
		{"tick@", ""},
		{"tick@a.b", ""},
		{strings.Repeat("a", 128), ""},
		{"", "empty"},
		{strings.Repeat("a", 129), "129 bytes"},
		{".hidden", "starts with '.'"},
		{"a/b", "path separator"},
		{`a\b`, "path separator"},
		{"..", "starts with '.'"},
		{"@x", "nothing before '@'"},
		{"a@b@c", "more than one '@'"},
		{"a b", `' ' is not allowed`},
		{"naïve", "is not allowed"},
		{"a\x00", "is not allowed"},
	} {
		err := ValidName(tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidName(%q) = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidName(%q) = %v, want an error containing %q", tt.name, err, tt.want)
		case err != nil && !strings.Contains(err.Error(), "A-Z a-z 0-9 : _ . -"):
			t.Errorf("ValidName(%q) = %v, want the error to say what is allowed", tt.name, err)
		}
	}
}

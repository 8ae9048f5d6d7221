package unit

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestIndexPositions(t *testing.T) {
	src := "\ufeff# comment with key = \"x\"\n" + // line 1
		"[unit]\n" + // 2
		"description = \"\"\"\n" + // 3
		"fake = 1\n" + // 4: inside a multi-line string
		"\"\"\"\n" + // 5
		"  after = [ \"a\",   # comment\n" + // 6
		"    'b' ]\n" + // 7
		"[service]\n" + // 8
		"environment.PORT = \"1\"\n" + // 9
		"\"quoted key\" = 'x'\n" + // 10
		"env = { A = \"1\", B = { C = 2 } }\n" + // 11
		"[ service . inner ]\n" + // 12
		"x = 1979-05-27 07:32:00Z\n" + // 13
		"y = '''\n[not]\nz = 1'''\n" // 14-16
	var doc map[string]any
	if _, err := toml.Decode(src, &doc); err != nil {
		t.Fatalf("test document does not parse: %v", err)
	}
	x := indexPositions(src)
	for _, tt := range []struct {
		path     []string
		key, val pos
	}{
		{[]string{"unit"}, pos{2, 2}, pos{}},
		{[]string{"unit", "description"}, pos{3, 1}, pos{3, 15}},
		{[]string{"unit", "after"}, pos{6, 3}, pos{6, 11}},
		{[]string{"unit", "after", "[0]"}, pos{}, pos{6, 13}},
		{[]string{"unit", "after", "[1]"}, pos{}, pos{7, 5}},
		{[]string{"service", "environment"}, pos{9, 1}, pos{}},
		{[]string{"service", "environment", "PORT"}, pos{9, 13}, pos{9, 20}},
		{[]string{"service", "quoted key"}, pos{10, 1}, pos{10, 16}},
		{[]string{"service", "env", "A"}, pos{11, 9}, pos{11, 13}},
		{[]string{"service", "env", "B", "C"}, pos{11, 24}, pos{11, 28}},
		{[]string{"service", "inner"}, pos{12, 13}, pos{}},
		{[]string{"service", "inner", "x"}, pos{13, 1}, pos{13, 5}},
		{[]string{"service", "inner", "y"}, pos{14, 1}, pos{14, 5}},
	} {
		p := pathOf(tt.path...)
		if got := x.keys[p]; got != tt.key {
			t.Errorf("key %q at %v, want %v", tt.path, got, tt.key)
		}
		if got := x.vals[p]; got != tt.val {
			t.Errorf("value of %q at %v, want %v", tt.path, got, tt.val)
		}
	}
	for _, p := range []string{pathOf("unit", "fake"), pathOf("not"), pathOf("service", "inner", "z")} {
		if _, ok := x.keys[p]; ok {
			t.Errorf("key %q found inside a string", p)
		}
	}
}

func TestUnescapeBasic(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:       "plain",
		`a\"b\\c\tz`:  "a\"b\\c\tz",
		`\u00e9\x41`:  "éA",
		`\U0001F600`:  "😀",
		`\u12`:        `\u12`,
		`\q`:          `\q`,
		`trailing\`:   `trailing\`,
		`\uD800 half`: `\uD800 half`,
	} {
		if got := unescapeBasic(in); got != want {
			t.Errorf("unescapeBasic(%q) = %q, want %q", in, got, want)
		}
	}
}

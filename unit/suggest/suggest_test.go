package suggest

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"max_turns", "max_turns", 0}, {"max_turn", "max_turns", 1}, {"modle", "model", 1},
		{"lisen", "listen", 1}, {"abc", "", 3}, {"", "abc", 3}, {"group", "model", 5}, {"exce", "exec", 1},
		{"ab", "ba", 1}, {"abc", "ca", 3},
	} {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"exec", "restart", "stop_timeout", "max_continuations", "type"}
	for _, tt := range []struct {
		s, want string
		ok      bool
	}{
		{"exce", "exec", true},
		{"restrat", "restart", true},
		{"stop-timout", "stop_timeout", true},
		{"Max-Continuations", "max_continuations", true},
		{"EXEC", "exec", true},
		{"tpye", "type", true},
		{"xyz", "", false},
		{"workdir", "", false},
		{strings.Repeat("exec", 20), "", false},
	} {
		got, ok := Closest(tt.s, keys)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tt.s, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := Closest("a", nil); ok {
		t.Error("Closest with no candidates found one")
	}
	if !Same("Stop-Timeout", "stop_timeout") || Same("stop", "top") {
		t.Error("Same is wrong")
	}
}

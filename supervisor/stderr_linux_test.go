package supervisor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opsvc/opsvc/supervisor/logs"
)

// TestStderrToStdout: with stderr = "stdout" a process gets one pipe for
// both streams, and what it writes to stderr is logged as stdout; a unit
// without the setting keeps two.
func TestStderrToStdout(t *testing.T) {
	const script = `if [ "$(readlink /proc/$$/fd/1)" = "$(readlink /proc/$$/fd/2)" ]; then echo one-pipe; else echo two-pipes; fi; echo err-line >&2; exec sleep 1000`
	h := newHarness(t, map[string]string{
		"one.toml": "[service]\nstderr = \"stdout\"\nexec = [\"/bin/sh\", \"-c\", " + quoteTOML(script) + "]\n",
		"two.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", " + quoteTOML(script) + "]\n",
	})
	h.waitEvent("unit.ready", "one")
	h.waitEvent("unit.ready", "two")
	h.waitLog("one", "err-line")
	h.waitLog("two", "err-line")
	lines := func(unit string) map[string]string {
		t.Helper()
		code, b := h.do("GET", "/v1/logs?unit="+unit+"&n=100", nil)
		if code != 200 {
			t.Fatalf("GET /v1/logs?unit=%s = %d %s", unit, code, b)
		}
		out := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var line logs.Line
			if json.Unmarshal([]byte(l), &line) == nil {
				out[line.Text] = line.Stream
			}
		}
		return out
	}
	one, two := lines("one"), lines("two")
	if _, ok := one["one-pipe"]; !ok {
		t.Errorf(`stderr = "stdout": fd 1 and 2 are not the same pipe: %v`, one)
	}
	if one["err-line"] != "stdout" {
		t.Errorf(`stderr = "stdout": a stderr line logged as %q, want stdout`, one["err-line"])
	}
	if _, ok := two["two-pipes"]; !ok {
		t.Errorf("default: fd 1 and 2 should be separate pipes: %v", two)
	}
	if two["err-line"] != "stderr" {
		t.Errorf("default: a stderr line logged as %q, want stderr", two["err-line"])
	}
}

// quoteTOML quotes s as a TOML basic string.
func quoteTOML(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

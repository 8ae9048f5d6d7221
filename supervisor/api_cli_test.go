//go:build unix

package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/logs"
)

// TestCLIRoutesRefuseBadInput: every input of the CLI's routes is checked
// and bounded, and answered {error, hint} with a fitting status.
func TestCLIRoutesRefuseBadInput(t *testing.T) {
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	h.waitEvent("unit.ready", "a")
	many := url.Values{}
	for i := range maxLogUnits + 1 {
		many.Add("unit", "u"+strings.Repeat("x", i%10))
	}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/v1/logs", 400},
		{"GET", "/v1/logs?" + many.Encode(), 400},
		{"GET", "/v1/logs?unit=a&n=-1", 400},
		{"GET", "/v1/logs?unit=a&n=lots", 400},
		{"GET", "/v1/logs?unit=a&grep=%28", 400},
		{"GET", "/v1/logs?unit=a&grep=" + strings.Repeat("a", 1025), 400},
		{"GET", "/v1/logs?unit=a&since=yesterday", 400},
		{"GET", "/v1/logs?unit=a&stream=stdin", 400},
		{"GET", "/v1/logs?unit=..%2Fetc", 400},
		{"GET", "/v1/logs?unit=a&unit=nosuch", 404},
		{"POST", "/v1/units/a/kill?signal=NOPE", 400},
		{"POST", "/v1/units/nosuch/kill", 404},
		{"POST", "/v1/units/nosuch/reset-failed", 404},
		{"POST", "/v1/units/nosuch/enable", 404},
		{"GET", "/v1/units/nosuch/enabled", 404},
		{"GET", "/v1/units/.x/enabled", 400},
	} {
		code, b := h.do(tc.method, tc.path, nil)
		var e struct{ Error, Hint *string }
		if code != tc.code || json.Unmarshal(b, &e) != nil || e.Error == nil || *e.Error == "" {
			t.Errorf("%s %.80s = %d %s, want %d with {error, hint}", tc.method, tc.path, code, b, tc.code)
		}
	}
}

// TestEnableDisableRoutes: the choice is answered, kept in the state
// directory, and read back.
func TestEnableDisableRoutes(t *testing.T) {
	h := newHarness(t, map[string]string{"a.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"})
	enabled := func() (bool, string) {
		code, b := h.do("GET", "/v1/units/a/enabled", nil)
		var out api.EnabledResult
		if code != 200 || strictDecode(b, &out) != nil {
			t.Fatalf("GET enabled = %d %s, want 200 with exactly the fields of EnabledResult", code, b)
		}
		return out.Enabled, out.From
	}
	if en, from := enabled(); !en || from != "file" {
		t.Fatalf("before any choice: %v from %s, want true from file", en, from)
	}
	code, b := h.do("POST", "/v1/units/a/disable", nil)
	var dis api.EnableResult
	if code != 200 || strictDecode(b, &dis) != nil || !dis.OK || dis.Enabled {
		t.Fatalf("disable = %d %s, want 200 with EnableResult{ok: true, enabled: false}", code, b)
	}
	if en, from := enabled(); en || from != "choice" {
		t.Errorf("after disable: %v from %s", en, from)
	}
	data, err := os.ReadFile(filepath.Join(h.state, choicesFile))
	if err != nil || !strings.Contains(string(data), `"a": false`) {
		t.Errorf("choices file = %q, %v", data, err)
	}
	h.waitEvent("api.disable", "a")
	if code, _ := h.do("POST", "/v1/units/a/enable", nil); code != 200 {
		t.Fatal("enable failed")
	}
	if en, _ := enabled(); !en {
		t.Error("enable did not take")
	}
}

// TestLogsQueryFiltersAndFollows: lines of several units merged by time and
// filtered; a follower gets new lines and ends with its client.
func TestLogsQueryFiltersAndFollows(t *testing.T) {
	h := newHarness(t, map[string]string{
		"a.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo out-a; echo err-a >&2; exec sleep 1000\"]\n",
		"b.toml": "[service]\nexec = [\"/bin/sh\", \"-c\", \"echo out-b; exec sleep 1000\"]\n",
	})
	h.waitEvent("unit.ready", "a")
	h.waitEvent("unit.ready", "b")
	h.waitLog("a", "err-a")
	h.waitLog("a", "out-a")
	h.waitLog("b", "out-b")
	get := func(q string) []logs.Line {
		t.Helper()
		code, b := h.do("GET", "/v1/logs?"+q, nil)
		if code != 200 {
			t.Fatalf("GET /v1/logs?%s = %d %s", q, code, b)
		}
		var out []logs.Line
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var line logs.Line
			if json.Unmarshal([]byte(l), &line) == nil {
				out = append(out, line)
			}
		}
		return out
	}
	if lines := get("unit=a&unit=b&n=100&grep=%5Eout-"); len(lines) != 2 {
		t.Errorf("grep ^out- over a and b: %+v", lines)
	}
	if lines := get("unit=a&n=100&stream=stderr"); len(lines) != 1 || lines[0].Text != "err-a" {
		t.Errorf("stderr of a: %+v", lines)
	}
	if lines := get("unit=a&unit=b&n=0"); len(lines) != 0 {
		t.Errorf("n=0 gave %+v", lines)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://opsvc/v1/logs?unit=a&unit=b&n=0&follow=1", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h.do("POST", "/v1/units/b/restart?wait=1", nil)
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.Contains(sc.Text(), "out-b") {
		t.Fatalf("follower got %q, %v; want b's new line", sc.Text(), sc.Err())
	}
	cancel() // goleak (TestMain) checks the follower's goroutines end
}

// TestDisableOutlivesDaemon: a unit disabled with opsvc disable is not started
// by the next daemon on the same state directory, nor by a reload, though its
// file says enabled; opsvc enable and a start bring it back.
func TestDisableOutlivesDaemon(t *testing.T) {
	const sleeper = "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"
	h := newHarness(t, map[string]string{"a.toml": sleeper, "b.toml": sleeper}, func(o *Options) {
		doc := `{"enabled": {"a": false}}`
		if err := os.WriteFile(filepath.Join(o.Paths.State, choicesFile), []byte(doc), 0o640); err != nil {
			t.Fatal(err)
		}
	})
	h.waitEvent("unit.started", "b")
	if st := h.status("a"); st.State != Inactive {
		t.Fatalf("disabled unit a is %v at daemon start, want inactive", st.State)
	}
	h.write("a.toml", sleeper+"# changed\n")
	if code, b := h.do("POST", "/v1/reload", nil); code != 200 {
		t.Fatalf("reload = %d %s", code, b)
	}
	if st := h.status("a"); st.State != Inactive {
		t.Errorf("disabled unit a is %v after a changed file and reload, want inactive", st.State)
	}
	if code, b := h.do("POST", "/v1/units/a/enable", nil); code != 200 {
		t.Fatalf("enable = %d %s", code, b)
	}
	if code, b := h.do("POST", "/v1/units/a/start", nil); code != 200 {
		t.Fatalf("start = %d %s", code, b)
	}
	h.waitEvent("unit.started", "a")
}

// strictDecode decodes one JSON body into v, refusing fields v does not name: the
// body is the named type the API documents, nothing more.
func strictDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

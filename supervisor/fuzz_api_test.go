package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/opsvc/opsvc/config"
)

// refuseRunner starts nothing: the fuzzed daemon has no units to run.
type refuseRunner struct{}

func (refuseRunner) Start(Spec) (Process, error) {
	return nil, errors.New("this test starts no process")
}

// FuzzAPIRequest sends the control API request bodies and unit names it is
// given, and checks every answer: never a server error, always JSON, every
// error {error, hint}, and settings that were taken are valid.
func FuzzAPIRequest(f *testing.F) {
	f.Add(uint8(0), "a", []byte(`{"orchestrator":{"max_turns":20}}`))
	f.Add(uint8(0), "a", []byte(`{"control":{"allow_uids":[1000],"group":"ops"}}`))
	f.Add(uint8(0), "a", []byte(`{"orchestrator":{"max_turns":-1}}`))
	f.Add(uint8(0), "a", []byte(`{"nope":1}`))
	f.Add(uint8(1), "web", []byte(`{"name":"ping","args":{"n":1}}`))
	f.Add(uint8(1), "web", []byte(`{"name":""}`))
	f.Add(uint8(1), "web", []byte(`{"name":"a"} {"name":"b"}`))
	f.Add(uint8(2), "web@x", []byte(``))
	f.Add(uint8(3), "../etc", []byte(``))
	f.Add(uint8(4), "web", []byte(`{}`))

	dir, err := os.MkdirTemp("", "osvf")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	units, state := filepath.Join(dir, "units"), filepath.Join(dir, "state")
	os.MkdirAll(units, 0o755)
	os.MkdirAll(state, 0o755)
	s, err := New(Options{
		Paths:    config.Paths{Units: units, State: state},
		Settings: config.DefaultSettings(),
		Runner:   refuseRunner{},
	})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		<-done
	})
	<-s.Ready()
	h := s.Handler()

	f.Fuzz(func(t *testing.T, route uint8, name string, body []byte) {
		var method, path string
		esc := url.PathEscape(name)
		switch route % 5 {
		case 0:
			method, path = "PUT", "/v1/settings"
		case 1:
			method, path = "POST", "/v1/units/"+esc+"/command"
		case 2:
			method, path = "POST", "/v1/units/"+esc+"/start"
		case 3:
			method, path = "GET", "/v1/units/"+esc
		case 4:
			method, path = "POST", "/v1/units/"+esc+"/stop"
		}
		req := httptest.NewRequest(method, "http://opsvc/", bytes.NewReader(body))
		if u, err := url.Parse(path); err == nil {
			req.URL = u
		} else {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code/100 == 3 {
			return // the mux sends an unclean path (//, /./) to its clean form
		}
		var ans map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			t.Fatalf("%s %s %q: answer %q is not a JSON object: %v", method, path, body, rec.Body, err)
		}
		if rec.Code >= 400 {
			msg, _ := ans["error"].(string)
			_, hasHint := ans["hint"]
			if msg == "" || !hasHint {
				t.Fatalf("%s %s %q: %d %s is not {error, hint}", method, path, body, rec.Code, rec.Body)
			}
			return
		}
		if route%5 == 0 {
			var got config.Settings
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("PUT %q took settings that are not valid: %v", body, err)
			}
		}
	})
}

package supervisor

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
)

// TestWriteUnitListAsWriteJSON: the list written a unit at a time is the
// same bytes writeJSON writes for it, empty, with one unit, with several
// (HTML characters, exit status, sources) and with a degraded note.
func TestWriteUnitListAsWriteJSON(t *testing.T) {
	since := time.Date(2026, 12, 2, 10, 0, 0, 123, time.UTC)
	full := api.UnitStatus{Name: "web", Description: "<b>&web</b>", Type: "simple", State: Active, Sub: "running",
		PID: 42, Since: since, Restarts: 3, Exit: &api.ExitStatus{Code: 137, Signal: "SIGKILL"}, Result: "signal",
		StatusText: "ok\n\"quoted\"", Error: "a\nb", LastError: "x", Blocked: "after db", Wanted: true,
		Sources: []string{"/u/web.toml", "/u/web.d/a.toml"}}
	bare := api.UnitStatus{Name: "db", State: Inactive, Sub: "dead", Sources: []string{}}
	for _, tc := range []struct {
		name string
		list api.UnitList
	}{
		{"empty", api.UnitList{Units: []UnitStatus{}}},
		{"nil", api.UnitList{}},
		{"one", api.UnitList{Units: []UnitStatus{full}}},
		{"several", api.UnitList{Units: []UnitStatus{bare, full, bare}}},
		{"degraded", api.UnitList{Units: []UnitStatus{full, bare}, Degraded: "event log: <disk full>"}},
		{"empty degraded", api.UnitList{Units: []UnitStatus{}, Degraded: "logs"}},
	} {
		want := httptest.NewRecorder()
		writeJSON(want, 200, tc.list)
		got := httptest.NewRecorder()
		writeUnitList(got, 200, &tc.list)
		if got.Body.String() != want.Body.String() {
			t.Errorf("%s: writeUnitList wrote\n%s\nwriteJSON writes\n%s", tc.name, got.Body, want.Body)
		}
		if got.Code != 200 || got.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: code %d, content type %q", tc.name, got.Code, got.Header().Get("Content-Type"))
		}
	}
}

// BenchmarkWriteUnitList: the body of GET /v1/units for 10,000 units.
func BenchmarkWriteUnitList(b *testing.B) {
	list := api.UnitList{Units: make([]UnitStatus, 10000)}
	for i := range list.Units {
		list.Units[i] = api.UnitStatus{Name: "p" + string(rune('a'+i%26)), State: Active, Sub: "running", PID: 1000 + i,
			Since: time.Now(), Wanted: true, Sources: []string{"/etc/opsvc/units/p.toml"}}
	}
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			writeJSON(httptest.NewRecorder(), 200, list)
		}
	})
	b.Run("by-unit", func(b *testing.B) {
		for b.Loop() {
			writeUnitList(httptest.NewRecorder(), 200, &list)
		}
	})
}

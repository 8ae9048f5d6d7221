package supervisor

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
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

// listSupervisor is a supervisor of n running units held in memory, whose
// loop only serves requests: what GET /v1/units and GET /v1/units/NAME
// cost, without processes or files. loopNS adds up the time the loop spent
// on requests.
func listSupervisor(tb testing.TB, n int) (s *Supervisor, loopNS *atomic.Int64) {
	tb.Helper()
	s = &Supervisor{reqs: make(chan func()), loopCh: make(chan struct{}), desired: map[string]Desired{},
		observed: map[string]Lifecycle{}, units: map[string]*unitRecord{}}
	loopNS = new(atomic.Int64)
	since := time.Date(2026, 12, 3, 8, 1, 32, 577859332, time.UTC)
	for i := range n {
		name := fmt.Sprintf("p%05d", n-i) // not in order
		u := &unit.Unit{Name: name, Enabled: true, Service: unit.DefaultService(), Hash: "h" + name,
			Sources: []string{"/etc/opsvc/units/" + name + ".toml"}}
		u.Service.Exec = []string{"/bin/sleep", "1000"}
		lc := Lifecycle{State: Active, Sub: "running", PID: 20000 + i, Running: true, Hash: u.Hash, Since: since,
			Starts: []time.Time{since}}
		s.desired[name] = Desired{Unit: u, Want: true}
		s.observed[name] = lc
		s.units[name] = &unitRecord{Lifecycle: lc}
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case f := <-s.reqs:
				t0 := time.Now()
				f()
				loopNS.Add(int64(time.Since(t0)))
			case <-stop:
				close(s.loopCh)
				return
			}
		}
	}()
	tb.Cleanup(func() { close(stop) })
	return s, loopNS
}

// TestListIsSortedAndWhole: the list has every unit once, by name, whether
// the loop's kept order is current or behind.
func TestListIsSortedAndWhole(t *testing.T) {
	s, _ := listSupervisor(t, 300)
	check := func(when string, want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		s.handleList(rec, httptest.NewRequest("GET", "/v1/units", nil))
		var list api.UnitList
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(list.Units) != want {
			t.Fatalf("%s: %d units listed, want %d", when, len(list.Units), want)
		}
		for i := 1; i < len(list.Units); i++ {
			if list.Units[i-1].Name >= list.Units[i].Name {
				t.Fatalf("%s: %q listed before %q", when, list.Units[i-1].Name, list.Units[i].Name)
			}
		}
	}
	check("first", 300)
	// a unit replaced by another in the same pass, the order not invalidated
	done := make(chan struct{})
	s.reqs <- func() {
		s.planOrder()
		d := s.desired["p00007"]
		delete(s.desired, "p00007")
		s.desired["p00007a"] = d
		close(done)
	}
	<-done
	check("after a unit was replaced", 300)
}

// BenchmarkList10k: GET /v1/units of 10,000 running units, through the
// loop, written to a recorder; loop-ns/op is the part the loop spent on it.
func BenchmarkList10k(b *testing.B) {
	s, loopNS := listSupervisor(b, 10000)
	b.ReportAllocs()
	n := 0
	defer func() { b.ReportMetric(float64(loopNS.Load())/float64(max(n, 1)), "loop-ns/op") }()
	for b.Loop() {
		n++
		rec := httptest.NewRecorder()
		s.handleList(rec, httptest.NewRequest("GET", "/v1/units", nil))
		if rec.Code != 200 || rec.Body.Len() < 10000*100 {
			b.Fatalf("GET /v1/units: %d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
}

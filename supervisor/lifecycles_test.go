package supervisor

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/handover"
)

// recordOf builds the state record of n running units, as a re-exec writes
// it (binary) or as the file a service manager's restart reads (JSON).
func recordOf(tb testing.TB, n int, binary bool) (*handover.Record, []Lifecycle) {
	tb.Helper()
	now := time.Now().Round(0).UTC()
	rec := &handover.Record{Written: now, PID: 1, Units: []handover.Unit{}}
	var ls []Lifecycle
	for i := range n {
		l := Lifecycle{State: Active, Sub: "running", Since: now, PID: 1000 + i, Running: true, Hash: "0123456789abcdef",
			Settled: true, Gen: 3, StartedAt: now, Starts: []time.Time{now}, WatchdogDeadline: now.Add(time.Second), Result: "success"}
		if i%7 == 0 {
			l.Exit = &ExitStatus{Code: 137, Signal: "SIGKILL"}
		}
		ls = append(ls, l)
		u := handover.Unit{Name: fmt.Sprintf("u%05d", i), Want: true, StartGen: 3, Observed: binary,
			Proc: &handover.Proc{PID: 1000 + i, Start: 123456, Marker: "m", Child: true}}
		if !binary {
			b, err := json.Marshal(l)
			if err != nil {
				tb.Fatal(err)
			}
			u.Lifecycle = b
		}
		rec.Units = append(rec.Units, u)
	}
	if binary {
		b, err := encodeLifecycles(ls)
		if err != nil {
			tb.Fatal(err)
		}
		rec.Lifecycles = b
	}
	return rec, ls
}

// TestRecordLifecyclesBothForms reads the lifecycles back from a record in
// either form, a unit without one left nil.
func TestRecordLifecyclesBothForms(t *testing.T) {
	for _, binary := range []bool{true, false} {
		rec, ls := recordOf(t, 20, binary)
		rec.Units = append(rec.Units, handover.Unit{Name: "none"}) // no lifecycle
		got, _ := roundTrip(t, rec, binary)
		var logged []string
		lcs := recordLifecycles(got, func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) })
		if len(lcs) != len(ls)+1 || lcs[len(ls)] != nil || len(logged) > 0 {
			t.Fatalf("binary=%v: %d lifecycles, last %v, logged %q", binary, len(lcs), lcs[len(lcs)-1], logged)
		}
		for i, l := range ls {
			if !reflect.DeepEqual(*lcs[i], l) {
				t.Fatalf("binary=%v: unit %d\n got %+v\nwant %+v", binary, i, *lcs[i], l)
			}
		}
	}
	// A block that lists fewer lifecycles than the units it marks: reported.
	rec, _ := recordOf(t, 3, true)
	short, _ := encodeLifecycles(make([]Lifecycle, 2))
	rec.Lifecycles = short
	var logged []string
	recordLifecycles(rec, func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) })
	if len(logged) != 1 {
		t.Errorf("a short block: logged %q, want one report", logged)
	}
}

// roundTrip writes rec in one form and reads it back; n is its size.
func roundTrip(tb testing.TB, rec *handover.Record, binary bool) (got *handover.Record, n int) {
	tb.Helper()
	encode := handover.Encode
	if binary {
		encode = handover.EncodeBinary
	}
	b, err := encode(rec)
	if err != nil {
		tb.Fatal(err)
	}
	if got, err = handover.Decode(b); err != nil {
		tb.Fatal(err)
	}
	return got, len(b)
}

// BenchmarkRecord builds, writes and reads back the state record of 1000
// running units with their lifecycles in each form: what a re-exec pays
// (binary) against JSON.
func BenchmarkRecord(b *testing.B) {
	for _, form := range []string{"binary", "json"} {
		b.Run(form, func(b *testing.B) {
			binary := form == "binary"
			for b.Loop() {
				rec, ls := recordOf(b, 1000, binary)
				got, n := roundTrip(b, rec, binary)
				if lcs := recordLifecycles(got, b.Logf); len(lcs) != len(ls) || lcs[0] == nil {
					b.Fatal("lifecycles not read back")
				}
				b.ReportMetric(float64(n), "bytes")
			}
		})
	}
}

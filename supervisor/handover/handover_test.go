package handover

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Record {
	return &Record{
		Written: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
		PID:     42,
		Seq:     17,
		NotifyN: 3,
		Leases:  Leases{Day: "2026-12-02", Spent: 1.5, ByUnit: map[string]float64{"orc": 1.5}, Active: []Lease{{ID: "l1", Unit: "orc"}}},
		Units: []Unit{{
			Name: "web", Want: true, StartGen: 2,
			Lifecycle: json.RawMessage(`{"State":2}`),
			Proc: &Proc{PID: 100, Start: 12345, Marker: "k:web:1", Stdout: Pending{Data: []byte("half a li"), Cut: 0},
				IPC: true, IPCUnread: []byte(`{"type":"hea`), Notify: "@opsvc/42/1", Fields: map[string]string{"OPSVC_SESSION": "2"}},
		}},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sample()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != Version || !reflect.DeepEqual(got, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}
}

func TestDecodeRefusesOtherVersions(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version": 99, "units": []}`, "version 99, this binary reads version 1"},
		{`{"units": []}`, "has no version"},
		{`not json`, "not JSON"},
	} {
		_, err := Decode([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestCheckReadsAFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	b, _ := Encode(sample())
	os.WriteFile(good, b, 0o600)
	if r, err := Check(good); err != nil || r.PID != 42 {
		t.Errorf("Check(good) = %v, %v", r, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version":2}`), 0o600)
	if _, err := Check(bad); err == nil {
		t.Error("Check of a version 2 record passed")
	}
}

func TestFDNames(t *testing.T) {
	name := FDName("worker@a:b", KindStdout)
	u, k, ok := SplitFDName(name)
	if !ok || u != "worker@a:b" || k != KindStdout {
		t.Errorf("SplitFDName(%q) = %q %q %v", name, u, k, ok)
	}
	if _, _, ok := SplitFDName(NameControl); ok {
		t.Errorf("%q split as a worker's file", NameControl)
	}
}

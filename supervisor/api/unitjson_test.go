package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// encodeLike is what a json.Encoder with SetIndent(prefix, indent) writes
// for v, without the final newline.
func encodeLike(t interface{ Fatal(...any) }, v any, prefix, indent string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent(prefix, indent)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// genString draws odd strings (HTML characters, escapes, control
// characters, non-ASCII, invalid UTF-8, the line separators JSON escapes),
// any string, and names.
func genString() *rapid.Generator[string] {
	odd := []string{"", "web", "<b>&amp;</b>", "a\"b\\c", "tab\there\nnl", "\x00\x1f\x7f", "żółw 🐢",
		"bad \xff\xfe utf8", "sep\u2028\u2029", "/u/web.toml"}
	return rapid.OneOf(rapid.SampledFrom(odd), rapid.String(), rapid.StringMatching(`[a-z0-9@._-]{0,12}`))
}

func genUnit() *rapid.Generator[UnitStatus] {
	return rapid.Custom(func(t *rapid.T) UnitStatus {
		u := UnitStatus{
			Name: genString().Draw(t, "name"), Description: genString().Draw(t, "desc"), Type: genString().Draw(t, "type"),
			State: State(rapid.IntRange(0, 6).Draw(t, "state")), Sub: genString().Draw(t, "sub"),
			PID: rapid.Int().Draw(t, "pid"), Restarts: rapid.Int().Draw(t, "restarts"),
			Result: genString().Draw(t, "result"), StatusText: genString().Draw(t, "status"), Error: genString().Draw(t, "error"),
			LastError: genString().Draw(t, "last"), Blocked: genString().Draw(t, "blocked"), Wanted: rapid.Bool().Draw(t, "wanted"),
			Placement: genString().Draw(t, "placement"), Host: genString().Draw(t, "host"),
		}
		switch rapid.IntRange(0, 3).Draw(t, "since") {
		case 1:
			u.Since = time.Unix(rapid.Int64Range(0, 1<<34).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "nsec")).UTC()
		case 2:
			u.Since = time.Unix(rapid.Int64Range(0, 1<<34).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "nsec")).
				In(time.FixedZone("", rapid.IntRange(-14, 14).Draw(t, "zone")*3600+rapid.SampledFrom([]int{0, 1800, 2700}).Draw(t, "half")))
		case 3:
			u.Since = time.Date(2026, 12, 3, 8, 1, 32, 577859332, time.Local)
		}
		if rapid.Bool().Draw(t, "exit") {
			u.Exit = &ExitStatus{Code: rapid.Int().Draw(t, "code"), Signal: genString().Draw(t, "signal")}
		}
		switch rapid.IntRange(0, 2).Draw(t, "sources") {
		case 1:
			u.Sources = []string{}
		case 2:
			u.Sources = rapid.SliceOfN(genString(), 1, 4).Draw(t, "srcs")
		}
		return u
	})
}

// TestAppendUnitStatusAsEncodingJSON: for any unit, the bytes are those
// encoding/json writes, indented as the daemon and the CLI indent, and
// compact.
func TestAppendUnitStatusAsEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUnit().Draw(t, "unit")
		for _, lay := range [][2]string{{"    ", "  "}, {"", "  "}, {"", ""}, {"\t", "\t"}} {
			got, err := AppendUnitStatus([]byte("x"), &u, lay[0], lay[1])
			if err != nil {
				t.Fatal(err)
			}
			if want := "x" + encodeLike(t, u, lay[0], lay[1]); string(got) != want {
				t.Fatalf("layout %q: AppendUnitStatus wrote\n%s\nencoding/json writes\n%s", lay, got, want)
			}
		}
	})
}

// TestAppendUnitStatusBadTime: a time encoding/json cannot write is an
// error here too, and nothing is appended.
func TestAppendUnitStatusBadTime(t *testing.T) {
	u := UnitStatus{Name: "web", Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(u); err == nil {
		t.Fatal("encoding/json wrote the year 10000")
	}
	got, err := AppendUnitStatus([]byte("x"), &u, "", "  ")
	if err == nil || string(got) != "x" {
		t.Fatalf("AppendUnitStatus = %q, %v; want x and an error", got, err)
	}
}

// TestReadUnitListAsUnmarshal: any list the daemon writes reads as
// encoding/json reads it, by the fast path.
func TestReadUnitListAsUnmarshal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		list := UnitList{Units: rapid.SliceOfN(genUnit(), 0, 5).Draw(t, "units"), Degraded: genString().Draw(t, "degraded")}
		for i := range list.Units {
			list.Units[i].State = State(rapid.IntRange(1, 5).Draw(t, "state")) // the daemon writes only these
		}
		if rapid.Bool().Draw(t, "nil") && len(list.Units) == 0 {
			list.Units = nil
		}
		body := []byte(encodeLike(t, list, "", "  ") + "\n")
		var want UnitList
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := ReadUnitList(body)
		plain := !bytes.Contains(body, []byte{'\\'})
		if ok != plain {
			t.Fatalf("ReadUnitList ok = %v for\n%s", ok, body)
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Fatalf("ReadUnitList read\n%#v\nencoding/json reads\n%#v", got, want)
		}
	})
}

// TestReadUnitListLeavesTheRest: what the fast path does not read exactly
// as encoding/json (other keys, other cases, repeated keys, numbers that
// are not plain integers, nulls where encoding/json does something of
// its own, malformed input) it declines; what it reads, it reads the same.
func TestReadUnitListLeavesTheRest(t *testing.T) {
	unit := `{"name":"web","state":"active","sub":"running","pid":7,"since":"2026-12-03T08:01:32.5Z","restarts":1,"exit":null,"status_text":"","error":"","wanted":true,"sources":["/u/web.toml"]}`
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"units":[` + unit + `]}`, true},
		{`{"units":[` + unit + `],"degraded":"logs"} trailing`, true},
		{` {"units" : [ ` + unit + ` , ` + unit + ` ] , "degraded" : null } `, true},
		{`{"units":[]}`, true},
		{`{"units":null}`, true},
		{`{}`, true},
		{`{"units":[{"name":"a","exit":{"code":-1,"signal":"SIGKILL"},"sources":[null,"x"],"pid":null}]}`, true},
		{`{"units":[{"name":"a","pid":0}]}`, true},
		{`{"units":[{"name":"a","pid":-0}]}`, true},
		{`{"units":[{"Name":"a"}]}`, false},
		{`{"Units":[]}`, false},
		{`{"units":[{"name":"a","enabled":true}]}`, false},
		{`{"units":[{"name":"a","name":"b"}]}`, false},
		{`{"units":[],"units":[]}`, false},
		{`{"units":[{"name":"a\u0062"}]}`, false},
		{`{"units":[{"name":"a` + "\xff" + `"}]}`, false},
		{`{"units":[{"pid":1.0}]}`, false},
		{`{"units":[{"pid":1e3}]}`, false},
		{`{"units":[{"pid":01}]}`, false},
		{`{"units":[{"pid":+1}]}`, false},
		{`{"units":[{"pid":-}]}`, false},
		{`{"units":[{"pid":99999999999999999999}]}`, false},
		{`{"units":[{"pid":"7"}]}`, false},
		{`{"units":[{"state":"asleep"}]}`, false},
		{`{"units":[{"state":null}]}`, false},
		{`{"units":[{"since":null}]}`, false},
		{`{"units":[{"since":"yesterday"}]}`, false},
		{`{"units":[{"wanted":"true"}]}`, false},
		{`{"units":[{"exit":{"code":1,"extra":2}}]}`, false},
		{`{"units":[{"name":"a"}`, false},
		{`{"units":[{"name":"a"},]}`, false},
		{`{"units":{}}`, false},
		{`null`, false},
		{``, false},
	} {
		got, ok := ReadUnitList([]byte(tc.body))
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.body, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		var want UnitList
		if err := json.NewDecoder(strings.NewReader(tc.body)).Decode(&want); err != nil {
			t.Errorf("%s: read by the fast path, but encoding/json says %v", tc.body, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: read\n%#v\nencoding/json reads\n%#v", tc.body, got, want)
		}
	}
}

// FuzzReadUnitList: on any input, what the fast path reads is what
// encoding/json reads, without error.
func FuzzReadUnitList(f *testing.F) {
	f.Add([]byte(`{"units":[{"name":"web","state":"active","pid":7,"since":"2026-12-03T08:01:32.5Z","exit":{"code":1,"signal":""},"wanted":true,"sources":["a"]}],"degraded":"x"}`))
	f.Add([]byte(`{"units":[{"pid":-12,"sources":[],"exit":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := ReadUnitList(b)
		if !ok {
			return
		}
		var want UnitList
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&want); err != nil {
			t.Fatalf("%q: read by the fast path, but encoding/json says %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: read\n%#v\nencoding/json reads\n%#v", b, got, want)
		}
	})
}

// BenchmarkUnitListJSON: 10,000 units written and read, by encoding/json
// and by AppendUnitStatus / ReadUnitList.
func BenchmarkUnitListJSON(b *testing.B) {
	list := UnitList{Units: make([]UnitStatus, 10000)}
	since := time.Date(2026, 12, 3, 8, 1, 32, 577859332, time.UTC)
	for i := range list.Units {
		name := fmt.Sprintf("p%05d", i+1)
		list.Units[i] = UnitStatus{Name: name, Type: "simple", State: StateActive, Sub: "running", PID: 20000 + i,
			Since: since, Wanted: true, Sources: []string{"/etc/opsvc/units/" + name + ".toml"}}
	}
	body := []byte(encodeLike(b, list, "", "  "))
	b.Run("write/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeLike(b, list, "", "  ")
		}
	})
	b.Run("write/append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = buf[:0]
			for i := range list.Units {
				buf, _ = AppendUnitStatus(buf, &list.Units[i], "    ", "  ")
			}
		}
	})
	b.Run("read/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var l UnitList
			if err := json.Unmarshal(body, &l); err != nil || len(l.Units) != 10000 {
				b.Fatal(err)
			}
		}
	})
	b.Run("read/fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l, ok := ReadUnitList(body); !ok || len(l.Units) != 10000 {
				b.Fatal("not read")
			}
		}
	})
}

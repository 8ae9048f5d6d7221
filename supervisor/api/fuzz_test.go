package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecode reads any event's data into the type of any event, as a client
// of the event feed does: it never panics, and what it read survives a
// second trip through Map and Decode unchanged on the wire.
func FuzzDecode(f *testing.F) {
	for _, d := range everyData() {
		b, _ := json.Marshal(d)
		f.Add(d.EventType(), b)
	}
	f.Add(TypeUnitFailed, []byte(`{"code":"1","signal":7}`))
	f.Add(TypeConfigLoaded, []byte(`{"changed":null,"invalid":1e400}`))
	f.Add("worker.x", []byte(`{"data":[1,{"a":null}]}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			return // not an event's data: the feed carries only objects
		}
		d := ForType(typ)
		if d == nil {
			return
		}
		if err := Decode(m, d); err != nil {
			return
		}
		again := ForType(typ)
		if err := Decode(Map(reflect.ValueOf(d).Elem().Interface().(EventData)), again); err != nil {
			t.Fatalf("%s: decode of its own map: %v", typ, err)
		}
		// Compared as they go on the wire: an empty list and no list are
		// the same to a client (omitempty).
		first, _ := json.Marshal(d)
		second, _ := json.Marshal(again)
		if string(first) != string(second) {
			t.Fatalf("%s: %s became %s", typ, first, second)
		}
	})
}

package api

import (
	"reflect"
	"strings"
	"testing"
)

func TestProcessEventsRoundTripAndDocs(t *testing.T) {
	doc := readDoc(t, "events.md")
	for _, d := range []EventData{
		UnitEscaped{PIDs: []int{7, 9}, Count: 2, FoundBy: "cgroup", Reason: "left its group"},
		DaemonLeftovers{PIDs: []int{11}, Count: 1, Reason: "left running"},
	} {
		back := reflect.New(reflect.TypeOf(d))
		if err := Decode(Map(d), back.Interface().(EventData)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Elem().Interface(), d) {
			t.Errorf("%T: round trip gave %+v", d, back.Elem().Interface())
		}
		row := docRow(doc, d.EventType())
		if row == "" || !strings.Contains(row, "`"+reflect.TypeOf(d).Name()+"`") {
			t.Errorf("docs/events.md: no row naming %T for %s", d, d.EventType())
			continue
		}
		for _, f := range jsonFields(reflect.TypeOf(d)) {
			if !strings.Contains(row, "`"+f+"`") {
				t.Errorf("docs/events.md: the row of %s does not list data field %s", d.EventType(), f)
			}
		}
	}
}

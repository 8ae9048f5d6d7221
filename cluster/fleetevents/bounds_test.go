package fleetevents

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/bus"
)

func TestSummariesAreSmall(t *testing.T) {
	data := map[string]any{"reason": strings.Repeat("x", 10000), "nested": map[string]any{"a": 1}, "list": []any{1, 2}}
	for i := range 20 {
		data[string(rune('a'+i))] = float64(i)
	}
	e := trim(bus.Event{Seq: 1, Time: time.Now(), Type: "unit.stopped", Unit: "web", Data: data, Source: "web"})
	if len(e.Data) > maxKeys {
		t.Errorf("%d data keys kept, want at most %d", len(e.Data), maxKeys)
	}
	for k, v := range e.Data {
		switch x := v.(type) {
		case string:
			if len(x) > maxText+len("…") {
				t.Errorf("data %s kept %d bytes, want at most %d", k, len(x), maxText)
			}
		case map[string]any, []any:
			t.Errorf("data %s kept a %T; summaries keep scalars only", k, v)
		}
	}
	val := encode(Event{Node: "h1", Event: e})
	if len(val) > maxValue {
		t.Errorf("summary of %d bytes, want at most %d", len(val), maxValue)
	}
	var back Event
	if err := json.Unmarshal([]byte(val), &back); err != nil || back.Node != "h1" || back.Type != "unit.stopped" || back.Unit != "web" {
		t.Errorf("summary %s does not read back (%v)", val, err)
	}
	if strings.Contains(val, `"Source"`) {
		t.Errorf("summary %s carries the event's source", val)
	}
}

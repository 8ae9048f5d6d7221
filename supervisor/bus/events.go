package bus

import (
	"encoding/json"
	"time"
)

// Suppressed is the data of a bus.suppressed event.
type Suppressed struct {
	Source   string `json:"source"`   // the unit, or the type of events of no unit
	Count    uint64 `json:"count"`    // events kept out in the interval
	Interval string `json:"interval"` // e.g. "10s"
	Hint     string `json:"hint"`
}

// EventType is bus.suppressed.
func (Suppressed) EventType() string { return TypeSuppressed }

// Degraded is the data of a daemon.degraded event.
type Degraded struct {
	Component string `json:"component"` // "events", "registry" or "logs"
	Error     string `json:"error"`
	Hint      string `json:"hint"`
}

// EventType is daemon.degraded.
func (Degraded) EventType() string { return TypeDegraded }

// Recovered is the data of a daemon.recovered event.
type Recovered struct {
	Component string `json:"component"`
	Since     string `json:"since"` // when the failure began, RFC3339Nano
}

// EventType is daemon.recovered.
func (Recovered) EventType() string { return TypeRecovered }

// dataOf turns a data struct into the map an Event carries.
func dataOf(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

func recovered(component string, since time.Time) Event {
	return Event{Type: TypeRecovered, Data: dataOf(Recovered{Component: component, Since: since.Format(time.RFC3339Nano)})}
}

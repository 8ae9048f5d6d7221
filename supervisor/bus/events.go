package bus

import (
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
)

// The bus's own events carry the control API's types, so that the daemon, the
// CLI and the documentation read one shape.
type (
	// Suppressed is the data of a bus.suppressed event.
	Suppressed = api.BusSuppressed
	// Degraded is the data of a daemon.degraded event.
	Degraded = api.DaemonDegraded
	// Recovered is the data of a daemon.recovered event.
	Recovered = api.DaemonRecovered
)

// dataOf turns a data struct into the map an Event carries.
func dataOf(v api.EventData) map[string]any { return api.Map(v) }

func recovered(component string, since time.Time) Event {
	return Event{Type: TypeRecovered, Data: dataOf(Recovered{Component: component, Since: since.Format(time.RFC3339Nano)})}
}

package supervisor

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/opsvc/opsvc/cluster/fleetevents"
)

// FleetEvents follows every host's unit state changes (package
// cluster/fleetevents).
type FleetEvents interface {
	// Follow calls ready once the fleet's events can be read, then fn with
	// the last n kept, then with each new one, until ctx ends or fn fails.
	Follow(ctx context.Context, n int, ready func(), fn func(fleetevents.Event) error) error
}

// maxFleetReplay bounds n of GET /v1/events?fleet=1.
const maxFleetReplay = 1000

// fleetWriteTimeout bounds one write to a client of the fleet's events: one
// that does not read is let go.
const fleetWriteTimeout = 10 * time.Second

// fleetEvents answers GET /v1/events?fleet=1 with every host's events, and
// passes other requests to next.
func (s *Supervisor) fleetEvents(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("fleet") != "1" {
			next.ServeHTTP(w, r)
			return
		}
		if s.opts.FleetEvents == nil {
			writeErr(w, http.StatusNotFound, "this daemon is not part of a fleet", "set [cluster] etcd in opsvc.toml; opsvc events shows this host's events")
			return
		}
		n := 0
		if v := q.Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 || n > maxFleetReplay {
				writeErr(w, http.StatusBadRequest, "bad n "+strconv.Quote(v), "n is a number of events from 0 to "+strconv.Itoa(maxFleetReplay))
				return
			}
		}
		stream(w)
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		wrote := false
		ready := func() {
			wrote = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			_ = rc.Flush()
		}
		err := s.opts.FleetEvents.Follow(r.Context(), n, ready, func(e fleetevents.Event) error {
			_ = rc.SetWriteDeadline(time.Now().Add(fleetWriteTimeout))
			if err := enc.Encode(e); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err != nil && !wrote && r.Context().Err() == nil {
			writeErr(w, http.StatusServiceUnavailable, err.Error(), "check that etcd is reachable from this host: opsvc status")
		}
	})
}

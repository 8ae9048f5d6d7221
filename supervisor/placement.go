package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
)

// Placer places fleet units (package cluster/placement). It never makes the
// loop wait: the loop tells it what it wants and runs, and reads what it may
// run when Changed fires.
type Placer interface {
	Node() string
	SetLocal(map[string]placement.Local)
	Changed() <-chan struct{}
	Holds() map[string]placement.Hold
	Problem() string
	Move(ctx context.Context, unit, host string) error
}

// noCluster is why a fleet unit does not run on a daemon without [cluster].
const noCluster = `placement = "fleet" needs [cluster] etcd in opsvc.toml (set it, or make the unit local)`

func isFleet(u *unit.Unit) bool { return u != nil && u.Placement == unit.PlacementFleet }

// placeUnits sets where each fleet unit may run from the last holds, on the
// loop. A unit this host comes to hold is started as by an operator's start
// (a new run, whatever the last one left).
func (s *Supervisor) placeUnits() {
	s.fleet = s.fleet[:0]
	for name, d := range s.desired {
		away := ""
		if isFleet(d.Unit) {
			s.fleet = append(s.fleet, name)
			away = s.awayFor(name)
		}
		stopBy := time.Time{}
		if away != "" {
			stopBy = s.holds[name].StopBy
		}
		if away == d.Away && stopBy.Equal(d.StopBy) {
			continue
		}
		if away == "" {
			if rec := s.units[name]; rec == nil || !rec.busy() {
				d.StartGen++
			}
		}
		d.Away, d.StopBy = away, stopBy
		s.desired[name] = d
		s.touch(name)
	}
}

// awayFor says why fleet unit name may not run here, or "".
func (s *Supervisor) awayFor(name string) string {
	if s.opts.Placer == nil {
		return noCluster
	}
	h, ok := s.holds[name]
	switch {
	case !ok:
		return "waiting for its election"
	case h.Held:
		return ""
	case h.Note != "":
		return h.Note
	}
	return "held by another host"
}

// takeHolds reads the placer's holds and applies them, on the loop.
func (s *Supervisor) takeHolds() {
	s.holds = s.opts.Placer.Holds()
	s.placeUnits()
}

// syncPlacement tells the placer what this host wants and runs of each
// fleet unit, when that changed. On the loop, after each reconcile.
func (s *Supervisor) syncPlacement() {
	if s.opts.Placer == nil {
		return
	}
	local := make(map[string]placement.Local, len(s.fleet))
	for _, name := range s.fleet {
		d := s.desired[name]
		l := placement.Local{Want: d.Want && d.Unit != nil && !s.shutdown}
		if rec := s.units[name]; rec != nil {
			l.Running = rec.Running
			l.Active = rec.Running && rec.State == Active
		}
		local[name] = l
	}
	if maps.Equal(local, s.fleetSent) {
		return
	}
	s.fleetSent = local
	s.opts.Placer.SetLocal(local)
}

// placementStatus fills in where a fleet unit runs. A unit held elsewhere,
// with no process here, is standby.
func (r statusRow) placementStatus(us *UnitStatus) {
	if !isFleet(r.unit) {
		return
	}
	us.Placement = string(unit.PlacementFleet)
	us.Host = r.hold.Holder
	running := r.lc != nil && r.lc.Running
	switch {
	case r.away == noCluster:
		us.Error = strings.TrimPrefix(us.Error+"\n"+noCluster, "\n")
	case r.away != "" && !running:
		us.State, us.Sub, us.StatusText = Inactive, "standby", r.away
	}
}

// handleMove is POST /v1/units/{name}/move?to=HOST: the unit's holder gives
// it up once stopped, HOST takes it; the answer comes once it is active on
// HOST.
func (s *Supervisor) handleMove(w http.ResponseWriter, r *http.Request, name string) {
	to := r.URL.Query().Get("to")
	if to == "" || len(to) > 253 || strings.ContainsAny(to, "/ \t\n") {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad host %q", to), "name the host: opsvc move UNIT HOST")
		return
	}
	var (
		found, fleet bool
		peer, _      = peerOf(r)
	)
	if err := s.do(r.Context(), func() {
		d, ok := s.desired[name]
		found, fleet = ok, ok && isFleet(d.Unit)
		if fleet && s.opts.Placer != nil {
			s.emit(name, 0, api.APIMove{To: to, Caller: api.Caller{UID: peer.UID, PID: peer.PID}})
		}
	}); err != nil {
		unavailable(w, err)
		return
	}
	switch {
	case !found:
		notFound(w, name)
		return
	case !fleet:
		writeErr(w, http.StatusConflict, fmt.Sprintf("unit %q is not a fleet unit", name), `only units with [unit] placement = "fleet" move between hosts`)
		return
	case s.opts.Placer == nil:
		writeErr(w, http.StatusConflict, "this daemon is not part of a fleet", "set [cluster] etcd in opsvc.toml")
		return
	}
	timeout := moveTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Minute {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad timeout %q", v), "a duration up to 10m, e.g. timeout=30s")
			return
		}
		timeout = d
	}
	longAnswer(w, timeout+answerTimeout)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := s.opts.Placer.Move(ctx, name, to); err != nil {
		switch {
		case errors.Is(err, placement.ErrNotCandidate):
			writeErr(w, http.StatusConflict, err.Error(), "the host must run opsvc with this unit, not stopped there")
		case errors.Is(err, context.DeadlineExceeded):
			writeErr(w, http.StatusGatewayTimeout, fmt.Sprintf("%s is not active on %s after %v", name, to, timeout), "see: opsvc status "+name+" (on both hosts)")
		default:
			writeErr(w, http.StatusServiceUnavailable, err.Error(), "check that etcd is reachable: opsvc status")
		}
		return
	}
	var us UnitStatus
	if err := s.do(r.Context(), func() { us = s.status(name) }); err != nil {
		unavailable(w, err)
		return
	}
	if us.Host == "" {
		us.Host = to
	}
	writeJSON(w, http.StatusOK, us)
}

// moveTimeout bounds a move by default.
const moveTimeout = 2 * time.Minute

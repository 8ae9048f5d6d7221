package supervisor

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/opsvc/opsvc/supervisor/handover"
)

// export is the bookkeeping for a handover.
func (l *Leases) export() handover.Leases {
	out := handover.Leases{
		Starts: slices.Clone(l.starts),
		Day:    l.day,
		Spent:  l.spent,
		ByUnit: maps.Clone(l.byUnit),
		NextID: l.nextID,
	}
	for id, ls := range l.active {
		out.Active = append(out.Active, handover.Lease{ID: id, Unit: ls.unit, ChainID: ls.chainID, Granted: ls.granted})
	}
	sort.Slice(out.Active, func(i, j int) bool { return out.Active[i].ID < out.Active[j].ID })
	for u := range l.waiting {
		out.Waiting = append(out.Waiting, u)
	}
	sort.Strings(out.Waiting)
	return out
}

// restore takes the bookkeeping a handover carried.
func (l *Leases) restore(h handover.Leases) {
	l.starts = append([]time.Time(nil), h.Starts...)
	l.day, l.spent, l.nextID = h.Day, h.Spent, h.NextID
	l.byUnit = map[string]float64{}
	maps.Copy(l.byUnit, h.ByUnit)
	l.active = map[string]lease{}
	for _, a := range h.Active {
		l.active[a.ID] = lease{unit: a.Unit, chainID: a.ChainID, granted: a.Granted}
	}
	l.waiting = map[string]bool{}
	for _, u := range h.Waiting {
		l.waiting[u] = true
	}
}

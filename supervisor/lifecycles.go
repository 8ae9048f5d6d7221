package supervisor

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"

	"github.com/opsvc/opsvc/supervisor/handover"
)

// encodeLifecycles writes lifecycles in the binary form of a state record's
// Lifecycles (see handover.Record).
func encodeLifecycles(ls []Lifecycle) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(128 * len(ls))
	if err := gob.NewEncoder(&buf).Encode(ls); err != nil {
		return nil, fmt.Errorf("supervisor: handover: the units' states: %w", err)
	}
	return buf.Bytes(), nil
}

// recordLifecycles reads the lifecycles of a record's units, in either form:
// one per unit, nil for a unit without one. A lifecycle that cannot be read
// is reported with logf and left nil: that unit's worker is not taken over.
func recordLifecycles(rec *handover.Record, logf func(string, ...any)) []*Lifecycle {
	out := make([]*Lifecycle, len(rec.Units))
	if rec.Lifecycles != nil {
		var ls []Lifecycle
		if err := gob.NewDecoder(bytes.NewReader(rec.Lifecycles)).Decode(&ls); err != nil {
			logf("handover: the units' states cannot be read: %v", err)
			return out
		}
		j := 0
		for i, u := range rec.Units {
			if !u.Observed {
				continue
			}
			if j == len(ls) {
				logf("handover: the record holds %d units' states, fewer than it lists", len(ls))
				return out
			}
			out[i] = &ls[j]
			j++
		}
		return out
	}
	for i, u := range rec.Units {
		if len(u.Lifecycle) == 0 {
			continue
		}
		var l Lifecycle
		if err := json.Unmarshal(u.Lifecycle, &l); err != nil {
			logf("%s: handover: %v", u.Name, err)
			continue
		}
		out[i] = &l
	}
	return out
}

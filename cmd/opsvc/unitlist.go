package main

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/opsvc/opsvc/supervisor/api"
)

// unitList asks the daemon for every unit (GET /v1/units). The plain list
// the daemon writes is read by api.ReadUnitList; anything else by
// encoding/json, as before.
func (c *cli) unitList(op string) ([]unitStatus, string, error) {
	resp, err := c.do("GET", "/v1/units", nil, nil)
	if err != nil {
		return nil, "", asExit(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", asExit(op, err)
	}
	if units, degraded, ok := api.ReadUnits(body, func(u *unitStatus) *api.UnitStatus { return &u.UnitStatus }); ok {
		return units, degraded, nil
	}
	var out struct {
		Units    []unitStatus `json:"units"`
		Degraded string       `json:"degraded"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&out); err != nil {
		return nil, "", asExit(op, err)
	}
	return out.Units, out.Degraded, nil
}

// writeUnitsJSON writes {"degraded": …, "units": [...]} as encoding/json
// encodes the map of those keys (degraded left out when empty), indented
// by two spaces when pretty, else compact, with the final newline; a few
// units at a time.
func writeUnitsJSON(w io.Writer, units []unitStatus, degraded string, pretty bool) error {
	const flushAt = 64 << 10
	b := make([]byte, 0, flushAt+4<<10)
	nl := func(depth int) {
		if pretty {
			b = append(b, '\n')
			for range depth {
				b = append(b, "  "...)
			}
		}
	}
	sep := ":"
	if pretty {
		sep = ": "
	}
	b = append(b, '{')
	if degraded != "" {
		nl(1)
		b = append(b, `"degraded"`+sep...)
		b = api.AppendJSONString(b, degraded)
		b = append(b, ',')
	}
	nl(1)
	b = append(b, `"units"`+sep+"["...)
	prefix, indent := "", ""
	if pretty {
		prefix, indent = "    ", "  "
	}
	for i := range units {
		if i > 0 {
			b = append(b, ',')
		}
		nl(2)
		u := &units[i]
		if u.Enabled != nil || u.StoppedByHand { // fields beyond the daemon's list
			raw, err := json.Marshal(u)
			if err != nil {
				return err
			}
			if pretty {
				var ind bytes.Buffer
				json.Indent(&ind, raw, prefix, indent)
				raw = ind.Bytes()
			}
			b = append(b, raw...)
			continue
		}
		var err error
		if b, err = api.AppendUnitStatus(b, &u.UnitStatus, prefix, indent); err != nil {
			return err
		}
		if len(b) >= flushAt {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if len(units) > 0 {
		nl(1)
	}
	b = append(b, ']')
	nl(0)
	_, err := w.Write(append(b, '}', '\n'))
	return err
}

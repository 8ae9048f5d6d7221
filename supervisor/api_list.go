package supervisor

import (
	"net/http"

	"github.com/opsvc/opsvc/supervisor/api"
)

// writeUnitList writes list as writeJSON would, byte for byte, a unit at a
// time into one reused buffer, each unit by api.AppendUnitStatus: with
// thousands of units, encoding/json's reflection and its second pass to
// indent were most of the cost of a list.
func writeUnitList(w http.ResponseWriter, code int, list *api.UnitList) {
	if list.Units == nil {
		writeJSON(w, code, list)
		return
	}
	writeUnits(w, code, len(list.Units), func(i int) UnitStatus { return list.Units[i] }, list.Degraded)
}

// writeUnits is writeUnitList of the n units unit makes, one at a time.
func writeUnits(w http.ResponseWriter, code, n int, unit func(i int) UnitStatus, degraded string) {
	if n == 0 {
		writeJSON(w, code, api.UnitList{Units: []UnitStatus{}, Degraded: degraded})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	const flushAt = 64 << 10
	buf := make([]byte, 0, flushAt+4<<10)
	buf = append(buf, "{\n  \"units\": [\n"...)
	for i := range n {
		buf = append(buf, "    "...)
		us := unit(i)
		var err error
		if buf, err = api.AppendUnitStatus(buf, &us, "    ", "  "); err != nil {
			w.Write(buf) // a time JSON cannot carry: the body ends unfinished, and decoding it fails
			return
		}
		if i < n-1 {
			buf = append(buf, ',')
		}
		buf = append(buf, '\n')
		if len(buf) >= flushAt {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "  ]"...)
	if degraded != "" {
		buf = append(buf, ",\n  \"degraded\": "...)
		buf = api.AppendJSONString(buf, degraded)
	}
	buf = append(buf, "\n}\n"...)
	w.Write(buf)
}

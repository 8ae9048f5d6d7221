package supervisor

import (
	"encoding/json"
	"net/http"

	"github.com/opsvc/opsvc/supervisor/api"
)

// writeUnitList writes list as writeJSON would, byte for byte, a unit at a
// time into one reused buffer, each unit by api.AppendUnitStatus: with
// thousands of units, encoding/json's reflection and its second pass to
// indent were most of the cost of a list.
func writeUnitList(w http.ResponseWriter, code int, list *api.UnitList) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if len(list.Units) == 0 {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(list)
		return
	}
	const flushAt = 64 << 10
	buf := make([]byte, 0, flushAt+4<<10)
	buf = append(buf, "{\n  \"units\": [\n"...)
	for i := range list.Units {
		buf = append(buf, "    "...)
		var err error
		if buf, err = api.AppendUnitStatus(buf, &list.Units[i], "    ", "  "); err != nil {
			w.Write(buf) // a time JSON cannot carry: the body ends unfinished, and decoding it fails
			return
		}
		if i < len(list.Units)-1 {
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
	if list.Degraded != "" {
		buf = append(buf, ",\n  \"degraded\": "...)
		buf = api.AppendJSONString(buf, list.Degraded)
	}
	buf = append(buf, "\n}\n"...)
	w.Write(buf)
}

package supervisor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/opsvc/opsvc/supervisor/api"
)

// writeUnitList writes list as writeJSON would, byte for byte, a unit at a
// time: indenting a whole list of thousands of units at once copies the
// encoding several times over as its buffer grows, while a unit's encoding
// is small and its buffer reused.
func writeUnitList(w http.ResponseWriter, code int, list *api.UnitList) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	if len(list.Units) == 0 {
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		enc.Encode(list)
		return
	}
	var row bytes.Buffer
	enc := json.NewEncoder(&row)
	enc.SetIndent("    ", "  ")
	bw.WriteString("{\n  \"units\": [\n")
	for i := range list.Units {
		row.Reset()
		if err := enc.Encode(&list.Units[i]); err != nil {
			return
		}
		bw.WriteString("    ")
		bw.Write(bytes.TrimSuffix(row.Bytes(), []byte("\n")))
		if i < len(list.Units)-1 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
	}
	bw.WriteString("  ]")
	if list.Degraded != "" {
		b, _ := json.Marshal(list.Degraded)
		bw.WriteString(",\n  \"degraded\": ")
		bw.Write(b)
	}
	bw.WriteString("\n}\n")
}

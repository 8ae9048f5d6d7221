package bus

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ServeHTTP serves GET /v1/events?since=N&unit=U&type=T[&type=…]&follow=0|1: the stored events
// with seq > since, then (follow, the default) the live ones, flushed one by one. The body is
// NDJSON, or Server-Sent Events (id: seq, event: type, data: the event's JSON) when the Accept
// header has text/event-stream; there a Last-Event-ID header takes the place of since. The
// response ends with the request's context, Bus.Close, or a lag cutoff (after its bus.lagged
// event).
func (b *Bus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": method not allowed", "use GET")
		return
	}
	q := r.URL.Query()
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	sinceText, sinceFrom := q.Get("since"), "since"
	if id := r.Header.Get("Last-Event-ID"); sse && id != "" {
		sinceText, sinceFrom = id, "Last-Event-ID"
	}
	var since uint64
	if sinceText != "" {
		n, err := strconv.ParseUint(sinceText, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest,
				fmt.Sprintf("bad %s %q: not an event seq", sinceFrom, sinceText),
				"give the seq of the last event you have, a non-negative integer (0 = from the oldest kept)")
			return
		}
		since = n
	}
	follow := true
	switch f := q.Get("follow"); f {
	case "", "1", "true":
	case "0", "false":
		follow = false
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("bad follow %q", f), "use follow=1 (the default) or follow=0")
		return
	}
	filter := Filter{Unit: q.Get("unit")}
	for _, t := range q["type"] {
		for p := range strings.SplitSeq(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				filter.Types = append(filter.Types, p)
			}
		}
	}
	sub, err := b.Subscribe(since, filter, follow)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error(), "the daemon is shutting down; retry once it is back")
		return
	}
	defer sub.Close()

	h := w.Header()
	if sse {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the client sees the status before the first event
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			buf = appendEvent(buf[:0], e, sse)
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func appendEvent(buf []byte, e Event, sse bool) []byte {
	data, err := json.Marshal(e)
	if err != nil {
		data, _ = json.Marshal(Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Unit: e.Unit, PID: e.PID})
	}
	if !sse {
		return append(append(buf, data...), '\n')
	}
	if e.Seq > 0 {
		buf = append(buf, "id: "...)
		buf = strconv.AppendUint(buf, e.Seq, 10)
		buf = append(buf, '\n')
	}
	buf = append(buf, "event: "...)
	buf = append(buf, strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, e.Type)...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}

func httpError(w http.ResponseWriter, code int, msg, hint string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "hint": hint})
}

package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// limiter keeps one source from flooding the log: a token bucket per source, and the
// coalescing of repeated refusals. Guarded by Bus.mu.
type limiter struct {
	rate, burst float64
	interval    time.Duration
	coalesce    map[string]bool
	buckets     map[string]*bucket
	repeats     map[repeatKey]*repeat
	next        time.Time // end of the current interval
}

type bucket struct {
	tokens     float64
	at         time.Time
	suppressed uint64 // events kept out in this interval
}

type repeatKey struct{ typ, unit string }

type repeat struct {
	count uint64 // repeats since the one published
	last  Event
}

func newLimiter(opts Options, now time.Time) limiter {
	l := limiter{
		rate:     opts.SourceRate,
		burst:    opts.SourceBurst,
		interval: opts.Interval,
		coalesce: make(map[string]bool),
		buckets:  make(map[string]*bucket),
		repeats:  make(map[repeatKey]*repeat),
		next:     now.Add(opts.Interval),
	}
	for _, t := range opts.Coalesce {
		l.coalesce[t] = true
	}
	return l
}

// exempt reports the events that are never limited: the daemon's and the bus's own.
func exempt(typ string) bool {
	return strings.HasPrefix(typ, "daemon.") || strings.HasPrefix(typ, "bus.")
}

// sourceOf is who an event is counted against: its Source when set; for an API action, the
// caller ("api uid N"); for what a unit's processes sent (worker events, status, refusals),
// "UNIT (worker)", so that a worker's flood never holds back the daemon's own events about
// the unit; else the unit, or the type of an event of no unit.
func sourceOf(e Event) string {
	switch {
	case e.Source != "":
		return e.Source
	case strings.HasPrefix(e.Type, "api."):
		if uid, ok := e.Data["uid"]; ok {
			return fmt.Sprintf("api uid %v", uid)
		}
		return "api"
	case e.Unit != "" && fromWorker(e.Type):
		return e.Unit + " (worker)"
	case e.Unit != "":
		return e.Unit
	default:
		return e.Type
	}
}

// fromWorker reports the event types that a unit's processes cause at will.
func fromWorker(typ string) bool {
	switch typ {
	case "unit.status", "unit.notify_refused", "unit.ipc_error":
		return true
	}
	return strings.HasPrefix(typ, "worker.")
}

// cost is what an event takes from its source's bucket: one token per KiB of data, at least one.
func cost(e Event) float64 {
	if len(e.Data) == 0 {
		return 1
	}
	n := 0
	for k, v := range e.Data {
		n += len(k)
		if s, ok := v.(string); ok {
			n += len(s)
		} else {
			n += 16
		}
	}
	return max(1, float64(n)/1024)
}

// idle reports whether the limiter holds nothing for flush: no source's bucket, no repeat.
func (l *limiter) idle() bool { return len(l.buckets) == 0 && len(l.repeats) == 0 }

// admit reports whether e is published now; if not, it was counted (rate limit) or kept to
// be published as a repeat at the end of the interval (coalescing).
func (l *limiter) admit(e Event, now time.Time) bool {
	if exempt(e.Type) {
		return true
	}
	if l.coalesce[e.Type] {
		k := repeatKey{e.Type, e.Unit}
		if r := l.repeats[k]; r != nil {
			r.count++
			r.last = e
			return false
		}
		l.repeats[k] = &repeat{}
	}
	if l.rate < 0 {
		return true
	}
	src := sourceOf(e)
	bk := l.buckets[src]
	if bk == nil {
		bk = &bucket{tokens: l.burst, at: now}
		l.buckets[src] = bk
	}
	if d := now.Sub(bk.at); d > 0 {
		bk.tokens = min(l.burst, bk.tokens+d.Seconds()*l.rate)
	}
	bk.at = now
	c := cost(e)
	if bk.tokens < c {
		bk.suppressed++
		return false
	}
	bk.tokens -= c
	return true
}

// flush returns, once the interval is over, a bus.suppressed event for each source that had
// events kept out, and the last repeat of each coalesced type that repeated, with the count.
func (l *limiter) flush(now time.Time) []Event {
	if now.Before(l.next) {
		return nil
	}
	l.next = now.Add(l.interval)
	var out []Event
	srcs := make([]string, 0, len(l.buckets))
	for src := range l.buckets {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	for _, src := range srcs {
		bk := l.buckets[src]
		if bk.suppressed > 0 {
			out = append(out, Event{Type: TypeSuppressed, Data: dataOf(Suppressed{
				Source:   src,
				Count:    bk.suppressed,
				Interval: l.interval.String(),
				Hint:     "this source sent more events than the bus keeps; they were counted, not stored",
			})})
			bk.suppressed = 0
		}
		// A full bucket is the same as none: forget it, so the map holds only busy sources.
		if bk.tokens+now.Sub(bk.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, src)
		}
	}
	keys := make([]repeatKey, 0, len(l.repeats))
	for k := range l.repeats {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].typ != keys[j].typ {
			return keys[i].typ < keys[j].typ
		}
		return keys[i].unit < keys[j].unit
	})
	for _, k := range keys {
		r := l.repeats[k]
		if r.count == 0 {
			delete(l.repeats, k) // the next one is published at once
			continue
		}
		e := r.last
		data := make(map[string]any, len(e.Data)+2)
		for k, v := range e.Data {
			data[k] = v
		}
		data["repeated"] = r.count
		data["interval"] = l.interval.String()
		e.Data = data
		e.Source = "" // a summary is not limited again by its source
		out = append(out, e)
		r.count, r.last = 0, Event{}
	}
	return out
}

// boundData returns data bounded for storing: past boundAbove bytes of JSON, every list
// keeps MaxListItems items and every text MaxListItems lines ("… and N more") and
// MaxStringBytes bytes; if it is still past MaxEventBytes, only a summary is kept. Anything
// cut is marked with data.truncated = the bytes of the original data.
func boundData(data map[string]any) map[string]any {
	if len(data) == 0 {
		return data
	}
	if smallData(data) {
		return data
	}
	raw, err := json.Marshal(data)
	if err != nil || len(raw) <= boundAbove {
		return data // a marshal error is reported by Publish
	}
	var generic map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&generic) != nil {
		return data
	}
	out := boundValue(generic).(map[string]any)
	out["truncated"] = len(raw)
	if b, err := json.Marshal(out); err == nil && len(b) <= MaxEventBytes-1024 {
		return out
	}
	// Still too large (many keys, or deep nesting): keep the short values only.
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	small := map[string]any{"truncated": len(raw)}
	size := 0
	var dropped []string
	for _, k := range keys {
		b, _ := json.Marshal(out[k])
		if len(k)+len(b) <= 1024 && size+len(k)+len(b) <= MaxEventBytes/2 {
			small[k] = out[k]
			size += len(k) + len(b)
		} else if k != "truncated" {
			dropped = append(dropped, k)
		}
	}
	if len(dropped) > 0 {
		small["truncated_keys"] = boundList(anySlice(dropped))
	}
	return small
}

// smallData reports, without marshalling, data that is surely under boundAbove: a few
// scalars and short strings (most events).
func smallData(data map[string]any) bool {
	if len(data) > 32 {
		return false
	}
	n := 0
	for k, v := range data {
		n += len(k) + 8
		switch v := v.(type) {
		case string:
			n += 2 * len(v) // room for escapes
		case bool, nil, int, int32, int64, uint, uint32, uint64, float64:
			n += 24
		default:
			return false
		}
	}
	return n <= boundAbove
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func boundValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = boundValue(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = boundValue(x)
		}
		return boundList(v)
	case string:
		return boundText(v)
	}
	return v
}

func boundList(v []any) []any {
	if len(v) <= MaxListItems {
		return v
	}
	out := append(v[:MaxListItems:MaxListItems], fmt.Sprintf("… and %d more", len(v)-MaxListItems))
	return out
}

func boundText(s string) string {
	if n := strings.Count(s, "\n"); n >= MaxListItems {
		lines := strings.SplitN(s, "\n", MaxListItems+1)
		s = strings.Join(lines[:MaxListItems], "\n") + fmt.Sprintf("\n… and %d more", n+1-MaxListItems)
	}
	if len(s) > MaxStringBytes {
		keep := MaxStringBytes - 40
		for keep > 0 && !utf8.RuneStart(s[keep]) {
			keep--
		}
		s = s[:keep] + fmt.Sprintf("…[%d bytes cut]", len(s)-keep)
	}
	return s
}

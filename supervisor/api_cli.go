package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/logs"
)

// maxLogUnits bounds how many units one logs request may name.
const maxLogUnits = 256

// registerCLIRoutes adds the routes of the command line's daily verbs:
// logs of several units with filters, kill, reset-failed, enable, disable.
func (s *Supervisor) registerCLIRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/logs", s.handleLogsQuery)
	mux.HandleFunc("POST /v1/units/{name}/kill", s.handleKill)
	mux.HandleFunc("POST /v1/units/{name}/reset-failed", s.handleResetFailed)
	mux.HandleFunc("POST /v1/reset-failed", s.handleResetFailed)
	mux.HandleFunc("POST /v1/units/{name}/enable", s.handleChoice)
	mux.HandleFunc("POST /v1/units/{name}/disable", s.handleChoice)
	mux.HandleFunc("GET /v1/units/{name}/enabled", s.handleEnabled)
	mux.HandleFunc("GET /v1/events/last", s.handleLastSeq)
}

// handleLastSeq is GET /v1/events/last: {"seq": N}, the seq of the newest
// event, so a client can follow from now (events?since=N).
func (s *Supervisor) handleLastSeq(w http.ResponseWriter, r *http.Request) {
	if s.opts.Bus == nil {
		writeErr(w, http.StatusNotFound, "no event log kept", "")
		return
	}
	writeJSON(w, http.StatusOK, api.LastSeqResult{Seq: s.opts.Bus.LastSeq()})
}

// logFilter is what GET /v1/logs keeps of the lines.
type logFilter struct {
	since, until time.Time
	stream       string
	grep         *regexp.Regexp
}

func (f logFilter) keep(l logs.Line) bool {
	switch {
	case !f.since.IsZero() && l.Time.Before(f.since):
		return false
	case !f.until.IsZero() && l.Time.After(f.until):
		return false
	case f.stream != "" && l.Stream != f.stream:
		return false
	case f.grep != nil && !f.grep.MatchString(l.Text):
		return false
	}
	return true
}

// handleLogsQuery is GET /v1/logs?unit=A&unit=B&n=&since=&until=&stream=&grep=&follow=1:
// the last n lines (n=0: none) of the named units that pass the filters,
// merged by time, then live lines when following.
func (s *Supervisor) handleLogsQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := q["unit"]
	if len(names) == 0 || len(names) > maxLogUnits {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("name between 1 and %d units", maxLogUnits), "unit=NAME, once per unit")
		return
	}
	for _, n := range names {
		if !s.checkName(w, n) {
			return
		}
	}
	if s.opts.Logs == nil {
		writeErr(w, http.StatusNotFound, "no logs kept", "")
		return
	}
	n := 10
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad n %q", v), "n is a number of lines, e.g. n=50")
			return
		}
	}
	var f logFilter
	for key, t := range map[string]*time.Time{"since": &f.since, "until": &f.until} {
		if v := q.Get(key); v != "" {
			var err error
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad %s %q", key, v), "an RFC 3339 time")
				return
			}
		}
	}
	switch f.stream = q.Get("stream"); f.stream {
	case "", "stdout", "stderr":
	default:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad stream %q", f.stream), "stream=stdout or stream=stderr")
		return
	}
	if g := q.Get("grep"); g != "" {
		if len(g) > 1024 {
			writeErr(w, http.StatusBadRequest, "grep pattern longer than 1024 bytes", "")
			return
		}
		re, err := regexp.Compile(g)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "bad grep: "+err.Error(), "a Go regular expression")
			return
		}
		f.grep = re
	}
	var missing []string
	if err := s.do(r.Context(), func() {
		for _, n := range names {
			if _, ok := s.desired[n]; !ok {
				missing = append(missing, n)
			}
		}
	}); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	if len(missing) > 0 {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no such unit: %s", strings.Join(missing, ", ")), "")
		return
	}
	follow := q.Get("follow") == "1"
	live := make(chan logs.Line, 256)
	if follow {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		for _, n := range names {
			ch, stop := s.followLogs(n)
			go func() {
				defer stop()
				for {
					select {
					case l, ok := <-ch:
						if !ok {
							return
						}
						select {
						case live <- l:
						case <-ctx.Done():
							return
						}
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	}
	var lines []logs.Line
	// Following began before the stored lines were read: a live line at or
	// before a unit's last stored one was already sent.
	lastStored := map[string]time.Time{}
	if n > 0 {
		lq := logs.Query{N: n, Since: f.since, Until: f.until, Stream: f.stream}
		if f.grep != nil {
			lq.Match = f.grep
		}
		for _, name := range names {
			lines = append(lines, s.opts.Logs.Query(name, lq)...)
		}
		sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		for _, l := range lines {
			lastStored[l.Unit] = l.Time
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, l := range lines {
		enc.Encode(l)
	}
	rc := http.NewResponseController(w)
	rc.Flush()
	if !follow {
		return
	}
	for {
		select {
		case l := <-live:
			if !f.keep(l) || !l.Time.After(lastStored[l.Unit]) {
				continue
			}
			if enc.Encode(l) != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// handleKill is POST /v1/units/{name}/kill?signal=SIG&main=1: a signal to
// the unit's process group (or its main process). What follows is up to the
// unit's restart setting, as for any exit.
func (s *Supervisor) handleKill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	sig, ok := signalByName(r.URL.Query().Get("signal"))
	if !ok {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("unknown signal %q", r.URL.Query().Get("signal")), "a name such as TERM, HUP, KILL, USR1, or a number")
		return
	}
	mainOnly := r.URL.Query().Get("main") == "1"
	peer, _ := peerOf(r)
	var (
		code = http.StatusOK
		msg  string
		err  error
	)
	if e := s.do(r.Context(), func() {
		if _, ok := s.desired[name]; !ok {
			code = http.StatusNotFound
			return
		}
		rt := s.units[name]
		if rt == nil || !rt.Running || rt.proc == nil {
			code, msg = http.StatusConflict, fmt.Sprintf("unit %q has no process to signal", name)
			return
		}
		s.emit(name, rt.PID, api.APIKill{Signal: killSignalName(sig), Main: mainOnly, Caller: peer.caller()})
		if mainOnly {
			err = killMain(rt.PID, sig)
		} else {
			err = rt.proc.Signal(sig)
		}
	}); e != nil {
		writeErr(w, http.StatusServiceUnavailable, e.Error(), "")
		return
	}
	switch {
	case code == http.StatusNotFound:
		notFound(w, name)
	case code != http.StatusOK:
		writeErr(w, code, msg, "opsvc start starts it")
	case err != nil:
		writeErr(w, http.StatusInternalServerError, fmt.Sprintf("signal %s: %v", name, err), "")
	default:
		writeJSON(w, http.StatusOK, api.OKResult{OK: true})
	}
}

// handleResetFailed is POST /v1/units/{name}/reset-failed and POST
// /v1/reset-failed (every unit): a failed unit becomes inactive, its start
// limit and backoff forgotten.
func (s *Supervisor) handleResetFailed(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name != "" && !s.checkName(w, name) {
		return
	}
	peer, _ := peerOf(r)
	found := true
	if err := s.do(r.Context(), func() {
		if name != "" {
			if _, found = s.desired[name]; !found {
				return
			}
		}
		for n, rec := range s.units {
			if name != "" && n != name {
				continue
			}
			failed := rec.Phase() == PhaseFailed
			s.step(n, rec, Event{Kind: EvResetFailed})
			if failed {
				s.emit(n, 0, api.APIResetFailed{Caller: peer.caller()})
			}
		}
	}); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	if !found {
		notFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, api.OKResult{OK: true})
}

// handleChoice is POST /v1/units/{name}/enable and /disable: whether the
// unit starts with the daemon, kept in the state directory.
func (s *Supervisor) handleChoice(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	enable := strings.HasSuffix(r.URL.Path, "/enable")
	peer, _ := peerOf(r)
	var (
		found bool
		err   error
	)
	if e := s.do(r.Context(), func() {
		if _, found = s.desired[name]; !found {
			return
		}
		if err = s.setChoice(name, enable); err == nil {
			caller := peer.caller()
			if enable {
				s.emit(name, 0, api.APIEnable{Caller: caller})
			} else {
				s.emit(name, 0, api.APIDisable{Caller: caller})
			}
		}
	}); e != nil {
		writeErr(w, http.StatusServiceUnavailable, e.Error(), "")
		return
	}
	switch {
	case !found:
		notFound(w, name)
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err.Error(), "check the state directory is writable")
	default:
		writeJSON(w, http.StatusOK, api.EnableResult{OK: true, Enabled: enable})
	}
}

// handleEnabled is GET /v1/units/{name}/enabled: {"enabled": bool, "from":
// "choice"|"file"}.
func (s *Supervisor) handleEnabled(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	var (
		found, en bool
		from      string
	)
	if e := s.do(r.Context(), func() {
		var d Desired
		if d, found = s.desired[name]; !found {
			return
		}
		if v, ok := s.choice(name); ok {
			en, from = v, "choice"
			return
		}
		en, from = d.Unit == nil || d.Unit.Enabled, "file"
	}); e != nil {
		writeErr(w, http.StatusServiceUnavailable, e.Error(), "")
		return
	}
	if !found {
		notFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, api.EnabledResult{Enabled: en, From: from})
}

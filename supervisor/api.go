package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opsvc/opsvc/cluster/placement"
	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
)

// UnitStatus is one unit as the API shows it.
type UnitStatus = api.UnitStatus

type peerKey struct{}

// Peer is the process on the other end of a control connection.
type Peer struct {
	PID int    `json:"pid"`
	UID int    `json:"uid"`
	GID int    `json:"gid"`
	SID string `json:"sid,omitempty"` // Windows: the user SID of a named pipe's client
}

func (p Peer) caller() api.Caller { return api.Caller{UID: p.UID, PID: p.PID, SID: p.SID} }

// ConnContext records the peer's credentials (SO_PEERCRED) for handlers; give
// it to http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	if p, ok := pipePeer(c); ok {
		return context.WithValue(ctx, peerKey{}, p)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	p, ok := peerCred(uc)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerOf(r *http.Request) (Peer, bool) {
	p, ok := r.Context().Value(peerKey{}).(Peer)
	return p, ok
}

// RequestPeer is the process that sent r over the control socket; ok is
// false over TCP.
func RequestPeer(r *http.Request) (p Peer, ok bool) { return peerOf(r) }

// emit publishes an event whose data is one of the api package's types.
func (s *Supervisor) emit(unitName string, pid int, d api.EventData) {
	s.publish(d.EventType(), unitName, pid, api.Map(d))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, &api.Error{Message: msg, Hint: hint})
}

// unavailable answers a request the reconcile loop could not take: the
// daemon is stopping, or the client gave up.
func unavailable(w http.ResponseWriter, err error) {
	writeErr(w, http.StatusServiceUnavailable, "daemon is not taking requests: "+err.Error(), "the daemon is stopping or overloaded; try again, or see: opsvc status")
}

// Handler is the control API.
func (s *Supervisor) Handler() http.Handler {
	if s.control.p.Load() == nil {
		// The first call comes before any request, so before any
		// PUT /v1/settings: reading the settings here races with nothing.
		s.control.store(s.opts.Settings.Control)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/units", s.handleList)
	mux.HandleFunc("GET /v1/units/{name}", s.handleGet)
	mux.HandleFunc("GET /v1/units/{name}/definition", s.handleDefinition)
	mux.HandleFunc("POST /v1/units/{name}/{verb}", s.handleVerb)
	mux.HandleFunc("GET /v1/units/{name}/logs", s.handleLogs)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	mux.HandleFunc("POST /v1/daemon/reexec", s.handleReexec)
	mux.HandleFunc("POST /v1/daemon/handover", s.handleHandover)
	s.chainRoutes(mux)
	s.operatorRoutes(mux)
	s.registerCLIRoutes(mux)
	if s.opts.Bus != nil {
		mux.Handle("GET /v1/events", s.fleetEvents(streaming(s.opts.Bus)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "the routes are under /v1/units, /v1/events, /v1/reload, /v1/chains and /v1/settings")
	})
	return withBodyCap(s.guard(mux), MaxBodyBytes)
}

// guard lets through root, the daemon's own user, the configured group and
// uids; others get 403 and an event.
func (s *Supervisor) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerOf(r)
		if ok && !s.allowed(p) {
			s.emit("", p.PID, api.APIDenied{UID: p.UID, PID: p.PID, Method: r.Method, Path: r.URL.Path, Status: http.StatusForbidden, Reason: "uid not allowed"})
			writeErr(w, http.StatusForbidden, fmt.Sprintf("uid %d may not use this daemon", p.UID), "add the uid to [control] allow_uids or the user to the [control] group in opsvc.toml")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Supervisor) allowed(p Peer) bool {
	if p.SID != "" {
		return true // a named pipe's client: the pipe's DACL let it in
	}
	if p.UID == 0 || p.UID == os.Geteuid() {
		return true
	}
	ctl := s.control.load()
	for _, u := range ctl.AllowUIDs {
		if u == p.UID {
			return true
		}
	}
	if g := ctl.Group; g != "" {
		return inGroup(p, g)
	}
	return false
}

// controlSnapshot holds the [control] settings the access check reads on
// the connections' goroutines while PUT /v1/settings replaces them on the
// loop. A stored snapshot is never changed.
type controlSnapshot struct {
	p atomic.Pointer[config.ControlSettings]
}

func (c *controlSnapshot) load() *config.ControlSettings {
	if v := c.p.Load(); v != nil {
		return v
	}
	return &config.ControlSettings{}
}

func (c *controlSnapshot) store(ctl config.ControlSettings) {
	ctl.AllowUIDs = slices.Clone(ctl.AllowUIDs)
	c.p.Store(&ctl)
}

// cloneSettings returns a copy of st that shares no list with it, so that
// decoding into the copy leaves st as it was.
func cloneSettings(st config.Settings) config.Settings {
	st.Orchestrator.ValidModels = slices.Clone(st.Orchestrator.ValidModels)
	st.Control.AllowUIDs = slices.Clone(st.Control.AllowUIDs)
	st.Cluster.Etcd = slices.Clone(st.Cluster.Etcd)
	return st
}

// applySettings makes next the daemon's settings. It runs on the loop.
func (s *Supervisor) applySettings(next config.Settings) {
	models := !slices.Equal(s.opts.Settings.Orchestrator.ValidModels, next.Orchestrator.ValidModels)
	s.opts.Settings = next
	s.control.store(next.Control)
	if models {
		// Units naming a model are checked against valid_models: build them
		// again under the new list (the files' parses are kept).
		s.parsed.SetValidModels(next.Orchestrator.ValidModels)
		if s.set != nil {
			s.reload("settings")
		}
	}
}

func (s *Supervisor) status(name string) UnitStatus {
	return s.statusRow(name).status()
}

// statusRow is what a unit's status is made of, copied on the loop; the
// status itself is made off the loop.
type statusRow struct {
	name  string
	want  bool
	unit  *unit.Unit // not changed after load
	lc    *statusLC  // a copy; nil without a record
	probs []unit.Problem
	away  string         // Desired.Away
	hold  placement.Hold // a fleet unit's hold
}

// statusLC is the part of a Lifecycle a status shows.
type statusLC struct {
	State                                  State
	Sub                                    string
	PID                                    int
	Since                                  time.Time
	Restarts                               int
	Running                                bool
	Exit                                   *ExitStatus
	Result, StatusText, LastError, Blocked string
}

func newStatusLC(lc *Lifecycle) statusLC {
	return statusLC{State: lc.State, Sub: lc.Sub, PID: lc.PID, Since: lc.Since, Restarts: lc.Restarts, Running: lc.Running,
		Exit: lc.Exit, Result: lc.Result, StatusText: lc.StatusText, LastError: lc.LastError, Blocked: lc.Blocked}
}

// statusRow copies what the status of name needs. On the loop.
func (s *Supervisor) statusRow(name string) statusRow {
	d := s.desired[name]
	r := statusRow{name: name, want: d.Want, unit: d.Unit, probs: s.errors[name], away: d.Away, hold: s.holds[name]}
	if rec := s.units[name]; rec != nil {
		lc := newStatusLC(&rec.Lifecycle)
		r.lc = &lc
	}
	return r
}

func (r statusRow) status() UnitStatus {
	us := UnitStatus{Name: r.name, State: Inactive, Sub: "dead", Wanted: r.want, Sources: []string{}}
	if u := r.unit; u != nil {
		us.Description = u.Description
		us.Type = string(u.Service.Type)
		us.Sources = u.Sources
	}
	if rec := r.lc; rec != nil {
		us.State, us.Sub, us.PID, us.Since = rec.State, rec.Sub, rec.PID, rec.Since
		us.Restarts, us.Result, us.StatusText = rec.Restarts, rec.Result, rec.StatusText
		if rec.Exit != nil {
			us.Exit = &api.ExitStatus{Code: rec.Exit.Code, Signal: rec.Exit.Signal}
		}
		us.LastError, us.Blocked = rec.LastError, rec.Blocked
	}
	if probs := r.probs; len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Error()
		}
		us.Error = strings.Join(msgs, "\n")
		if len(us.Sources) == 0 {
			us.Sources = []string{probs[0].File}
		}
	}
	r.placementStatus(&us)
	return us
}

// handleList lists every unit. The loop only copies what the statuses are
// made of, in the order of names it keeps for planning (sorted); making
// and writing them is done here, off the loop.
func (s *Supervisor) handleList(w http.ResponseWriter, r *http.Request) {
	var rows []statusRow
	sorted := true
	err := s.do(r.Context(), func() {
		rows = make([]statusRow, 0, len(s.desired))
		lcs := make([]statusLC, 0, len(s.units))
		probs, holds := len(s.errors) > 0, len(s.holds) > 0 // most often neither: no lookup per unit
		add := func(n string, d Desired) {
			row := statusRow{name: n, want: d.Want, unit: d.Unit, away: d.Away}
			if probs {
				row.probs = s.errors[n]
			}
			if holds {
				row.hold = s.holds[n]
			}
			if rec := s.units[n]; rec != nil {
				lcs = append(lcs, newStatusLC(&rec.Lifecycle))
				row.lc = &lcs[len(lcs)-1]
			}
			rows = append(rows, row)
		}
		for _, n := range s.planOrder() {
			if d, ok := s.desired[n]; ok {
				add(n, d)
			}
		}
		if len(rows) != len(s.desired) { // the kept order is behind: every unit, to be sorted
			rows, lcs, sorted = rows[:0], lcs[:0], false
			for n, d := range s.desired {
				add(n, d)
			}
		}
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	if !sorted {
		slices.SortFunc(rows, func(a, b statusRow) int { return strings.Compare(a.name, b.name) })
	}
	degraded := ""
	if s.opts.Bus != nil {
		degraded = s.opts.Bus.FaultText()
	}
	if t := s.fleetText(); t != "" {
		degraded = strings.TrimPrefix(degraded+"; "+t, "; ")
	}
	writeUnits(w, http.StatusOK, len(rows), func(i int) UnitStatus { return rows[i].status() }, degraded)
}

// lookup validates a unit name from a request and reports whether the unit exists.
func (s *Supervisor) checkName(w http.ResponseWriter, name string) bool {
	if err := unit.ValidName(name); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "unit names use A-Z a-z 0-9 : _ . - and at most one @")
		return false
	}
	return true
}

func notFound(w http.ResponseWriter, name string) {
	writeErr(w, http.StatusNotFound, fmt.Sprintf("unit %q not found", name), "see: opsvc status")
}

func (s *Supervisor) handleGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	var (
		us    UnitStatus
		found bool
	)
	if err := s.do(r.Context(), func() {
		_, found = s.desired[name]
		if found {
			us = s.status(name)
		}
	}); err != nil {
		unavailable(w, err)
		return
	}
	if !found {
		notFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, us)
}

func (s *Supervisor) handleDefinition(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	var (
		ann []unit.Annotation
		err error
	)
	if e := s.do(r.Context(), func() {
		if s.set == nil {
			err = errors.New("units not loaded")
			return
		}
		ann, err = s.set.Annotate(name)
	}); e != nil {
		unavailable(w, e)
		return
	}
	if err != nil {
		writeErr(w, http.StatusNotFound, err.Error(), "see: opsvc status")
		return
	}
	def := api.Definition{Name: name, Definition: make([]api.DefinitionEntry, len(ann))}
	for i, a := range ann {
		def.Definition[i] = api.DefinitionEntry{Table: a.Table, Key: a.Key, Value: a.Value, Source: a.Source}
	}
	writeJSON(w, http.StatusOK, def)
}

func (s *Supervisor) handleVerb(w http.ResponseWriter, r *http.Request) {
	name, verb := r.PathValue("name"), r.PathValue("verb")
	if !s.checkName(w, name) {
		return
	}
	switch verb {
	case "start", "stop", "restart":
	case "command":
		s.handleCommand(w, r, name)
		return
	case "move":
		s.handleMove(w, r, name)
		return
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("unknown action %q", verb), "use start, stop, restart or command")
		return
	}
	wait := r.URL.Query().Get("wait") == "1"
	drain := r.URL.Query().Get("drain") == "1"
	peer, _ := peerOf(r)
	var (
		code    int
		msg     string
		waiting *waiter
	)
	err := s.do(r.Context(), func() {
		code, msg = s.ask(name, verb, drain, peer)
		if code == http.StatusOK && wait {
			waiting = s.await(r.Context(), name, verb)
		}
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	if code == http.StatusNotFound {
		if msg == "" {
			notFound(w, name)
		} else {
			writeErr(w, code, msg, "see: opsvc status")
		}
		return
	}
	if code != http.StatusOK {
		writeErr(w, code, msg, "fix the unit file (opsvc validate), then opsvc reload")
		return
	}
	if wait {
		stream(w)
		select {
		case err := <-waiting.reply:
			// The wait is over: the answer gets a deadline again.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(answerTimeout))
			if err != nil {
				var us UnitStatus
				s.do(context.Background(), func() { us = s.status(name) })
				writeJSON(w, http.StatusConflict, &api.Error{Message: err.Error(), Hint: "see: opsvc status " + name, Unit: &us})
				return
			}
		case <-r.Context().Done():
			return
		}
	}
	var us UnitStatus
	if err := s.do(r.Context(), func() { us = s.status(name) }); err != nil {
		unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, us)
}

func (s *Supervisor) handleCommand(w http.ResponseWriter, r *http.Request, name string) {
	body, err := decodeCommand(r.Body)
	if err != nil {
		if tooLarge(w, err) {
			return
		}
		writeErr(w, http.StatusBadRequest, err.Error(), `send {"name": NAME, "args": JSON} (opsvc send UNIT NAME [JSON])`)
		return
	}
	var (
		ch   *worker.Channel
		code int
		msg  string
	)
	peer, _ := peerOf(r)
	err = s.do(r.Context(), func() {
		rec := s.units[name]
		if _, ok := s.desired[name]; !ok {
			code = http.StatusNotFound
			return
		}
		if rec == nil || rec.channel == nil || !rec.Running {
			code, msg = http.StatusConflict, fmt.Sprintf("unit %q has no running IPC worker", name)
			return
		}
		ch = rec.channel
		s.emit(name, rec.PID, api.APICommand{Command: body.Name, Caller: peer.caller()})
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	switch code {
	case 0:
	case http.StatusNotFound:
		notFound(w, name)
		return
	default:
		writeErr(w, code, msg, "commands go to units of type ipc (or orchestrator) while they run")
		return
	}
	// The worker may take up to commandTimeout: the server's write deadline
	// must not fall before the answer.
	longAnswer(w, commandTimeout+answerTimeout)
	ctx, cancel := context.WithTimeout(r.Context(), commandTimeout)
	defer cancel()
	data, err := ch.Command(ctx, body.Name, body.Args)
	if err != nil {
		var re *worker.ReplyError
		if errors.As(err, &re) {
			writeErr(w, http.StatusBadGateway, re.Text, "the worker answered with an error")
			return
		}
		writeErr(w, http.StatusBadGateway, err.Error(), "the worker did not answer")
		return
	}
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, api.CommandResult{OK: true, Data: data})
}

func (s *Supervisor) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := s.Reload(r.Context())
	if err != nil {
		unavailable(w, err)
		return
	}
	if res.Err != "" {
		// The units directory could not be read: nothing was reloaded, and
		// the units already loaded keep running as they were.
		writeErr(w, http.StatusInternalServerError, "reload: "+res.Err, "the units loaded before keep running; fix the units directory, then opsvc reload")
		return
	}
	writeJSON(w, http.StatusOK, api.ReloadResult{Changed: nonNil(res.Changed), Added: nonNil(res.Added), Removed: nonNil(res.Removed), Message: res.String()})
}

// Reload re-reads the units (opsvc reload, SIGHUP).
func (s *Supervisor) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	s.notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
	defer s.notify("READY=1")
	r := s.loadUnits() // parsed here, off the loop
	err := s.do(ctx, func() { res = s.applyLoad(r, "request") })
	return res, err
}

func (s *Supervisor) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	if s.opts.Logs == nil {
		writeErr(w, http.StatusNotFound, "no logs kept", "this daemon runs without a log store")
		return
	}
	var found bool
	if err := s.do(r.Context(), func() { _, found = s.desired[name] }); err != nil {
		unavailable(w, err)
		return
	}
	if !found {
		notFound(w, name)
		return
	}
	n := 10
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad n %q", v), "n is a number of lines, e.g. n=50")
			return
		}
	}
	follow := r.URL.Query().Get("follow") == "1"
	var live <-chan logsLine
	var cancel func()
	if follow {
		stream(w)
		live, cancel = s.followLogs(name)
		defer cancel()
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, l := range s.opts.Logs.Tail(name, n) {
		enc.Encode(logLine(l))
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	if !follow {
		return
	}
	for {
		select {
		case l, ok := <-live:
			if !ok {
				return
			}
			enc.Encode(logLine(l))
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

// logLine is a line of the log store as the API shows it.
func logLine(l logsLine) api.LogLine {
	return api.LogLine{Time: l.Time, Unit: l.Unit, Stream: l.Stream, Text: l.Text, PID: l.PID, Fields: l.Fields}
}

// nonNil makes an empty list [] rather than null on the wire.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// decodeCommand reads the body of POST /v1/units/{name}/command.
func decodeCommand(r io.Reader) (api.CommandRequest, error) {
	var body api.CommandRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return body, err
		}
		return body, fmt.Errorf("command body is not valid JSON: %v", err)
	}
	if dec.More() {
		return body, errors.New("command body has more than one JSON value")
	}
	if body.Name == "" {
		return body, errors.New("command body has no name")
	}
	if len(body.Name) > maxCommandName {
		return body, fmt.Errorf("command name is %d bytes, longer than %d", len(body.Name), maxCommandName)
	}
	return body, nil
}

// commandTimeout bounds the wait for a worker's reply to a command.
const commandTimeout = 30 * time.Second

// maxCommandName bounds a command's name.
const maxCommandName = 256

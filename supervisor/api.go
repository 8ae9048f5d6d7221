package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"golang.org/x/sys/unix"
)

// UnitStatus is one unit as the API shows it (DESIGN §7).
type UnitStatus struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Type        string      `json:"type,omitempty"`
	State       State       `json:"state"`
	Sub         string      `json:"sub"`
	PID         int         `json:"pid"`
	Since       time.Time   `json:"since"`
	Restarts    int         `json:"restarts"`
	Exit        *ExitStatus `json:"exit"`
	Result      string      `json:"result,omitempty"`
	StatusText  string      `json:"status_text"`
	Error       string      `json:"error"`
	LastError   string      `json:"last_error,omitempty"`
	Blocked     string      `json:"blocked,omitempty"`
	Wanted      bool        `json:"wanted"`
	Sources     []string    `json:"sources"`
}

// APIError is the body of every error response.
type APIError struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

type peerKey struct{}

// Peer is the process on the other end of a control connection.
type Peer struct {
	PID int `json:"pid"`
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// ConnContext records the peer's credentials (SO_PEERCRED) for handlers; give
// it to http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)})
}

func peerOf(r *http.Request) (Peer, bool) {
	p, ok := r.Context().Value(peerKey{}).(Peer)
	return p, ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, APIError{Error: msg, Hint: hint})
}

// Handler is the control API (DESIGN §7).
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/units", s.handleList)
	mux.HandleFunc("GET /v1/units/{name}", s.handleGet)
	mux.HandleFunc("GET /v1/units/{name}/definition", s.handleDefinition)
	mux.HandleFunc("POST /v1/units/{name}/{verb}", s.handleVerb)
	mux.HandleFunc("GET /v1/units/{name}/logs", s.handleLogs)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	s.chainRoutes(mux)
	if s.opts.Bus != nil {
		mux.Handle("GET /v1/events", s.opts.Bus)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "see DESIGN §7 for the routes: /v1/units, /v1/events, /v1/reload, /v1/chains, /v1/settings")
	})
	return s.guard(mux)
}

// guard lets through root, the daemon's own user, the configured group and
// uids; others get 403 and an event.
func (s *Supervisor) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerOf(r)
		if ok && !s.allowed(p) {
			s.publish("api.denied", "", p.PID, map[string]any{"uid": p.UID, "pid": p.PID, "path": r.URL.Path})
			writeErr(w, http.StatusForbidden, fmt.Sprintf("uid %d may not use this daemon", p.UID), "add the uid to [control] allow_uids or the user to the [control] group in opsvc.toml")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Supervisor) allowed(p Peer) bool {
	if p.UID == 0 || p.UID == os.Geteuid() {
		return true
	}
	for _, u := range s.opts.Settings.Control.AllowUIDs {
		if u == p.UID {
			return true
		}
	}
	if g := s.opts.Settings.Control.Group; g != "" {
		return inGroup(p, g)
	}
	return false
}

func (s *Supervisor) status(name string) UnitStatus {
	d := s.desired[name]
	us := UnitStatus{Name: name, State: Inactive, Sub: "dead", Wanted: d.Want, Sources: []string{}}
	if d.Unit != nil {
		us.Description = d.Unit.Description
		us.Type = string(d.Unit.Service.Type)
		us.Sources = d.Unit.Sources
	}
	if rt := s.units[name]; rt != nil {
		us.State, us.Sub, us.PID, us.Since = rt.State, rt.Sub, rt.PID, rt.Since
		us.Restarts, us.Exit, us.Result, us.StatusText = rt.restarts, rt.exit, rt.result, rt.statusText
		us.LastError, us.Blocked = rt.lastError, rt.Blocked
	}
	if probs := s.errors[name]; len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Error()
		}
		us.Error = strings.Join(msgs, "\n")
		if len(us.Sources) == 0 {
			us.Sources = []string{probs[0].File}
		}
	}
	return us
}

func (s *Supervisor) handleList(w http.ResponseWriter, r *http.Request) {
	var out []UnitStatus
	err := s.do(r.Context(), func() {
		names := make([]string, 0, len(s.desired))
		for n := range s.desired {
			names = append(names, n)
		}
		sort.Strings(names)
		out = make([]UnitStatus, 0, len(names))
		for _, n := range names {
			out = append(out, s.status(n))
		}
	})
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"units": out})
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
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
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
		writeErr(w, http.StatusServiceUnavailable, e.Error(), "")
		return
	}
	if err != nil {
		writeErr(w, http.StatusNotFound, err.Error(), "see: opsvc status")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "definition": ann})
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
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("unknown action %q", verb), "use start, stop, restart or command")
		return
	}
	wait := r.URL.Query().Get("wait") == "1"
	drain := r.URL.Query().Get("drain") == "1"
	peer, _ := peerOf(r)
	var (
		code = http.StatusOK
		msg  string
		w8   *waiter
	)
	err := s.do(r.Context(), func() {
		d, ok := s.desired[name]
		if !ok && verb != "stop" && strings.Contains(name, "@") && s.set != nil {
			u, err := s.set.Instance(name)
			if err != nil {
				code, msg = http.StatusNotFound, err.Error()
				return
			}
			s.runtimeI[name] = true
			d, ok = Desired{Unit: u}, true
		}
		if !ok {
			code = http.StatusNotFound
			return
		}
		if d.Unit == nil && verb != "stop" {
			code, msg = http.StatusConflict, fmt.Sprintf("unit %q has no valid definition: %s", name, s.status(name).Error)
			return
		}
		s.publish("api."+verb, name, 0, map[string]any{"uid": peer.UID, "pid": peer.PID})
		switch verb {
		case "start":
			d.Want = true
			if rt := s.units[name]; rt == nil || !rt.Running {
				d.StartGen++ // a new run; a running unit is left as it is
			} else if rt.Stopping {
				d.StartGen++ // started again once the stop is through
			}
			w8 = &waiter{ctx: r.Context(), unit: name, check: startDone}
		case "stop":
			d.Want = false
			if rt := s.units[name]; rt != nil {
				switch {
				case drain:
					rt.drain = true
				case rt.Stopping && rt.drain:
					// A plain stop cuts a drain short: the stop deadline is
					// armed again, and SIGKILL follows it.
					rt.drain = false
					s.stop(name, rt, rt.StopReason, s.now(), "stop without drain")
				}
			}
			w8 = &waiter{ctx: r.Context(), unit: name, check: stopDone}
		case "restart":
			d.Want = true
			if rt := s.units[name]; rt != nil && rt.Running {
				d.RestartGen++
			} else {
				d.StartGen++
			}
			w8 = &waiter{ctx: r.Context(), unit: name, check: restartDone}
		}
		s.desired[name] = d
		if s.runtimeI[name] {
			s.saveRuntimeInstances()
		}
		if wait {
			w8.reply = make(chan error, 1)
			s.waiters = append(s.waiters, w8)
		}
	})
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
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
		select {
		case err := <-w8.reply:
			if err != nil {
				var us UnitStatus
				s.do(context.Background(), func() { us = s.status(name) })
				writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "hint": "see: opsvc status " + name, "unit": us})
				return
			}
		case <-r.Context().Done():
			return
		}
	}
	var us UnitStatus
	s.do(r.Context(), func() { us = s.status(name) })
	writeJSON(w, http.StatusOK, us)
}

func startDone(rt *runtime, d Desired) (bool, error) {
	if rt.Gen < d.StartGen {
		return false, nil
	}
	switch {
	case rt.State == Active:
		return true, nil
	case rt.State == Failed:
		return true, fmt.Errorf("unit failed (result: %s)", rt.result)
	case rt.Settled && rt.State == Inactive:
		return true, nil
	case rt.Blocked != "" && !strings.HasPrefix(rt.Blocked, "waiting") && !strings.HasPrefix(rt.Blocked, "after"):
		return true, errors.New(rt.Blocked)
	}
	return false, nil
}

func stopDone(rt *runtime, d Desired) (bool, error) {
	return !rt.Running, nil
}

func restartDone(rt *runtime, d Desired) (bool, error) {
	if rt.RestartGen < d.RestartGen {
		return false, nil
	}
	return startDone(rt, d)
}

func (s *Supervisor) handleCommand(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Name == "" {
		writeErr(w, http.StatusBadRequest, "command body must be JSON {\"name\": NAME, \"args\": …}", "opsvc send UNIT NAME [JSON]")
		return
	}
	var (
		ch   *worker.Channel
		code int
		msg  string
	)
	peer, _ := peerOf(r)
	err := s.do(r.Context(), func() {
		rt := s.units[name]
		if _, ok := s.desired[name]; !ok {
			code = http.StatusNotFound
			return
		}
		if rt == nil || rt.channel == nil || !rt.Running {
			code, msg = http.StatusConflict, fmt.Sprintf("unit %q has no running IPC worker", name)
			return
		}
		ch = rt.channel
		s.publish("api.command", name, rt.PID, map[string]any{"command": body.Name, "uid": peer.UID, "pid": peer.PID})
	})
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
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
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
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
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "data": data})
}

func (s *Supervisor) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := s.Reload(r.Context())
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"changed": res.Changed, "added": res.Added, "removed": res.Removed, "error": res.Err, "message": res.String()})
}

// Reload re-reads the units (opsvc reload, SIGHUP).
func (s *Supervisor) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := s.do(ctx, func() {
		s.notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
		res = s.reload("request")
		s.notify("READY=1")
	})
	return res, err
}

func (s *Supervisor) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.checkName(w, name) {
		return
	}
	if s.opts.Logs == nil {
		writeErr(w, http.StatusNotFound, "no logs kept", "")
		return
	}
	var found bool
	s.do(r.Context(), func() { _, found = s.desired[name] })
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
		live, cancel = s.followLogs(name)
		defer cancel()
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, l := range s.opts.Logs.Tail(name, n) {
		enc.Encode(l)
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
			enc.Encode(l)
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

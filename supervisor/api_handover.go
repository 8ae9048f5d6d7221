package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/opsvc/opsvc/supervisor/api"
)

// ReexecFunc prepares a re-exec of the daemon (Options.Reexec): it pauses
// the daemon and has the new binary check the state, or refuses with an
// error (the daemon then runs on). On success it returns the answer and the
// step that execs, run once the answer is written.
type ReexecFunc func(r *http.Request) (api.ReexecReply, func(), error)

// handleReexec is POST /v1/daemon/reexec.
func (s *Supervisor) handleReexec(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reexec == nil {
		writeErr(w, http.StatusNotImplemented, "this daemon cannot re-execute itself", "stop and start it instead")
		return
	}
	reply, exec, err := s.opts.Reexec(r)
	if err != nil {
		writeErr(w, http.StatusConflict, "re-exec refused: "+err.Error(), "the daemon runs on as it was, with its workers; see: opsvc events --type daemon.reexec_refused")
		return
	}
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusOK, reply)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	exec()
}

// ReplaceFunc prepares handing the daemon over to a new daemon that asked
// for it (Options.Replace): it checks the request, pauses the daemon and
// freezes its loop, or refuses with an error (the daemon then runs on). On
// success it returns the step that sends the state and files on conn, the
// request's connection once the 101 answer is written, and exits the
// process if the new daemon takes over. The step is called once: with a
// nil conn (and why) when the connection could not be taken, it gives up
// and the daemon runs on.
type ReplaceFunc func(r *http.Request, req api.HandoverRequest) (step func(conn *net.UnixConn, err error), err error)

// handleHandover is POST /v1/daemon/handover: only over the unix socket,
// and only for root or the daemon's own user, since whoever gets the
// handover gets every worker's pipes and sockets.
func (s *Supervisor) handleHandover(w http.ResponseWriter, r *http.Request) {
	p, ok := peerOf(r)
	if !ok || p.SID != "" {
		writeErr(w, http.StatusForbidden, "a handover is only asked for over the daemon's unix control socket", "run opsvc daemon --replace on the daemon's host, with --socket set to its socket")
		return
	}
	if p.UID != 0 && p.UID != os.Geteuid() {
		s.emit("", p.PID, api.APIDenied{UID: p.UID, PID: p.PID, Method: r.Method, Path: r.URL.Path, Status: http.StatusForbidden, Reason: "a handover is for root or the daemon's user"})
		writeErr(w, http.StatusForbidden, fmt.Sprintf("uid %d may not take this daemon over", p.UID), fmt.Sprintf("run opsvc daemon --replace as root or as uid %d, the daemon's user", os.Geteuid()))
		return
	}
	if s.opts.Replace == nil {
		writeErr(w, http.StatusNotImplemented, "this daemon cannot hand its workers over", "stop it and start the new daemon instead")
		return
	}
	var req api.HandoverRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		if tooLarge(w, err) {
			return
		}
		writeErr(w, http.StatusBadRequest, "bad handover request: "+err.Error(), `send {"version": N, "state": DIR}`)
		return
	}
	if req.Version <= 0 || req.State == "" {
		writeErr(w, http.StatusBadRequest, "bad handover request: version and state are needed", `send {"version": N, "state": DIR}`)
		return
	}
	step, err := s.opts.Replace(r, req)
	if err != nil {
		writeErr(w, http.StatusConflict, "handover refused: "+err.Error(), "the running daemon runs on as it was, with its workers")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		step(nil, fmt.Errorf("take the connection: %w", err))
		return
	}
	uc := unixConnOf(conn)
	switch {
	case uc == nil:
		conn.Close()
		step(nil, errors.New("the connection is not a unix socket"))
		return
	case brw.Reader.Buffered() > 0:
		conn.Close()
		step(nil, errors.New("the new daemon sent more than its request"))
		return
	}
	if _, err := io.WriteString(uc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+api.HandoverUpgrade+"\r\n\r\n"); err != nil {
		conn.Close()
		step(nil, fmt.Errorf("answer the new daemon: %w", err))
		return
	}
	step(uc, nil)
	conn.Close()
}

// unixConnOf is the unix socket under c's wrappers, nil if there is none.
func unixConnOf(c net.Conn) *net.UnixConn {
	for {
		if uc, ok := c.(*net.UnixConn); ok {
			return uc
		}
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			return nil
		}
		c = u.Unwrap()
	}
}

package supervisor

import (
	"net/http"

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

package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/registry"
)

func (s *Supervisor) chainRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/chains", s.handleChains)
	mux.HandleFunc("GET /v1/chains/{id}", s.handleChain)
	mux.HandleFunc("GET /v1/chains/{id}/lineage", s.handleLineage)
	mux.HandleFunc("GET /v1/settings", s.handleGetSettings)
	mux.HandleFunc("PUT /v1/settings", s.handlePutSettings)
}

func (s *Supervisor) registryError(w http.ResponseWriter, err error) {
	if errors.Is(err, registry.ErrCorrupt) {
		writeErr(w, http.StatusInternalServerError, err.Error(), "the corrupt file was kept aside; the registry starts empty")
		return
	}
	writeErr(w, http.StatusInternalServerError, err.Error(), "")
}

func (s *Supervisor) handleChains(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("archived") == "1" {
		s.handleArchived(w, r)
		return
	}
	if s.opts.Registry == nil {
		writeJSON(w, http.StatusOK, map[string]any{"chains": []registry.ChainSummary{}})
		return
	}
	var out []registry.ChainSummary
	err := s.opts.Registry.View(func(reg *registry.Registry) error {
		out = reg.Summaries()
		return nil
	})
	if err != nil {
		s.registryError(w, err)
		return
	}
	if out == nil {
		out = []registry.ChainSummary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"chains": out})
}

func (s *Supervisor) handleChain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var c *registry.Chain
	if s.opts.Registry != nil {
		if err := s.opts.Registry.View(func(reg *registry.Registry) error {
			c = reg.Find(id)
			return nil
		}); err != nil {
			s.registryError(w, err)
			return
		}
	}
	if c == nil {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("chain %q not found", id), "see: opsvc chains ls")
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Supervisor) handleLineage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var (
		out  []registry.LineageEntry
		lerr error
	)
	if s.opts.Registry == nil {
		lerr = fmt.Errorf("chain %q not found", id)
	} else if err := s.opts.Registry.View(func(reg *registry.Registry) error {
		out, lerr = reg.Lineage(id)
		return nil
	}); err != nil {
		s.registryError(w, err)
		return
	}
	if lerr != nil {
		writeErr(w, http.StatusNotFound, lerr.Error(), "see: opsvc chains ls")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lineage": out})
}

func (s *Supervisor) handleGetSettings(w http.ResponseWriter, r *http.Request) {
	var st config.Settings
	if err := s.do(r.Context(), func() { st = s.opts.Settings }); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handlePutSettings validates new settings, writes opsvc.toml (under its
// lock) and applies them to the running daemon.
func (s *Supervisor) handlePutSettings(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body) // Handler caps it at MaxBodyBytes
	if err != nil {
		if tooLarge(w, err) {
			return
		}
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	var cur config.Settings
	if err := s.do(r.Context(), func() { cur = s.opts.Settings }); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "")
		return
	}
	next := cloneSettings(cur) // the decoder must not write into the live settings' lists
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&next); err != nil {
		writeErr(w, http.StatusBadRequest, "settings: "+err.Error(), `send the JSON of GET /v1/settings with the fields to change, e.g. {"orchestrator":{"max_turns":20}}`)
		return
	}
	if err := next.Validate(); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "see the [orchestrator] bounds in the README")
		return
	}
	if s.opts.Paths.Config != "" {
		if err := config.SaveSettings(s.opts.Paths.Config, next); err != nil {
			writeErr(w, http.StatusInternalServerError, err.Error(), "check that the daemon can write --config")
			return
		}
	}
	peer, _ := peerOf(r)
	s.do(r.Context(), func() {
		s.applySettings(next)
		s.publish("config.settings", "", 0, map[string]any{"uid": peer.UID, "pid": peer.PID})
	})
	writeJSON(w, http.StatusOK, next)
}

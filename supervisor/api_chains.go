package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker/chain"
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
		writeJSON(w, http.StatusOK, registry.ChainList{Chains: []registry.ChainSummary{}})
		return
	}
	var out []registry.ChainSummary
	if r.URL.Query().Get("all") == "1" {
		// The archived chains first: they are the oldest.
		archived, err := s.opts.Registry.ReadArchive()
		if err != nil && len(archived) == 0 {
			s.registryError(w, err)
			return
		}
		var reg registry.Registry
		for i := range archived {
			out = append(out, reg.Summary(&archived[i]))
		}
	}
	err := s.opts.Registry.View(func(reg *registry.Registry) error {
		out = append(out, reg.Summaries()...)
		return nil
	})
	if err != nil {
		s.registryError(w, err)
		return
	}
	if out == nil {
		out = []registry.ChainSummary{}
	}
	writeJSON(w, http.StatusOK, registry.ChainList{Chains: out})
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
	if c == nil && s.opts.Registry != nil {
		// An archived chain: the newest copy, should it have been archived twice.
		archived, _ := s.opts.Registry.ReadArchive()
		for i := len(archived) - 1; i >= 0; i-- {
			if archived[i].ID == id {
				c = &archived[i]
				break
			}
		}
	}
	if c == nil {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("chain %q not found", id), "see: opsvc chains ls --all")
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
	writeJSON(w, http.StatusOK, registry.Lineage{Lineage: out})
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
		s.emit("", 0, api.ConfigSettings{Caller: peer.caller()})
		s.settingsChanged()
	})
	writeJSON(w, http.StatusOK, next)
}

// settingsChanged tells every running orchestrator worker that the settings changed: one waiting
// for a session lease asks again at once, and its next session runs under the new limits. It runs
// on the loop; the commands are sent off it.
func (s *Supervisor) settingsChanged() {
	for name, rt := range s.units {
		d := s.desired[name]
		if rt == nil || rt.channel == nil || d.Unit == nil || d.Unit.Service.Type != unit.TypeOrchestrator {
			continue
		}
		ch := rt.channel
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := ch.Command(ctx, chain.CommandSettingsChanged, nil); err != nil {
				s.logf("%s: tell the worker the settings changed: %v", name, err)
			}
		}()
	}
}

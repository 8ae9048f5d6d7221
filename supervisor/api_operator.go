package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opsvc/opsvc/config/atomicfile"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/unit"
)

// The original operator's routes, /metrics and the budgets the console
// shows.
func (s *Supervisor) operatorRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", s.Metrics())
	mux.HandleFunc("GET /v1/budgets", s.handleBudgets)
	mux.HandleFunc("GET /api/orchestrator/instances", s.handleInstances)
	mux.HandleFunc("POST /api/orchestrator/{id}/start", s.handleInstanceStart)
	mux.HandleFunc("POST /api/orchestrator/{id}/stop", s.handleInstanceStop)
}

// DefaultTemplate is the orchestrator template the instance routes use
// without ?template=.
const DefaultTemplate = "orchestrator"

// instanceFile is the name of the drop-in that keeps an instance's values.
const instanceFile = "instance.toml"

// maxInstanceBody bounds the body of POST /api/orchestrator/{id}/start.
const maxInstanceBody = 64 << 10

// maxKeptInstances bounds how many instances keep values in the state
// directory.
const maxKeptInstances = 1000

// maxTaskBytes bounds the task given to an instance.
const maxTaskBytes = 16 << 10

// instancesDir holds the values given to instances, one TEMPLATE@ID.d/
// drop-in directory each, read after the units directory's own drop-ins.
func (s *Supervisor) instancesDir() string {
	if s.opts.Paths.State == "" {
		return ""
	}
	return filepath.Join(s.opts.Paths.State, "instances")
}

// Budgets is the body of GET /v1/budgets: what was spent today (UTC)
// against the daily limits.
type Budgets struct {
	Day               string       `json:"day"`
	GlobalUsedUSD     float64      `json:"global_used_usd"`
	GlobalLimitUSD    float64      `json:"global_limit_usd"`
	PerWorkerLimitUSD float64      `json:"per_worker_limit_usd"`
	Units             []UnitBudget `json:"units"`
}

// UnitBudget is one orchestrator unit's spending today.
type UnitBudget struct {
	Unit     string  `json:"unit"`
	UsedUSD  float64 `json:"used_usd"`
	LimitUSD float64 `json:"limit_usd"`
}

func (s *Supervisor) handleBudgets(w http.ResponseWriter, r *http.Request) {
	snap := s.Metrics().Snapshot()
	if snap == nil {
		writeErr(w, http.StatusServiceUnavailable, "budgets: the daemon is starting", "retry in a moment")
		return
	}
	out := Budgets{Day: snap.Day, GlobalUsedUSD: snap.GlobalUsedUSD, GlobalLimitUSD: snap.GlobalLimitUSD,
		PerWorkerLimitUSD: snap.PerWorkerLimitUSD, Units: []UnitBudget{}}
	for _, u := range snap.UnitUsed {
		out.Units = append(out.Units, UnitBudget{Unit: u.Unit, UsedUSD: u.UsedUSD, LimitUSD: snap.PerWorkerLimitUSD})
	}
	writeJSON(w, http.StatusOK, out)
}

// InstanceList is the answer of GET /api/orchestrator/instances.
type InstanceList struct {
	Template  string     `json:"template"` // the template's name, without its "@"
	Instances []Instance `json:"instances"`
}

// Instance is one instance of an orchestrator template, as the original
// operator listed it.
type Instance struct {
	ID    string         `json:"id"`
	Unit  string         `json:"unit"`
	State string         `json:"state"`
	PID   int            `json:"pid"`
	Since time.Time      `json:"since"`
	Chain *InstanceChain `json:"chain"`
}

// InstanceChain is the latest chain of an instance.
type InstanceChain struct {
	ID           string  `json:"id"`
	Status       string  `json:"status"`
	Task         string  `json:"task"`
	Sessions     int     `json:"sessions"`
	TotalCostUSD float64 `json:"total_cost_usd"`
}

// template reads ?template= (with or without its @); it writes the error.
// Without it, the template is orchestrator@, or else the only orchestrator
// template of the units directory.
func (s *Supervisor) template(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := strings.TrimSuffix(r.URL.Query().Get("template"), "@")
	if t == "" {
		t = s.defaultTemplate(r)
	}
	if err := unit.ValidName(t); err != nil || strings.Contains(t, "@") {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("bad template %q", t), "name the template without its @, e.g. template=orchestrator")
		return "", false
	}
	return t, true
}

func (s *Supervisor) defaultTemplate(r *http.Request) string {
	var set *unit.Set
	if s.do(r.Context(), func() { set = s.set }) != nil || set == nil {
		return DefaultTemplate
	}
	entries, err := os.ReadDir(set.Dir)
	if err != nil {
		return DefaultTemplate
	}
	var found []string
	for _, e := range entries {
		p, ok := strings.CutSuffix(e.Name(), "@.toml")
		if !ok || unit.ValidName(p) != nil || strings.Contains(p, "@") {
			continue
		}
		if p == DefaultTemplate {
			return p
		}
		// A set is safe for concurrent use: built off the loop.
		if u, err := set.Instance(p + "@probe"); err == nil && u.Orchestrator != nil {
			found = append(found, p)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return DefaultTemplate
}

func (s *Supervisor) handleInstances(w http.ResponseWriter, r *http.Request) {
	tmpl, ok := s.template(w, r)
	if !ok {
		return
	}
	prefix := tmpl + "@"
	names := map[string]bool{}
	for _, n := range s.persistedInstances(prefix) {
		names[n] = true
	}
	statuses := map[string]UnitStatus{}
	if err := s.do(r.Context(), func() {
		for n := range s.desired {
			if strings.HasPrefix(n, prefix) && len(n) > len(prefix) {
				names[n] = true
			}
		}
		for n := range names {
			statuses[n] = s.status(n)
		}
	}); err != nil {
		unavailable(w, err)
		return
	}
	latest, err := s.latestChains()
	if err != nil {
		s.registryError(w, err)
		return
	}
	out := make([]Instance, 0, len(names))
	for _, n := range sortedNames(names) {
		out = append(out, instanceOf(n, statuses[n], latest[n]))
	}
	writeJSON(w, http.StatusOK, InstanceList{Template: tmpl, Instances: out})
}

func instanceOf(name string, us UnitStatus, c *InstanceChain) Instance {
	return Instance{ID: name[strings.IndexByte(name, '@')+1:], Unit: name, State: us.State.String(), PID: us.PID, Since: us.Since, Chain: c}
}

// persistedInstances lists the instances with values kept in the state
// directory.
func (s *Supervisor) persistedInstances(prefix string) []string {
	dir := s.instancesDir()
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := strings.TrimSuffix(e.Name(), ".d")
		if e.IsDir() && n != e.Name() && strings.HasPrefix(n, prefix) && len(n) > len(prefix) && unit.ValidName(n) == nil {
			out = append(out, n)
		}
	}
	return out
}

// latestChains returns the most recently started chain of each unit.
func (s *Supervisor) latestChains() (map[string]*InstanceChain, error) {
	out := map[string]*InstanceChain{}
	if s.opts.Registry == nil {
		return out, nil
	}
	started := map[string]time.Time{}
	err := s.opts.Registry.View(func(reg *registry.Registry) error {
		for _, c := range reg.Chains {
			if t, ok := started[c.Unit]; ok && c.StartedAt.Before(t) {
				continue
			}
			started[c.Unit] = c.StartedAt
			sum := reg.Summary(c)
			out[c.Unit] = &InstanceChain{ID: sum.ID, Status: string(sum.Status), Task: sum.Task, Sessions: sum.Sessions, TotalCostUSD: sum.TotalCostUSD}
		}
		return nil
	})
	return out, err
}

// InstanceValues is the optional body of POST /api/orchestrator/{id}/start.
type InstanceValues struct {
	Task         *string  `json:"task,omitempty"`
	Model        *string  `json:"model,omitempty"`
	MaxTurns     *int     `json:"max_turns,omitempty"`
	MaxBudgetUSD *float64 `json:"max_budget_usd,omitempty"`
	ProjectDir   *string  `json:"project_dir,omitempty"`
}

func (v InstanceValues) empty() bool {
	return v.Task == nil && v.Model == nil && v.MaxTurns == nil && v.MaxBudgetUSD == nil && v.ProjectDir == nil
}

// fieldError is a 400 that names the field at fault.
type fieldError struct {
	Field string `json:"field"`
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

func badField(w http.ResponseWriter, field, msg, hint string) {
	writeJSON(w, http.StatusBadRequest, fieldError{Field: field, Error: msg, Hint: hint})
}

// check validates the values against the daemon's settings; the unit
// file's own rules are checked when the drop-in is loaded.
func (v InstanceValues) check(w http.ResponseWriter, models []string) bool {
	str := func(field string, p *string, max int) bool {
		if p == nil {
			return true
		}
		switch {
		case !utf8.ValidString(*p) || strings.ContainsRune(*p, 0):
			badField(w, field, field+": not valid text", "send UTF-8 text without NUL bytes")
		case len(*p) > max:
			badField(w, field, fmt.Sprintf("%s: %d bytes, more than %d", field, len(*p), max), "shorten it")
		default:
			return true
		}
		return false
	}
	if !str("task", v.Task, maxTaskBytes) || !str("model", v.Model, 100) || !str("project_dir", v.ProjectDir, 4096) {
		return false
	}
	if v.Model != nil && !slices.Contains(models, *v.Model) {
		badField(w, "model", fmt.Sprintf("model: %q is not one of the valid models", *v.Model), "use one of: "+strings.Join(models, ", ")+" (valid_models in opsvc.toml)")
		return false
	}
	if v.ProjectDir != nil && !filepath.IsAbs(*v.ProjectDir) {
		badField(w, "project_dir", fmt.Sprintf("project_dir: %q is not an absolute path", *v.ProjectDir), "give the project's directory from /")
		return false
	}
	if v.MaxBudgetUSD != nil && (math.IsNaN(*v.MaxBudgetUSD) || math.IsInf(*v.MaxBudgetUSD, 0)) {
		badField(w, "max_budget_usd", "max_budget_usd: not a number", "give US dollars, e.g. 2.5")
		return false
	}
	return true
}

// toml renders the values as a drop-in, one key a line; lines maps the
// line of each key to its field.
func (v InstanceValues) toml() (string, map[int]string) {
	var b strings.Builder
	b.WriteString("# Values given when the instance was started over the API.\n[orchestrator]\n")
	lines := map[int]string{}
	line := 3
	put := func(key, val string) {
		fmt.Fprintf(&b, "%s = %s\n", key, val)
		lines[line] = key
		line++
	}
	spec := func(s string) string { return tomlString(strings.ReplaceAll(s, "%", "%%")) }
	if v.ProjectDir != nil {
		put("project_dir", spec(*v.ProjectDir))
	}
	if v.Task != nil {
		put("task", spec(*v.Task))
	}
	if v.Model != nil {
		put("model", spec(*v.Model))
	}
	if v.MaxTurns != nil {
		put("max_turns", strconv.Itoa(*v.MaxTurns))
	}
	if v.MaxBudgetUSD != nil {
		put("max_budget_usd", strconv.FormatFloat(*v.MaxBudgetUSD, 'f', -1, 64))
	}
	return b.String(), lines
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// instanceName is TEMPLATE@ID for the request's template and id, or false
// once it has answered 400.
func (s *Supervisor) instanceName(w http.ResponseWriter, r *http.Request) (string, bool) {
	tmpl, ok := s.template(w, r)
	if !ok {
		return "", false
	}
	name := tmpl + "@" + r.PathValue("id")
	if err := unit.ValidName(name); err != nil || strings.Count(name, "@") != 1 {
		badField(w, "id", fmt.Sprintf("bad instance id %q", r.PathValue("id")), "ids use A-Z a-z 0-9 : _ . - (no @)")
		return "", false
	}
	return name, true
}

func (s *Supervisor) handleInstanceStart(w http.ResponseWriter, r *http.Request) {
	name, ok := s.instanceName(w, r)
	if !ok {
		return
	}
	tmpl, _, _ := strings.Cut(name, "@")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInstanceBody+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "instance: "+err.Error(), "")
		return
	}
	if len(body) > maxInstanceBody {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("instance: body over %d bytes", maxInstanceBody), "send only task, model, max_turns, max_budget_usd and project_dir")
		return
	}
	var vals InstanceValues
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&vals); err != nil {
			field := ""
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				field = te.Field
			} else if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				field = strings.Trim(f, `"`)
			}
			badField(w, field, "instance: "+err.Error(), `send {"task","model","max_turns","max_budget_usd","project_dir"}, each optional`)
			return
		}
	}
	var models []string
	if err := s.do(r.Context(), func() { models = slices.Clone(s.opts.Settings.Orchestrator.ValidModels) }); err != nil {
		unavailable(w, err)
		return
	}
	if !vals.check(w, models) {
		return
	}
	if !vals.empty() {
		if !s.saveInstance(w, tmpl, name, vals, models) {
			return
		}
	}
	peer, _ := peerOf(r)
	var (
		us  UnitStatus
		msg string
	)
	loaded := s.loadUnits() // parsed here, off the loop
	if err := s.do(r.Context(), func() {
		s.instances[name] = true
		s.applyLoad(loaded, "instance "+name)
		if _, ok := s.desired[name]; !ok && s.set != nil {
			// A newer load was applied meanwhile; it holds the kept values too.
			if u, err := s.set.Instance(name); err == nil {
				var res ReloadResult
				s.setUnit(name, u, loaded.choices, &res)
			}
		}
		if d, ok := s.desired[name]; !ok || d.Unit == nil {
			delete(s.instances, name)
			msg = s.status(name).Error
			if _, err := s.set.Instance(name); err != nil {
				msg = err.Error()
			}
			return
		}
		if code, m := s.ask(name, "start", false, peer); code != http.StatusOK {
			msg = fmt.Sprintf("%s cannot start: %s", name, m)
			return
		}
		us = s.status(name)
	}); err != nil {
		unavailable(w, err)
		return
	}
	if msg != "" {
		writeErr(w, http.StatusNotFound, msg, "add the template "+tmpl+"@.toml to the units directory, or name another with ?template=")
		return
	}
	latest, err := s.latestChains()
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, instanceOf(name, us, latest[name]))
}

// saveInstance validates the values as a drop-in of the instance and keeps
// it in the state directory; it writes the error.
func (s *Supervisor) saveInstance(w http.ResponseWriter, tmpl, name string, vals InstanceValues, models []string) bool {
	dir := s.instancesDir()
	if dir == "" {
		writeErr(w, http.StatusInternalServerError, "instance: the daemon has no state directory", "start the daemon with --state")
		return false
	}
	text, lines := vals.toml()
	if entries, err := os.ReadDir(dir); err == nil && len(entries) >= maxKeptInstances {
		if _, err := os.Stat(filepath.Join(dir, name+".d")); err != nil {
			writeErr(w, http.StatusConflict, fmt.Sprintf("instance: %d instances already keep values", len(entries)),
				"remove the directories of old instances from "+dir+", or start one without values")
			return false
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		writeErr(w, http.StatusInternalServerError, "instance: "+err.Error(), "check that the daemon can write its state directory")
		return false
	}
	stage, err := os.MkdirTemp(dir, ".new-")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "instance: "+err.Error(), "check that the daemon can write its state directory")
		return false
	}
	defer os.RemoveAll(stage)
	staged := filepath.Join(stage, name+".d", instanceFile)
	if err = os.Mkdir(filepath.Dir(staged), 0o755); err == nil {
		err = os.WriteFile(staged, []byte(text), 0o644)
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "instance: "+err.Error(), "check that the daemon can write its state directory")
		return false
	}
	// Loaded as the daemon will load it; the new values replace the ones
	// given before.
	check := unit.NewCache()
	check.SetValidModels(models)
	set, err := unit.LoadCached(check, s.opts.Paths.Units, stage)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
		return false
	}
	u, err := set.Instance(name)
	if err != nil {
		if strings.Contains(err.Error(), "no template") {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no orchestrator template %s@", tmpl), "add "+tmpl+"@.toml to the units directory, or name another with ?template=")
			return false
		}
		var probs []unit.Problem
		if set.Problems[name] != nil {
			probs = set.Problems[name]
		} else {
			probs = instanceProblems(err)
		}
		for _, p := range probs {
			if filepath.Base(p.File) == instanceFile {
				if f := lines[p.Line]; f != "" {
					msg := strings.TrimPrefix(p.Msg, "orchestrator.")
					if !strings.HasPrefix(msg, f) {
						msg = f + ": " + msg
					}
					badField(w, f, msg, p.Hint)
					return false
				}
			}
		}
		writeErr(w, http.StatusBadRequest, err.Error(), "fix the template (opsvc validate), or give other values")
		return false
	}
	if u.Orchestrator == nil {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("%s@ is not an orchestrator template", tmpl), "name a template with an [orchestrator] table with ?template=")
		return false
	}
	final := filepath.Join(dir, name+".d", instanceFile)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		writeErr(w, http.StatusInternalServerError, "instance: "+err.Error(), "check that the daemon can write its state directory")
		return false
	}
	if err := atomicfile.Write(final, []byte(text), 0o644); err != nil {
		writeErr(w, http.StatusInternalServerError, "instance: "+err.Error(), "check that the daemon can write its state directory")
		return false
	}
	return true
}

// instanceProblems unwraps the problems joined into an Instance error.
func instanceProblems(err error) []unit.Problem {
	var out []unit.Problem
	var walk func(error)
	walk = func(e error) {
		if p, ok := e.(unit.Problem); ok {
			out = append(out, p)
			return
		}
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

func (s *Supervisor) handleInstanceStop(w http.ResponseWriter, r *http.Request) {
	name, ok := s.instanceName(w, r)
	if !ok {
		return
	}
	drain := r.URL.Query().Get("drain") == "1"
	peer, _ := peerOf(r)
	var (
		us    UnitStatus
		found bool
	)
	if err := s.do(r.Context(), func() {
		if _, ok := s.desired[name]; !ok {
			return
		}
		found = true
		s.ask(name, "stop", drain, peer)
		us = s.status(name)
	}); err != nil {
		unavailable(w, err)
		return
	}
	if !found {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no instance %q", name), "see: GET /api/orchestrator/instances")
		return
	}
	latest, err := s.latestChains()
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, instanceOf(name, us, latest[name]))
}

// handleArchived answers GET /v1/chains?archived=1: the chains moved out of
// the registry, newest first.
func (s *Supervisor) handleArchived(w http.ResponseWriter, r *http.Request) {
	out := []registry.ChainSummary{}
	if s.opts.Registry != nil {
		chains, err := s.opts.Registry.ReadArchive()
		if err != nil && !errors.Is(err, registry.ErrCorrupt) {
			s.registryError(w, err)
			return
		}
		var reg registry.Registry
		for i := range chains {
			out = append(out, reg.Summary(&chains[i]))
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	}
	writeJSON(w, http.StatusOK, registry.ChainList{Archived: true, Chains: out})
}

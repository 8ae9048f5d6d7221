package unit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opsvc/opsvc/unit/suggest"
	"github.com/opsvc/opsvc/worker/chain"
)

// build makes the effective unit name from its files, in the order applied,
// and checks everything that needs the whole definition. noTemplate marks an
// instance file whose template is missing.
func (s *Set) build(name string, layers []*layer, noTemplate bool) (*Unit, *effective, []Problem) {
	e := merge(layers)
	probs := append([]Problem(nil), e.problems...)
	add := func(o origin, msg, hint string) { probs = append(probs, problemAt(o, msg, hint)) }
	main := origin{layers[0].src, pos{Line: 1, Col: 1}}
	table := func(t string) origin {
		if o, ok := e.tables[t]; ok {
			return o
		}
		return main
	}

	e.expand(name)
	s.resolvePaths(e, add)

	u := &Unit{Name: name, Enabled: true, Placement: PlacementLocal, Service: DefaultService(), Dir: layers[0].src.dir}
	for _, src := range e.srcs {
		u.Sources = append(u.Sources, src.path)
	}
	u.Description, _ = e.str("unit.description")
	u.After = e.strs("unit.after")
	u.Requires = e.strs("unit.requires")
	if v, ok := e.one["unit.enabled"]; ok {
		u.Enabled = v.v.(bool)
	}
	if p, ok := e.str("unit.placement"); ok {
		u.Placement = Placement(p)
	}
	for _, id := range []string{"unit.after", "unit.requires"} {
		for _, v := range e.list[id] {
			if err := ValidName(v.v.(string)); err != nil {
				add(v.origin, fmt.Sprintf("%s: %s", strings.TrimPrefix(id, "unit."), strings.TrimPrefix(err.Error(), "unit: ")), "")
			}
		}
	}

	svc := &u.Service
	_, isOrch := e.tables[tOrchestrator]
	if v, ok := e.one["service.type"]; ok {
		t := Type(v.v.(string))
		switch {
		case isOrch && t != TypeOrchestrator:
			add(v.origin, fmt.Sprintf("type = %q, but the unit has an [orchestrator] table", t), `an orchestrator unit runs the built-in worker: remove type`)
		case !isOrch && t == TypeOrchestrator:
			add(v.origin, `type = "orchestrator" needs an [orchestrator] table`, "add [orchestrator] with task and agent, or use another type")
		}
		svc.Type = t
	}
	if isOrch {
		svc.Type = TypeOrchestrator
	}
	svc.Exec = e.strs("service.exec")
	switch {
	case isOrch && len(svc.Exec) > 0:
		add(e.list["service.exec"][0].origin, "an orchestrator unit takes no exec", "remove exec: the built-in worker runs the [orchestrator] agent")
	case !isOrch && len(svc.Exec) == 0 && !e.failed["service.exec"] && !e.failed[""]:
		o, hint := table(tService), `add exec = ["/path/to/program", "arg"] to [service]`
		if r, ok := e.reset["service.exec"]; ok {
			o = r
		}
		if noTemplate {
			prefix, _, _ := splitName(name)
			hint += fmt.Sprintf(", or add the template %s@.toml", prefix)
		}
		add(o, "missing exec: the unit runs nothing", hint)
	}
	svc.WorkingDirectory, _ = e.str("service.working_directory")
	if len(e.env) > 0 {
		svc.Environment = make(map[string]string, len(e.env))
		for k, v := range e.env {
			svc.Environment[k] = v.v.(string)
		}
	}
	svc.EnvironmentFiles = e.strs("service.environment_files")
	svc.User, _ = e.str("service.user")
	svc.Group, _ = e.str("service.group")
	for _, what := range []string{"user", "group"} {
		if v, ok := e.one["service."+what]; ok {
			if _, _, err := ParseID(v.v.(string)); err != nil {
				add(v.origin, fmt.Sprintf("%s = %q is not a valid %s id", what, v.v, what),
					fmt.Sprintf("a numeric %s id is from 0 to %d; or give a %s name", what, MaxID, what))
			}
		}
	}
	if r, ok := e.str("service.restart"); ok {
		svc.Restart = RestartPolicy(r)
	}
	dur := func(id string, dst *time.Duration) {
		if v, ok := e.one[id]; ok {
			*dst = v.v.(time.Duration)
		}
	}
	dur("service.restart_delay", &svc.RestartDelay)
	dur("service.restart_delay_max", &svc.RestartDelayMax)
	dur("service.start_limit_interval", &svc.StartLimitInterval)
	dur("service.start_timeout", &svc.StartTimeout)
	dur("service.stop_timeout", &svc.StopTimeout)
	dur("service.watchdog", &svc.Watchdog)
	if v, ok := e.one["service.start_limit_burst"]; ok {
		svc.StartLimitBurst = int(v.v.(int64))
	}
	if sig, ok := e.str("service.stop_signal"); ok {
		svc.StopSignal = sig
	}
	if na, ok := e.str("service.notify_access"); ok {
		svc.NotifyAccess = na
	}
	if se, ok := e.str("service.stderr"); ok {
		svc.StderrToStdout = se == "stdout"
	}
	for _, v := range e.list["service.success_exit_status"] { // 0 always counts; the list adds to it
		if n := int(v.v.(int64)); !slices.Contains(svc.SuccessExitStatus, n) {
			svc.SuccessExitStatus = append(svc.SuccessExitStatus, n)
		}
	}
	platformChecks(e, svc, add)
	if svc.Type == TypeOneshot && svc.Restart == RestartAlways {
		add(e.one["service.restart"].origin, `restart = "always" is not allowed for a oneshot unit`, `use "on-failure" or "no"`)
	}
	if svc.RestartDelayMax < svc.RestartDelay {
		o, ok := e.one["service.restart_delay_max"]
		if !ok {
			o = e.one["service.restart_delay"]
		}
		add(o.origin, fmt.Sprintf("restart_delay_max (%v) is less than restart_delay (%v)", svc.RestartDelayMax, svc.RestartDelay), "the delay doubles from restart_delay up to restart_delay_max")
	}

	if isOrch {
		o := &Orchestrator{}
		o.ProjectDir, _ = e.str("orchestrator.project_dir")
		o.Task, _ = e.str("orchestrator.task")
		o.Agent = e.strs("orchestrator.agent")
		o.ExtraArgs = e.strs("orchestrator.extra_args")
		o.Model, _ = e.str("orchestrator.model")
		if models := s.validModels(); o.Model != "" && !knownModel(models, o.Model) {
			// The valid models are known; another agent's are its own, but a near miss of a
			// known name is a typo all the same.
			guess, near := suggest.Closest(o.Model, models)
			preset := len(o.Agent) == 0 || (len(o.Agent) == 1 && o.Agent[0] == AgentPreset)
			if preset || near {
				hint := "use one of " + strings.Join(models, ", ") + " (valid_models in opsvc.toml), or a full model name claude-…"
				if near {
					hint = fmt.Sprintf("did you mean %q? Or %s", guess, hint)
				}
				add(e.one["orchestrator.model"].origin, fmt.Sprintf("model %q is not a known model", o.Model), hint)
			}
		}
		num := func(id string) int {
			if v, ok := e.one[id]; ok {
				return int(v.v.(int64))
			}
			return 0
		}
		o.MaxTurns = num("orchestrator.max_turns")
		o.MaxContinuations = num("orchestrator.max_continuations")
		o.MaxConsecutiveErrors = num("orchestrator.max_consecutive_errors")
		if v, ok := e.one["orchestrator.max_budget_usd"]; ok {
			b := v.v.(float64)
			if b < 0 && b != chain.UnlimitedBudget {
				add(v.origin, fmt.Sprintf("max_budget_usd = %v is out of range", b), fmt.Sprintf("use 0 (no spending) to %v, or -1 for no limit", chain.MaxMaxBudgetUSD))
			}
			o.MaxBudgetUSD = &b
		}
		o.Git, _ = e.str("orchestrator.git")
		if o.Git == "off" {
			o.Git = ""
		}
		o.Branch, _ = e.str("orchestrator.branch")
		if o.Branch != "" && !strings.Contains(o.Branch, "{chain_id}") {
			add(e.one["orchestrator.branch"].origin, fmt.Sprintf("branch %q has no {chain_id}", o.Branch), `concurrent chains need a branch each: write e.g. branch = "opsvc/{chain_id}"`)
		}
		if _, ok := e.one["service.watchdog"]; !ok {
			svc.Watchdog = DefaultOrchestratorWatchdog
		}
		if v, ok := e.one["orchestrator.resume"]; ok {
			o.Resume = v.v.(bool)
		}
		if strings.TrimSpace(o.Task) == "" && !e.failed["orchestrator.task"] && !e.failed[""] {
			add(table(tOrchestrator), "an [orchestrator] table needs a task", `add task = "what the agent should work on"`)
		}
		u.Orchestrator = o
	}
	u.Hash = hashUnit(u)
	return u, e, probs
}

// expand replaces specifiers in every free-form string value.
func (e *effective) expand(name string) {
	for id, v := range e.one {
		if fieldByID(id).spec {
			v.v = expandSpecifiers(v.v.(string), name)
			e.one[id] = v
		}
	}
	for id, vs := range e.list {
		if f := fieldByID(id); f.spec && f.kind == kStrings {
			for i := range vs {
				vs[i].v = expandSpecifiers(vs[i].v.(string), name)
			}
		}
	}
	for k, v := range e.env {
		v.v = expandSpecifiers(v.v.(string), name)
		e.env[k] = v
	}
}

// resolvePaths makes relative paths absolute against the directory of the
// file that wrote them, and checks exec[0] and agent[0].
func (s *Set) resolvePaths(e *effective, add func(origin, string, string)) {
	resolve := func(dir, p string) string {
		if p == "" || filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(dir, p)
	}
	for i := range fields {
		f := &fields[i]
		switch f.path {
		case pathResolve:
			if v, ok := e.one[f.id()]; ok && v.v.(string) != "" {
				v.v = resolve(v.src.dir, v.v.(string))
				e.one[f.id()] = v
			}
		case pathOptional:
			for j, v := range e.list[f.id()] {
				p := v.v.(string)
				opt := strings.HasPrefix(p, "-")
				p = resolve(v.src.dir, strings.TrimPrefix(p, "-"))
				if opt {
					p = "-" + p
				}
				e.list[f.id()][j].v = p
			}
		case pathFirst:
			vs := e.list[f.id()]
			if len(vs) == 0 {
				continue
			}
			raw := vs[0].v.(string)
			label := f.key + "[0]"
			if raw == "" {
				add(vs[0].origin, label+" is empty", "give the program to run: an absolute path, ./relative to the unit file, or a command name in PATH")
				continue
			}
			if !isPath(raw) {
				if f.key == "exec" {
					s.ld.checkInPath(vs[0].origin, label, raw, e, add)
				}
				continue
			}
			abs := resolve(vs[0].src.dir, raw)
			vs[0].v = abs
			shown := abs
			if !filepath.IsAbs(raw) {
				shown = filepath.Join(filepath.Dir(vs[0].src.path), raw)
			}
			s.ld.checkExecutable(vs[0].origin, label, raw, abs, shown, add)
		}
	}
}

// hashed is what Unit.Hash covers: the definition, not where it came from.
type hashed struct {
	Name         string
	Description  string
	After        []string
	Requires     []string
	Enabled      bool
	Placement    Placement `json:",omitempty"`
	Service      Service
	Orchestrator *Orchestrator
}

// placementHashed leaves the default out of the hash, so a local unit's hash
// is what it was before placement existed.
func placementHashed(p Placement) Placement {
	if p == PlacementLocal {
		return ""
	}
	return p
}

func hashUnit(u *Unit) string {
	// Marshal cannot fail: the schema refuses NaN and infinite numbers.
	b, _ := json.Marshal(hashed{u.Name, u.Description, u.After, u.Requires, u.Enabled, placementHashed(u.Placement), u.Service, u.Orchestrator})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// validModels is the list a unit's model is checked against: opsvc.toml's valid_models when the
// load was given it, else the default list.
func (s *Set) validModels() []string {
	if s.ld != nil && len(s.ld.models) > 0 {
		return s.ld.models
	}
	return chain.DefaultValidModels()
}

// knownModel reports whether a unit's model names a model a chain may use: one of the valid
// models, or a full Claude model name.
func knownModel(models []string, m string) bool {
	return slices.Contains(models, m) || strings.HasPrefix(m, "claude-")
}

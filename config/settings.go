package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/opsvc/opsvc/worker/chain"
)

// Settings are the daemon's settings: the file opsvc.toml, also
// read and replaced as JSON through GET and PUT /v1/settings.
type Settings struct {
	Orchestrator OrchestratorSettings `json:"orchestrator" toml:"orchestrator"`
	Control      ControlSettings      `json:"control" toml:"control"`
	Cluster      ClusterSettings      `json:"cluster" toml:"cluster"`
}

// OrchestratorSettings is the [orchestrator] table: the defaults of every
// orchestrator unit, and the limits that hold across all of them.
type OrchestratorSettings struct {
	Model                 string   `json:"model" toml:"model"`                                     // one of ValidModels
	ValidModels           []string `json:"valid_models" toml:"valid_models"`                       // at least one
	MaxTurns              int      `json:"max_turns" toml:"max_turns"`                             // 1–200, per session
	MaxContinuations      int      `json:"max_continuations" toml:"max_continuations"`             // 1–20, sessions after the first
	MaxBudgetUSD          float64  `json:"max_budget_usd" toml:"max_budget_usd"`                   // 0–100, per chain
	MaxConcurrentSessions int      `json:"max_concurrent_sessions" toml:"max_concurrent_sessions"` // across all orchestrators; 0 = unlimited
	MaxSessionsPerMinute  int      `json:"max_sessions_per_minute" toml:"max_sessions_per_minute"` // 0 = unlimited
	GlobalBudgetUSD       float64  `json:"global_budget_usd" toml:"global_budget_usd"`             // all chains together, per day
	PerWorkerBudgetUSD    float64  `json:"per_worker_budget_usd" toml:"per_worker_budget_usd"`     // one unit, per day
}

// ControlSettings is the [control] table: who may use the control API.
type ControlSettings struct {
	// Group may connect to the control socket (its group owner); "" keeps
	// the daemon's own group.
	Group string `json:"group" toml:"group"`
	// AllowUIDs are further users allowed on the socket.
	AllowUIDs []int `json:"allow_uids" toml:"allow_uids"`
	// Listen is an optional TCP address ("127.0.0.1:7780") for the control
	// API besides the socket; "" means none.
	Listen string `json:"listen" toml:"listen"`
	// TLSCert and TLSKey are PEM files (relative to the directory of
	// opsvc.toml) that make Listen serve HTTPS; both or neither.
	TLSCert string `json:"tls_cert" toml:"tls_cert"`
	TLSKey  string `json:"tls_key" toml:"tls_key"`
	// AllowPlaintext lets Listen serve plain HTTP on an address that is not
	// loopback.
	AllowPlaintext bool `json:"allow_plaintext" toml:"allow_plaintext"`
}

// Bounds of the [orchestrator] values: a chain's limits, defined by package chain for the
// settings, the unit files and the orchestrator worker alike.
const (
	MinMaxTurns         = chain.MinMaxTurns
	MaxMaxTurns         = chain.MaxMaxTurns
	MinMaxContinuations = chain.MinMaxContinuations
	MaxMaxContinuations = chain.MaxMaxContinuations
	MaxMaxBudgetUSD     = chain.MaxMaxBudgetUSD
)

// DefaultSettings returns the settings used for every key opsvc.toml does not
// set (all of them when there is no file).
func DefaultSettings() Settings {
	return Settings{
		Orchestrator: OrchestratorSettings{
			Model:                 chain.DefaultModel,
			ValidModels:           chain.DefaultValidModels(),
			MaxTurns:              chain.DefaultMaxTurns,
			MaxContinuations:      chain.DefaultMaxContinuations,
			MaxBudgetUSD:          chain.DefaultMaxBudgetUSD,
			MaxConcurrentSessions: 0,
			MaxSessionsPerMinute:  60,
			GlobalBudgetUSD:       50.0,
			PerWorkerBudgetUSD:    10.0,
		},
		Control: ControlSettings{AllowUIDs: []int{}},
		Cluster: defaultCluster(),
	}
}

// Problem is one thing wrong with the settings. From a file it carries the
// position and prints as FILE:LINE:COL: message (hint); from Validate only
// the field, and prints as config: message (hint).
type Problem struct {
	File  string `json:"file,omitempty"`
	Line  int    `json:"line,omitempty"`
	Col   int    `json:"col,omitempty"`
	Field string `json:"field,omitempty"` // "orchestrator.max_turns"; "" for a syntax error
	Msg   string `json:"message"`
	Hint  string `json:"hint,omitempty"`
}

func (p *Problem) Error() string {
	var s string
	if p.File != "" {
		s = fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
	} else {
		s = "config: " + p.Msg
	}
	if p.Hint != "" {
		s += " (" + p.Hint + ")"
	}
	return s
}

// Validate checks every value against its bounds, for settings that arrive
// as JSON (PUT /v1/settings). It returns all problems at once, joined; each
// is a *Problem naming the field and what is allowed.
func (s Settings) Validate() error {
	var errs []error
	for _, p := range s.check() {
		errs = append(errs, &Problem{Field: p.keys[0], Msg: p.msg, Hint: p.hint})
	}
	return errors.Join(errs...)
}

// valueProblem is a value out of bounds; keys are the fields involved, the
// one to point at first.
type valueProblem struct {
	keys      []string
	msg, hint string
}

// check returns every value out of its bounds, in the order of the file.
func (s Settings) check() []valueProblem {
	var ps []valueProblem
	add := func(key, msg, hint string, more ...string) {
		ps = append(ps, valueProblem{keys: append([]string{key}, more...), msg: msg, hint: hint})
	}
	intIn := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			add(key, fmt.Sprintf("%s = %d is out of range", key, v), fmt.Sprintf("allowed: %d to %d", lo, hi))
		}
	}
	intMin0 := func(key string, v int, zero string) {
		if v < 0 {
			add(key, fmt.Sprintf("%s = %d is out of range", key, v), "allowed: 0 or more; 0 means "+zero)
		}
	}
	money := func(key string, v, hi float64) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			add(key, fmt.Sprintf("%s = %v is not a finite number", key, v), allowedUSD(hi))
		case v < 0 || (hi > 0 && v > hi):
			add(key, fmt.Sprintf("%s = %s is out of range", key, strconv.FormatFloat(v, 'f', -1, 64)), allowedUSD(hi))
		}
	}

	o := s.Orchestrator
	validModels := true
	switch {
	case len(o.ValidModels) == 0:
		validModels = false
		add("orchestrator.valid_models", "orchestrator.valid_models is empty", `list at least one model, e.g. ["haiku", "sonnet", "opus"]`)
	case slices.Contains(o.ValidModels, ""):
		validModels = false
		add("orchestrator.valid_models", "orchestrator.valid_models has an empty name", "remove the empty string")
	}
	switch {
	case o.Model == "":
		add("orchestrator.model", "orchestrator.model is empty", "name one of valid_models")
	case validModels && !slices.Contains(o.ValidModels, o.Model):
		add("orchestrator.model", fmt.Sprintf("orchestrator.model %q is not one of valid_models", o.Model),
			"use one of "+quoteList(o.ValidModels)+", or add it to valid_models", "orchestrator.valid_models")
	}
	intIn("orchestrator.max_turns", o.MaxTurns, MinMaxTurns, MaxMaxTurns)
	intIn("orchestrator.max_continuations", o.MaxContinuations, MinMaxContinuations, MaxMaxContinuations)
	money("orchestrator.max_budget_usd", o.MaxBudgetUSD, MaxMaxBudgetUSD)
	intMin0("orchestrator.max_concurrent_sessions", o.MaxConcurrentSessions, "unlimited")
	intMin0("orchestrator.max_sessions_per_minute", o.MaxSessionsPerMinute, "unlimited")
	money("orchestrator.global_budget_usd", o.GlobalBudgetUSD, 0)
	money("orchestrator.per_worker_budget_usd", o.PerWorkerBudgetUSD, 0)

	c := s.Control
	if strings.ContainsAny(c.Group, " \t\n:/") {
		add("control.group", fmt.Sprintf("control.group %q is not a group name", c.Group), `name a group such as "opsvc", or "" for none`)
	}
	for _, uid := range c.AllowUIDs {
		if uid < 0 || uid > math.MaxUint32-1 {
			add("control.allow_uids", fmt.Sprintf("control.allow_uids has %d, which is not a user id", uid), "allowed: 0 to 4294967294")
			break
		}
	}
	if c.Listen != "" {
		if err := checkListen(c.Listen); err != nil {
			add("control.listen", fmt.Sprintf("control.listen %q: %v", c.Listen, err), `write HOST:PORT such as "127.0.0.1:7780", or "" for none`)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		add("control.tls_cert", "control.tls_cert is set without control.tls_key", "set both to PEM files, or neither")
	case c.TLSCert == "" && c.TLSKey != "":
		add("control.tls_key", "control.tls_key is set without control.tls_cert", "set both to PEM files, or neither")
	}
	s.Cluster.check(add)
	return ps
}

func allowedUSD(hi float64) string {
	if hi > 0 {
		return fmt.Sprintf("allowed: 0 to %g", hi)
	}
	return "allowed: 0 or more"
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not a HOST:PORT address")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

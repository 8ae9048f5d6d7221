package config

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/opsvc/opsvc/unit/regfile"
	"github.com/opsvc/opsvc/unit/suggest"
	"github.com/opsvc/opsvc/unit/tomldoc"
)

// MaxSettingsSize bounds opsvc.toml.
const MaxSettingsSize = tomldoc.MaxFileSize

// kind is the TOML type a settings key takes.
type kind int

const (
	kindString kind = iota
	kindStrings
	kindInt
	kindInts
	kindFloat
	kindBool
	kindDuration
)

func (k kind) String() string {
	return [...]string{"a string", "an array of strings", "an integer", "an array of integers", "a number", "a boolean", "a duration"}[k]
}

// field is one key of opsvc.toml. The table below is immutable.
type field struct {
	table, key string
	kind       kind
	example    string // a valid line, for hints
	set        func(s *Settings, v any)
}

var tables = []string{"orchestrator", "control", "cluster"}

var fields = []field{
	{"orchestrator", "model", kindString, `model = "sonnet"`, func(s *Settings, v any) { s.Orchestrator.Model = v.(string) }},
	{"orchestrator", "valid_models", kindStrings, `valid_models = ["haiku", "sonnet", "opus"]`, func(s *Settings, v any) { s.Orchestrator.ValidModels = v.([]string) }},
	{"orchestrator", "max_turns", kindInt, `max_turns = 30`, func(s *Settings, v any) { s.Orchestrator.MaxTurns = v.(int) }},
	{"orchestrator", "max_continuations", kindInt, `max_continuations = 5`, func(s *Settings, v any) { s.Orchestrator.MaxContinuations = v.(int) }},
	{"orchestrator", "max_budget_usd", kindFloat, `max_budget_usd = 5.0`, func(s *Settings, v any) { s.Orchestrator.MaxBudgetUSD = v.(float64) }},
	{"orchestrator", "max_concurrent_sessions", kindInt, `max_concurrent_sessions = 0`, func(s *Settings, v any) { s.Orchestrator.MaxConcurrentSessions = v.(int) }},
	{"orchestrator", "max_sessions_per_minute", kindInt, `max_sessions_per_minute = 60`, func(s *Settings, v any) { s.Orchestrator.MaxSessionsPerMinute = v.(int) }},
	{"orchestrator", "global_budget_usd", kindFloat, `global_budget_usd = 50.0`, func(s *Settings, v any) { s.Orchestrator.GlobalBudgetUSD = v.(float64) }},
	{"orchestrator", "per_worker_budget_usd", kindFloat, `per_worker_budget_usd = 10.0`, func(s *Settings, v any) { s.Orchestrator.PerWorkerBudgetUSD = v.(float64) }},
	{"control", "group", kindString, `group = "opsvc"`, func(s *Settings, v any) { s.Control.Group = v.(string) }},
	{"control", "allow_uids", kindInts, `allow_uids = [1000]`, func(s *Settings, v any) { s.Control.AllowUIDs = v.([]int) }},
	{"control", "listen", kindString, `listen = "127.0.0.1:7780"`, func(s *Settings, v any) { s.Control.Listen = v.(string) }},
	{"control", "tls_cert", kindString, `tls_cert = "cert.pem"`, func(s *Settings, v any) { s.Control.TLSCert = v.(string) }},
	{"control", "tls_key", kindString, `tls_key = "key.pem"`, func(s *Settings, v any) { s.Control.TLSKey = v.(string) }},
	{"control", "allow_plaintext", kindBool, `allow_plaintext = true`, func(s *Settings, v any) { s.Control.AllowPlaintext = v.(bool) }},
	{"cluster", "etcd", kindStrings, `etcd = ["http://127.0.0.1:2379"]`, func(s *Settings, v any) { s.Cluster.Etcd = v.([]string) }},
	{"cluster", "prefix", kindString, `prefix = "/opsvc"`, func(s *Settings, v any) { s.Cluster.Prefix = v.(string) }},
	{"cluster", "node", kindString, `node = "%H"`, func(s *Settings, v any) { s.Cluster.Node = v.(string) }},
	{"cluster", "tls_ca", kindString, `tls_ca = "etcd-ca.pem"`, func(s *Settings, v any) { s.Cluster.TLSCA = v.(string) }},
	{"cluster", "tls_cert", kindString, `tls_cert = "etcd-client.pem"`, func(s *Settings, v any) { s.Cluster.TLSCert = v.(string) }},
	{"cluster", "tls_key", kindString, `tls_key = "etcd-client-key.pem"`, func(s *Settings, v any) { s.Cluster.TLSKey = v.(string) }},
	{"cluster", "username", kindString, `username = "opsvc"`, func(s *Settings, v any) { s.Cluster.Username = v.(string) }},
	{"cluster", "password_file", kindString, `password_file = "etcd-password"`, func(s *Settings, v any) { s.Cluster.PasswordFile = v.(string) }},
	{"cluster", "lease_ttl", kindDuration, `lease_ttl = "10s"`, func(s *Settings, v any) { s.Cluster.LeaseTTL = Duration(v.(time.Duration)) }},
	{"cluster", "dial_timeout", kindDuration, `dial_timeout = "5s"`, func(s *Settings, v any) { s.Cluster.DialTimeout = Duration(v.(time.Duration)) }},
}

func lookupField(table, key string) (field, bool) {
	for _, f := range fields {
		if f.table == table && f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// LoadSettings reads opsvc.toml at path. A missing file means the defaults.
// Problems are reported all at once (errors.Join of *Problem, each
// FILE:LINE:COL: message (hint)): syntax, unknown keys with a did-you-mean,
// wrong types, and values out of bounds (never clamped). A path that is not
// a regular file is refused without waiting on it, and so is a file over
// MaxSettingsSize bytes.
func LoadSettings(path string) (Settings, error) {
	data, err := regfile.ReadFile(path, MaxSettingsSize)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultSettings(), nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return Settings{}, fmt.Errorf("config: read settings %s: %w (point --config or OPSVC_CONFIG at a short TOML file)", path, err)
	}
	return ParseSettings(path, data)
}

// ParseSettings parses the content of an opsvc.toml; name is the file name
// used in errors. Keys it does not set keep their defaults. On error the
// Settings are zero. A document past the bounds on keys, tables, nesting
// and key length is not decoded, and a decode that takes too long is given
// up.
func ParseSettings(name string, data []byte) (Settings, error) {
	text := string(data)
	doc, err := tomldoc.Decode(text, tomldoc.FileLimits(), tomldoc.DecodeTimeout)
	if err != nil {
		return Settings{}, decodeError(name, text, err)
	}
	raw, md := doc.Data, doc.Meta
	idx := tomldoc.NewIndex(text)
	var errs []error
	problem := func(key toml.Key, atValue bool, msg, hint string) {
		at := find(idx, key, atValue)
		errs = append(errs, &Problem{File: name, Line: at.Line, Col: at.Col, Field: strings.Join(key, "."), Msg: msg, Hint: hint})
	}

	s := DefaultSettings()
	seen := make(map[string]bool)
	for _, k := range md.Keys() {
		// Deeper keys belong to a top-level or second-level key, which is
		// checked once, at its first appearance.
		// (A dotted key creates its tables without listing them.)
		table := k[0]
		if top := k[:1]; !seen[top.String()] {
			seen[top.String()] = true
			if !slices.Contains(tables, table) {
				problem(top, false, fmt.Sprintf("unknown key %q", table), hintTopLevel(table))
			} else if _, ok := raw[table].(map[string]any); !ok {
				problem(top, true, fmt.Sprintf("%s must be a table, not %s", table, tomldoc.TypeName(raw[table])), "write ["+table+"] on a line of its own, then its keys")
			}
		}
		tv, isTable := raw[table].(map[string]any)
		if !slices.Contains(tables, table) || !isTable || len(k) == 1 {
			continue
		}
		k = k[:2]
		if seen[k.String()] {
			continue
		}
		seen[k.String()] = true
		f, ok := lookupField(table, k[1])
		if !ok {
			problem(k, false, fmt.Sprintf("unknown key %q in [%s]", k[1], table), hintInTable(table, k[1]))
			continue
		}
		v, what := convert(tv[k[1]], f.kind)
		if what != "" {
			problem(k, true, fmt.Sprintf("%s.%s must be %s, not %s", table, f.key, f.kind, what), "e.g. "+f.example)
			continue
		}
		f.set(&s, v)
	}
	for _, p := range s.check() {
		key := toml.Key(strings.Split(p.keys[0], "."))
		for _, k := range p.keys {
			// Point at the first key involved that the file sets.
			if kk := toml.Key(strings.Split(k, ".")); md.IsDefined(kk...) {
				key = kk
				break
			}
		}
		problem(key, true, p.msg, p.hint)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			pa, pb := a.(*Problem), b.(*Problem)
			if pa.Line != pb.Line {
				return pa.Line - pb.Line
			}
			return pa.Col - pb.Col
		})
		return Settings{}, errors.Join(errs...)
	}
	return s, nil
}

// decodeError turns why text could not be decoded into problems.
func decodeError(name, text string, err error) error {
	var errs []error
	for _, e := range tomldoc.Explain(text, err) {
		p := &Problem{File: name, Line: e.Pos.Line, Col: e.Pos.Col, Msg: e.Msg}
		if e.What != tomldoc.Syntax {
			p.Hint = "opsvc.toml has the tables [orchestrator] and [control], with a dozen short keys"
		}
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// find returns where key is set (its value if atValue), else where its
// nearest parent's value is (an inline table), else the start of the file.
func find(idx *tomldoc.Index, key []string, atValue bool) tomldoc.Pos {
	at := idx.Key(key...)
	if atValue {
		at = idx.Value(key...)
	}
	for n := len(key) - 1; n > 0 && !at.Valid(); n-- {
		at = idx.Value(key[:n]...)
	}
	if !at.Valid() {
		return tomldoc.Pos{Line: 1, Col: 1}
	}
	return at
}

// convert returns v as the Go value of kind k, or describes what v is
// instead.
func convert(v any, k kind) (any, string) {
	switch k {
	case kindString:
		if s, ok := v.(string); ok {
			return s, ""
		}
	case kindInt:
		if n, ok := v.(int64); ok {
			return int(n), ""
		}
	case kindBool:
		if b, ok := v.(bool); ok {
			return b, ""
		}
	case kindDuration:
		if s, ok := v.(string); ok {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Sprintf("the string %q", s)
			}
			return d, ""
		}
	case kindFloat:
		switch n := v.(type) {
		case float64:
			return n, ""
		case int64:
			return float64(n), ""
		}
	case kindStrings, kindInts:
		list, ok := v.([]any)
		if !ok {
			break
		}
		strs, ints := make([]string, 0, len(list)), make([]int, 0, len(list))
		for i, e := range list {
			s, isStr := e.(string)
			n, isInt := e.(int64)
			if (k == kindStrings && !isStr) || (k == kindInts && !isInt) {
				return nil, fmt.Sprintf("an array whose element %d is %s", i+1, tomldoc.TypeName(e))
			}
			strs, ints = append(strs, s), append(ints, int(n))
		}
		if k == kindStrings {
			return strs, ""
		}
		return ints, ""
	}
	return nil, tomldoc.TypeName(v)
}

// hintInTable suggests the key meant by an unknown key in a table.
func hintInTable(table, key string) string {
	var names []string
	for _, f := range fields {
		if f.table == table {
			names = append(names, f.key)
		}
	}
	if m, ok := suggest.Closest(key, names); ok {
		return fmt.Sprintf("did you mean %q?", m)
	}
	for _, f := range fields {
		if f.table != table && suggest.Same(f.key, key) {
			return fmt.Sprintf("%s belongs in [%s]", f.key, f.table)
		}
	}
	return "known keys: " + strings.Join(names, ", ")
}

// hintTopLevel suggests the table meant by an unknown top-level key.
func hintTopLevel(key string) string {
	if m, ok := suggest.Closest(key, tables); ok {
		return fmt.Sprintf("did you mean [%s]?", m)
	}
	var leaves []string
	for _, f := range fields {
		leaves = append(leaves, f.key)
	}
	if m, ok := suggest.Closest(key, leaves); ok {
		for _, f := range fields {
			switch {
			case f.key == m && suggest.Same(m, key):
				return fmt.Sprintf("%s belongs in [%s]", m, f.table)
			case f.key == m:
				return fmt.Sprintf("did you mean %s in [%s]?", m, f.table)
			}
		}
	}
	return "opsvc.toml has the tables [orchestrator], [control] and [cluster]"
}

package unit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Annotation is one effective key of a unit, for `opsvc cat`: its table
// ("unit", "service", "service.environment", "orchestrator"), key, value as
// TOML, and the file it came from ("(default)" for a default; the files,
// comma-separated, for an array that drop-ins appended to).
type Annotation struct {
	Table  string `json:"table"`
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// DefaultSource is the Source of an Annotation for a value nobody wrote.
const DefaultSource = "(default)"

// Annotate returns every effective key of unit name (or of an instance its
// template can make) with its value and source, in schema order. A unit with
// problems is an error that lists them.
func (s *Set) Annotate(name string) ([]Annotation, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if probs, ok := s.Problems[name]; ok {
		return nil, problemsError(name, probs)
	}
	if e, ok := s.effs[name]; ok {
		return annotate(s.Units[name], e), nil
	}
	u, e, probs, err := s.instance(name)
	if err != nil {
		return nil, err
	}
	if len(probs) > 0 {
		return nil, problemsError(name, probs)
	}
	return annotate(u, e), nil
}

func annotate(u *Unit, e *effective) []Annotation {
	var out []Annotation
	_, isOrch := e.tables[tOrchestrator]
	for i := range fields {
		f := &fields[i]
		id := f.id()
		if f.table == tOrchestrator && !isOrch {
			continue
		}
		add := func(value, source string) {
			out = append(out, Annotation{Table: f.table, Key: f.key, Value: value, Source: source})
		}
		switch f.kind {
		case kEnv:
			for _, k := range sortedKeys(e.env) {
				v := e.env[k]
				out = append(out, Annotation{Table: f.table + "." + f.key, Key: k, Value: formatValue(v.v), Source: v.src.path})
			}
		case kStrings, kInts:
			vs, written := e.list[id]
			switch {
			case !written:
				if def, ok := defaultValue(id); ok {
					add(def, DefaultSource)
				}
			case len(vs) == 0:
				value := "[]"
				if def, ok := defaultValue(id); ok {
					value = def // [] resets to the default
				}
				add(value, e.reset[id].src.path)
			default:
				var items, srcs []string
				for _, v := range vs {
					items = append(items, formatValue(v.v))
					if len(srcs) == 0 || srcs[len(srcs)-1] != v.src.path {
						srcs = append(srcs, v.src.path)
					}
				}
				add("["+strings.Join(items, ", ")+"]", strings.Join(srcs, ", "))
			}
		default:
			if v, ok := e.one[id]; ok {
				add(formatValue(v.v), v.src.path)
			} else if id == "service.type" && isOrch {
				add(formatValue(string(u.Service.Type)), e.tables[tOrchestrator].src.path)
			} else if id == "service.watchdog" && isOrch {
				add(formatValue(DefaultOrchestratorWatchdog), DefaultSource) // an orchestrator's heartbeat
			} else if def, ok := defaultValue(id); ok {
				add(def, DefaultSource)
			}
		}
	}
	return out
}

// defaultValue is the default of a field as TOML, for the fields that have one.
func defaultValue(id string) (string, bool) {
	d := DefaultService()
	switch id {
	case "unit.enabled":
		return "true", true
	case "unit.placement":
		return formatValue(string(PlacementLocal)), true
	case "service.type":
		return formatValue(string(d.Type)), true
	case "service.restart":
		return formatValue(string(d.Restart)), true
	case "service.restart_delay":
		return formatValue(d.RestartDelay), true
	case "service.restart_delay_max":
		return formatValue(d.RestartDelayMax), true
	case "service.start_limit_burst":
		return formatValue(int64(d.StartLimitBurst)), true
	case "service.start_limit_interval":
		return formatValue(d.StartLimitInterval), true
	case "service.start_timeout":
		return formatValue(d.StartTimeout), true
	case "service.stop_timeout":
		return formatValue(d.StopTimeout), true
	case "service.stop_signal":
		return formatValue(d.StopSignal), true
	case "service.watchdog":
		return formatValue(d.Watchdog), true
	case "service.notify_access":
		return formatValue(d.NotifyAccess), true
	case "service.stderr":
		if d.StderrToStdout {
			return formatValue("stdout"), true
		}
		return formatValue("stderr"), true
	case "service.success_exit_status":
		items := make([]string, len(d.SuccessExitStatus))
		for i, n := range d.SuccessExitStatus {
			items[i] = strconv.Itoa(n)
		}
		return "[" + strings.Join(items, ", ") + "]", true
	case "orchestrator.resume":
		return "false", true
	}
	return "", false
}

// formatValue writes one checked value as TOML.
func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return quoteTOML(x)
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		s := strconv.FormatFloat(x, 'f', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return s
	case time.Duration:
		if x == 0 {
			return `"0"`
		}
		return quoteTOML(x.String())
	}
	return quoteTOML(fmt.Sprint(v))
}

// quoteTOML writes s as a TOML basic string.
func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

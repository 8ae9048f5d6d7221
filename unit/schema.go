package unit

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opsvc/opsvc/worker/chain"
)

// kind is how a key's value is written and checked.
type kind int

const (
	kString   kind = iota // free-form string
	kEnum                 // string from a fixed list
	kSignal               // signal name, "SIGTERM" or "TERM"
	kDuration             // "100ms", "1m30s", "0"
	kBool                 //
	kInt                  // integer within [lo, hi]
	kFloat                // float (or integer) within [lo, hi]
	kStrings              // array of strings; drop-ins append, [] resets
	kInts                 // array of integers within [lo, hi]; drop-ins append, [] resets
	kEnv                  // table of strings, merged per key
)

// pathRule says how a string value that names a file is resolved.
type pathRule int

const (
	pathNone     pathRule = iota
	pathResolve           // relative to the directory of the file that set it
	pathOptional          // same, after an optional leading "-"
	pathFirst             // the first element of an argv: absolute, ./relative, or bare (PATH)
)

// field is one known key of a unit file.
type field struct {
	table, key string
	kind       kind
	enum       []string
	lo, hi     float64  // kInt, kFloat, kInts
	spec       bool     // specifiers (%i, %n, %p, %%) are expanded
	path       pathRule //
	names      bool     // elements are unit names
}

func (f *field) id() string { return f.table + "." + f.key }

// Tables of a unit file.
const (
	tUnit         = "unit"
	tService      = "service"
	tOrchestrator = "orchestrator"
)

var tableNames = []string{tUnit, tService, tOrchestrator}

var (
	typeNames         = []string{string(TypeSimple), string(TypeNotify), string(TypeIPC), string(TypeOneshot), string(TypeOrchestrator)}
	restartNames      = []string{string(RestartNo), string(RestartOnFailure), string(RestartAlways)}
	notifyAccessNames = []string{"main", "all"}
	placementNames    = []string{string(PlacementLocal), string(PlacementFleet)}
	gitNames          = []string{"off", "worktree"}
	stderrNames       = []string{"stderr", "stdout"}
)

// signalNames are the signals stop_signal may name.
var signalNames = []string{
	"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
	"SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGCONT", "SIGSTOP",
	"SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
	"SIGIO", "SIGPWR", "SIGSYS",
}

// fields is the schema of a unit file, in the order `opsvc cat` shows it.
var fields = []field{
	{table: tUnit, key: "description", kind: kString, spec: true},
	{table: tUnit, key: "after", kind: kStrings, spec: true, names: true},
	{table: tUnit, key: "requires", kind: kStrings, spec: true, names: true},
	{table: tUnit, key: "enabled", kind: kBool},
	{table: tUnit, key: "placement", kind: kEnum, enum: placementNames},

	{table: tService, key: "type", kind: kEnum, enum: typeNames},
	{table: tService, key: "exec", kind: kStrings, spec: true, path: pathFirst},
	{table: tService, key: "working_directory", kind: kString, spec: true, path: pathResolve},
	{table: tService, key: "environment", kind: kEnv, spec: true},
	{table: tService, key: "environment_files", kind: kStrings, spec: true, path: pathOptional},
	{table: tService, key: "user", kind: kString, spec: true},
	{table: tService, key: "group", kind: kString, spec: true},
	{table: tService, key: "restart", kind: kEnum, enum: restartNames},
	{table: tService, key: "restart_delay", kind: kDuration},
	{table: tService, key: "restart_delay_max", kind: kDuration},
	{table: tService, key: "start_limit_burst", kind: kInt, lo: 0, hi: math.MaxInt32},
	{table: tService, key: "start_limit_interval", kind: kDuration},
	{table: tService, key: "start_timeout", kind: kDuration},
	{table: tService, key: "stop_timeout", kind: kDuration},
	{table: tService, key: "stop_signal", kind: kSignal},
	{table: tService, key: "watchdog", kind: kDuration},
	{table: tService, key: "notify_access", kind: kEnum, enum: notifyAccessNames},
	{table: tService, key: "stderr", kind: kEnum, enum: stderrNames},
	{table: tService, key: "success_exit_status", kind: kInts, lo: 0, hi: 255},

	{table: tOrchestrator, key: "project_dir", kind: kString, spec: true, path: pathResolve},
	{table: tOrchestrator, key: "task", kind: kString, spec: true},
	{table: tOrchestrator, key: "agent", kind: kStrings, spec: true, path: pathFirst},
	{table: tOrchestrator, key: "extra_args", kind: kStrings, spec: true},
	{table: tOrchestrator, key: "model", kind: kString, spec: true},
	// A chain's limits: bounds from package chain, as for the daemon's settings.
	{table: tOrchestrator, key: "max_turns", kind: kInt, lo: chain.MinMaxTurns, hi: chain.MaxMaxTurns},
	{table: tOrchestrator, key: "max_continuations", kind: kInt, lo: chain.MinMaxContinuations, hi: chain.MaxMaxContinuations},
	{table: tOrchestrator, key: "max_budget_usd", kind: kFloat, lo: chain.UnlimitedBudget, hi: chain.MaxMaxBudgetUSD},
	{table: tOrchestrator, key: "max_consecutive_errors", kind: kInt, lo: chain.MinMaxConsecutiveErrors, hi: chain.MaxMaxConsecutiveErrors},
	{table: tOrchestrator, key: "resume", kind: kBool},
	{table: tOrchestrator, key: "git", kind: kEnum, enum: gitNames},
	{table: tOrchestrator, key: "branch", kind: kString, spec: true},
}

// lookupField returns the field table.key, or nil.
func lookupField(table, key string) *field {
	for i := range fields {
		if fields[i].table == table && fields[i].key == key {
			return &fields[i]
		}
	}
	return nil
}

func fieldByID(id string) *field {
	table, key, _ := strings.Cut(id, ".")
	return lookupField(table, key)
}

func tableKeys(table string) []string {
	var keys []string
	for _, f := range fields {
		if f.table == table {
			keys = append(keys, f.key)
		}
	}
	return keys
}

func (f *field) want() string {
	switch f.kind {
	case kString:
		return "a string"
	case kEnum:
		return "one of " + quoteList(f.enum)
	case kSignal:
		return `a signal name such as "SIGTERM"`
	case kDuration:
		return `a duration string such as "100ms", "1m30s" or "0"`
	case kBool:
		return "true or false"
	case kInt:
		return fmt.Sprintf("an integer from %d to %d", int64(f.lo), int64(f.hi))
	case kFloat:
		return fmt.Sprintf("a number from %v to %v", f.lo, f.hi)
	case kStrings:
		return "an array of strings"
	case kInts:
		return fmt.Sprintf("an array of integers from %d to %d", int64(f.lo), int64(f.hi))
	case kEnv:
		return `a table of strings, such as { PORT = "8080" }`
	}
	return "?"
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// parseDuration parses a duration: time.ParseDuration's syntax, plus a
// bare "0"; negative durations are refused.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// parseSignal returns the canonical name ("SIGTERM") of a signal written
// "SIGTERM", "TERM" or in lower case.
func parseSignal(s string) (string, bool) {
	u := strings.ToUpper(s)
	if !strings.HasPrefix(u, "SIG") {
		u = "SIG" + u
	}
	for _, n := range signalNames {
		if n == u {
			return n, true
		}
	}
	return "", false
}

// validEnvName reports whether s can name an environment variable.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// badSpecifier returns the first unknown specifier in s ("%x", or "%" at
// the end), or "".
func badSpecifier(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 >= len(s) {
			return "%"
		}
		switch s[i+1] {
		case 'i', 'n', 'p', '%':
			i++
		default:
			_, size := utf8.DecodeRuneInString(s[i+1:])
			return s[i : i+1+size]
		}
	}
	return ""
}

// expandSpecifiers replaces %i, %n, %p and %% in s; s has been checked with
// badSpecifier.
func expandSpecifiers(s, name string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	prefix, inst, _ := splitName(name)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'i':
			b.WriteString(inst)
		case 'n':
			b.WriteString(name)
		case 'p':
			b.WriteString(prefix)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

const specifierHint = "specifiers are %i (instance), %n (full name), %p (prefix before @) and %% (a literal %)"

// splitWords splits a command line written as one string into its words
// as a shell would: blanks separate words, quotes group them, a backslash
// outside single quotes takes the next character as it is. With an
// unclosed quote it splits at blanks only.
func splitWords(s string) []string {
	var (
		words []string
		b     strings.Builder
		in    bool // inside a word
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'' && c == '\'', quote == '"' && c == '"':
			quote = 0
		case quote == '"' && c == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
			i++
			b.WriteByte(s[i])
		case quote != 0:
			b.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			in = true
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return strings.Fields(s)
	}
	if in {
		words = append(words, b.String())
	}
	return words
}

package main

import (
	"fmt"
	"io"
	goruntime "runtime"
	"sort"
	"strings"
)

// flagSpec is one flag of the command line. The verb table below is the one
// source of the parser, the help texts and the completion scripts.
type flagSpec struct {
	name  string // long name, without dashes
	short string // one-letter alias, or ""
	value string // placeholder of its value; "" for a switch
	help  string
	comp  string // what completes its value: "units", "files", "dirs", "chains", or words
}

// verbSpec is one verb of the command line.
type verbSpec struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	example string
	comp    string // what completes its arguments: "units", "chains", "verbs", "files", or words
	flags   []flagSpec
	run     func(*cli) error
	hidden  bool
}

// globalFlagSpecs apply to every verb and may come before it.
func globalFlagSpecs() []flagSpec {
	return []flagSpec{
		{name: "socket", value: "PATH", help: "the daemon's control socket (or OPSVC_SOCKET)", comp: "files"},
		{name: "units", value: "DIR", help: "the units directory", comp: "dirs"},
		{name: "state", value: "DIR", help: "the state directory", comp: "dirs"},
		{name: "config", value: "FILE", help: "the daemon's settings file", comp: "files"},
		{name: "json", help: "machine-readable output"},
		{name: "color", value: "WHEN", help: "colour: auto, always or never (NO_COLOR turns it off)", comp: "auto always never"},
		{name: "no-pager", help: "accepted for systemctl habits; opsvc never pages"},
		{name: "full", short: "l", help: "accepted for systemctl habits; opsvc never cuts lines"},
		{name: "help", short: "h", help: "show help"},
		{name: "version", help: "print the version"},
	}
}

// verbTable lists every verb, in the order help shows them.
func verbTable() []verbSpec {
	fNoWait := flagSpec{name: "no-wait", help: "return once asked, without waiting for the result"}
	fAll := flagSpec{name: "all", help: "every unit"}
	fFollow := flagSpec{name: "follow", short: "f", help: "keep printing new lines as they come"}
	fLines := flagSpec{name: "lines", short: "n", value: "N", help: "how many recent lines first"}
	fQuiet := flagSpec{name: "quiet", short: "q", help: "print nothing; the exit code answers"}
	return []verbSpec{
		{name: "daemon", summary: "run the supervisor in the foreground",
			example: "opsvc daemon --units ./units --state ./state",
			flags: []flagSpec{
				{name: "no-watch", help: "do not watch the units directory (reload by hand)"},
				{name: "listen", value: "ADDR", help: "serve the API and web console on a TCP address"},
				{name: "check-state", value: "FILE", help: "check that this binary can take over the state in FILE, then exit", comp: "files"},
				{name: "replace", help: "take over from the daemon running on the socket: it hands its workers over and exits"},
			}, run: runDaemonEntry},
		{name: "status", args: "[UNIT...]", summary: "show units in full (exit 3 if a named one is not active)",
			example: "opsvc status web", comp: "units", run: (*cli).status},
		{name: "list", args: "[PATTERN...]", summary: "one line per unit; shell globs on names",
			example: "opsvc list 'orchestrator@*' --state=failed,activating", comp: "units",
			flags: []flagSpec{
				{name: "state", value: "STATE,...", help: "only units in these states (active, inactive, failed, activating, deactivating)", comp: "active inactive failed activating deactivating"},
				{name: "failed", help: "only failed units"},
			}, run: (*cli).list},
		{name: "start", args: "UNIT|PATTERN...", summary: "start units and wait until they are active",
			example: "opsvc start web 'worker@*'", comp: "units",
			flags: []flagSpec{fNoWait}, run: func(c *cli) error { return c.verb("start") }},
		{name: "stop", args: "UNIT|PATTERN...", summary: "stop units and wait until no process is left",
			example: "opsvc stop web", comp: "units",
			flags: []flagSpec{fNoWait, {name: "drain", help: "let an orchestrator finish its session first"}, fAll},
			run:   func(c *cli) error { return c.verb("stop") }},
		{name: "restart", args: "UNIT|PATTERN...", summary: "restart units (or every unit with --all)",
			example: "opsvc restart --all", comp: "units",
			flags: []flagSpec{fNoWait, fAll}, run: func(c *cli) error { return c.verb("restart") }},
		{name: "reload", summary: "re-read the unit files now", example: "opsvc reload", run: (*cli).reload},
		{name: "daemon-reexec", summary: "re-execute the daemon's binary in place; workers keep running",
			example: "opsvc daemon-reexec", run: (*cli).reexecVerb},
		{name: "enable", args: "UNIT...", summary: "start units with the daemon, across reloads and restarts",
			example: "opsvc enable web", comp: "units", run: func(c *cli) error { return c.choice("enable") }},
		{name: "disable", args: "UNIT...", summary: "keep units from starting with the daemon",
			example: "opsvc disable web", comp: "units", run: func(c *cli) error { return c.choice("disable") }},
		{name: "is-active", args: "UNIT...", summary: "print the state; exit 0 if every unit is active",
			example: "opsvc is-active --quiet web && echo up", comp: "units",
			flags: []flagSpec{fQuiet}, run: func(c *cli) error { return c.is("active") }},
		{name: "is-failed", args: "UNIT...", summary: "print the state; exit 0 if a unit is failed",
			example: "opsvc is-failed --quiet web || echo fine", comp: "units",
			flags: []flagSpec{fQuiet}, run: func(c *cli) error { return c.is("failed") }},
		{name: "is-enabled", args: "UNIT...", summary: "print enabled or disabled; exit 0 if every unit is enabled",
			example: "opsvc is-enabled web", comp: "units",
			flags: []flagSpec{fQuiet}, run: func(c *cli) error { return c.is("enabled") }},
		{name: "show", args: "UNIT", summary: "properties of a unit as KEY=VALUE lines, its definition's keys too",
			example: "opsvc show web -p ActiveState,MainPID --value", comp: "units",
			flags: []flagSpec{
				{name: "property", short: "p", value: "PROP,...", help: "only these properties"},
				{name: "value", help: "print values only"},
			}, run: (*cli).show},
		{name: "kill", args: "UNIT", summary: "send a signal to a unit's processes",
			example: "opsvc kill web --signal HUP", comp: "units",
			flags: []flagSpec{
				{name: "signal", short: "s", value: "SIG", help: "the signal (default TERM)", comp: "TERM HUP INT KILL USR1 USR2 QUIT"},
				{name: "main", help: "only the main process, not its group"},
			}, run: (*cli).kill},
		{name: "reset-failed", args: "[UNIT...]", summary: "forget failed states and start limits",
			example: "opsvc reset-failed web", comp: "units", run: (*cli).resetFailed},
		{name: "edit", args: "UNIT", summary: "edit NAME.d/override.toml in $EDITOR; installed once valid",
			example: "EDITOR=nano opsvc edit web", comp: "units", run: (*cli).edit},
		{name: "logs", args: "UNIT...", summary: "recent and live output of units",
			example: "opsvc logs web db -f --since 10m -p err",
			comp:    "units",
			flags: []flagSpec{fFollow, fLines,
				{name: "since", value: "TIME", help: "lines from this time on: 10m, 2h, \"2026-12-01 10:00\""},
				{name: "until", value: "TIME", help: "lines up to this time"},
				{name: "priority", short: "p", value: "PRIO", help: "err: only the standard error stream", comp: "err"},
				{name: "grep", value: "REGEXP", help: "only lines that match"},
				{name: "output", short: "o", value: "FORMAT", help: "short (default), cat (text only) or json", comp: "short cat json"},
			}, run: (*cli).logs},
		{name: "events", summary: "the event log; -f follows from now",
			example: "opsvc events -f -n 5 --unit web",
			flags: []flagSpec{fFollow, fLines,
				{name: "since", value: "SEQ", help: "the events after this seq"},
				{name: "unit", value: "UNIT", help: "only this unit's events", comp: "units"},
				{name: "type", value: "TYPE,...", help: "only these types", comp: "unit.starting unit.ready unit.exited unit.stopped unit.failed config.loaded config.invalid"},
				{name: "fleet", help: "every host's unit state changes, live, with the host ([cluster])"},
			}, run: (*cli).events},
		{name: "validate", args: "[PATH|-]", summary: "check unit files (no daemon needed; - reads stdin)",
			example: "opsvc cat web | opsvc validate -", comp: "files", run: (*cli).validate},
		{name: "cat", args: "UNIT", summary: "the effective definition as TOML, with sources",
			example: "opsvc cat web", comp: "units", run: (*cli).cat},
		{name: "chains", args: "[ls|show ID|lineage ID]", summary: "orchestrator chains",
			example: "opsvc chains show 20261201-abcd", comp: "chains",
			flags: []flagSpec{{name: "all", help: "ls: the archived chains too"}}, run: (*cli).chains},
		{name: "move", args: "UNIT HOST", summary: "hand a fleet unit over to another host; wait until it is active there",
			example: "opsvc move web web-2", comp: "units",
			flags: []flagSpec{{name: "timeout", value: "DURATION", help: "how long to wait (default 2m)"}}, run: (*cli).move},
		{name: "send", args: "UNIT NAME [JSON]", summary: "send a command to an ipc worker",
			example: "opsvc send echo ping '{\"hello\":1}'", comp: "units", run: (*cli).send},
		{name: "token", summary: "the tokens of the TCP listener",
			example: "opsvc token --read-only",
			flags: []flagSpec{
				{name: "read-only", help: "the read-only token"},
				{name: "rotate", help: "make new tokens; the old ones stop working"},
			}, run: (*cli).token},
		{name: "console", summary: "the web console's login link",
			example: "opsvc console --read-only",
			flags:   []flagSpec{{name: "read-only", help: "a link with the read-only token"}}, run: (*cli).console},
		{name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script",
			example: "opsvc completion bash > /etc/bash_completion.d/opsvc", comp: "bash zsh fish", run: (*cli).completion},
		{name: "help", args: "[VERB]", summary: "help on opsvc or one verb", example: "opsvc help logs", comp: "verbs", run: (*cli).help},
		{name: "service", args: "install|uninstall", summary: "install or remove the daemon as a Windows service",
			example: "opsvc service install --units C:\\opsvc\\units", comp: "install uninstall",
			run: runService, hidden: goruntime.GOOS != "windows"},
		{name: "version", summary: "print the version", example: "opsvc version", run: (*cli).version},
		{name: "worker", args: "KIND", hidden: true, run: runWorker},
	}
}

func findVerb(name string) (verbSpec, bool) {
	for _, v := range verbTable() {
		if v.name == name {
			return v, true
		}
	}
	return verbSpec{}, false
}

// lookupFlag finds a flag by long or short name among the verb's flags, then
// the global ones. A verb's own flag wins (list --state is a filter).
func lookupFlag(v verbSpec, name string) (flagSpec, bool) {
	for _, set := range [][]flagSpec{v.flags, globalFlagSpecs()} {
		for _, f := range set {
			if f.name == name || (f.short != "" && f.short == name) {
				return f, true
			}
		}
	}
	return flagSpec{}, false
}

// anyTakesValue says whether a flag takes a value for any verb: flags before
// the verb are read with it (opsvc -n 2 logs web).
func anyTakesValue(name string) bool {
	for _, f := range globalFlagSpecs() {
		if f.name == name || f.short == name {
			return f.value != ""
		}
	}
	for _, v := range verbTable() {
		for _, f := range v.flags {
			if f.name == name || f.short == name {
				return f.value != ""
			}
		}
	}
	return false
}

func flagUsage(f flagSpec) string {
	s := "--" + f.name
	if f.short != "" {
		s = "-" + f.short + ", " + s
	}
	if f.value != "" {
		s += " " + f.value
	}
	return s
}

func writeUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: opsvc [FLAGS] VERB [ARGS] [FLAGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Verbs:")
	for _, v := range verbTable() {
		if v.hidden {
			continue
		}
		syn := v.name
		if v.args != "" {
			syn += " " + v.args
		}
		fmt.Fprintf(w, "  %-34s %s\n", syn, v.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags for every verb:")
	for _, f := range globalFlagSpecs() {
		fmt.Fprintf(w, "  %-34s %s\n", flagUsage(f), f.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags may come before or after the verb and its arguments.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failure, 2 usage, 3 not active, 4 no such unit.")
	fmt.Fprintln(w, "More on one verb: opsvc help VERB")
}

func writeVerbHelp(w io.Writer, v verbSpec) {
	syn := "opsvc " + v.name
	if v.args != "" {
		syn += " " + v.args
	}
	fmt.Fprintf(w, "usage: %s", syn)
	if len(v.flags) > 0 {
		fmt.Fprint(w, " [FLAGS]")
	}
	fmt.Fprintf(w, "\n\n%s.\n", upperFirst(v.summary))
	if len(v.flags) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		for _, f := range v.flags {
			fmt.Fprintf(w, "  %-28s %s\n", flagUsage(f), f.help)
		}
	}
	fmt.Fprintf(w, "\nExample:\n  %s\n", v.example)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// help is `opsvc help [VERB]`.
func (c *cli) help() error {
	switch len(c.args.pos) {
	case 0:
		writeUsage(c.stdout)
		return nil
	case 1:
		v, ok := findVerb(c.args.pos[0])
		if !ok || v.hidden {
			return fail(exitUsage, "help: unknown verb %q (opsvc help lists them)", c.args.pos[0])
		}
		writeVerbHelp(c.stdout, v)
		return nil
	}
	return fail(exitUsage, "help: name at most one verb (opsvc help logs)")
}

// visibleVerbs are the verb names completion offers.
func visibleVerbs() []string {
	var out []string
	for _, v := range verbTable() {
		if !v.hidden {
			out = append(out, v.name)
		}
	}
	return out
}

// allFlagWords are a verb's flags as the shell completes them, globals included.
func allFlagWords(v verbSpec) []string {
	var out []string
	for _, set := range [][]flagSpec{v.flags, globalFlagSpecs()} {
		for _, f := range set {
			out = append(out, "--"+f.name)
			if f.short != "" {
				out = append(out, "-"+f.short)
			}
		}
	}
	sort.Strings(out)
	return dedupeSorted(out)
}

func dedupeSorted(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

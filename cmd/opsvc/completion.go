package main

import (
	"fmt"
	"io"
	"strings"
)

// completion is `opsvc completion bash|zsh|fish`: a script made from the
// verb table, so every verb and flag is in it. Unit names come from the
// running daemon (opsvc list), chain ids from opsvc chains ls.
func (c *cli) completion() error {
	if len(c.args.pos) != 1 {
		return fail(exitUsage, "completion: name a shell: bash, zsh or fish (opsvc completion bash)")
	}
	switch c.args.pos[0] {
	case "bash":
		writeBash(c.stdout)
	case "zsh":
		writeZsh(c.stdout)
	case "fish":
		writeFish(c.stdout)
	default:
		return fail(exitUsage, "completion: unknown shell %q: use bash, zsh or fish", c.args.pos[0])
	}
	return nil
}

// Both helpers ask the daemon the shell's user would reach; errors are silent.
const (
	shUnits  = `opsvc list --json --color=never 2>/dev/null | tr ',' '\n' | sed -n 's/^.*"name": *"\([^"]*\)".*$/\1/p'`
	shChains = `opsvc chains ls --json 2>/dev/null | tr ',' '\n' | sed -n 's/^.*"id": *"\([^"]*\)".*$/\1/p'`
)

// words turns a comp value into shell words for a fixed list, or "".
func fixedWords(comp string) string {
	switch comp {
	case "", "units", "files", "dirs", "chains", "verbs":
		return ""
	}
	return comp
}

func writeBash(w io.Writer) {
	fmt.Fprintf(w, `# bash completion for opsvc (made by: opsvc completion bash).
# Install: opsvc completion bash > /usr/share/bash-completion/completions/opsvc
_opsvc_units() { %s; }
_opsvc_chains() { %s; }
_opsvc() {
	local cur prev verb i w
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	verb=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-*) case $w in %s) ((i++)) ;; esac ;;
		*) verb=$w; break ;;
		esac
	done
	case $prev in
`, shUnits, shChains, strings.Join(valueFlagWords(), "|"))
	// A flag's value.
	for _, kind := range []string{"files", "dirs", "units", "chains"} {
		if fl := flagsWithComp(kind); len(fl) > 0 {
			fmt.Fprintf(w, "\t%s) %s; return ;;\n", strings.Join(fl, "|"), bashGen(kind, "$cur"))
		}
	}
	for _, f := range allFlags() {
		if ws := fixedWords(f.comp); ws != "" && f.value != "" {
			fmt.Fprintf(w, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", strings.Join(flagWords(f), "|"), ws)
		}
	}
	fmt.Fprintf(w, "\tesac\n\tif [ -z \"$verb\" ]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(visibleVerbs(), " ")+" "+strings.Join(allFlagWords(verbSpec{}), " "))
	fmt.Fprintf(w, "\tcase $cur in\n\t-*)\n\t\tcase $verb in\n")
	for _, v := range verbTable() {
		if !v.hidden {
			fmt.Fprintf(w, "\t\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", v.name, strings.Join(allFlagWords(v), " "))
		}
	}
	fmt.Fprintf(w, "\t\tesac\n\t\treturn ;;\n\tesac\n\tcase $verb in\n")
	for _, v := range verbTable() {
		if v.hidden || v.comp == "" {
			continue
		}
		fmt.Fprintf(w, "\t%s) %s ;;\n", v.name, bashGen(v.comp, "$cur"))
	}
	fmt.Fprint(w, "\tesac\n}\ncomplete -F _opsvc opsvc\n")
}

func bashGen(kind, cur string) string {
	switch kind {
	case "files":
		return `COMPREPLY=($(compgen -f -- "` + cur + `"))`
	case "dirs":
		return `COMPREPLY=($(compgen -d -- "` + cur + `"))`
	case "units":
		return `COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "` + cur + `"))`
	case "chains":
		return `COMPREPLY=($(compgen -W "ls show lineage $(_opsvc_chains)" -- "` + cur + `"))`
	case "verbs":
		return `COMPREPLY=($(compgen -W "` + strings.Join(visibleVerbs(), " ") + `" -- "` + cur + `"))`
	}
	return `COMPREPLY=($(compgen -W "` + kind + `" -- "` + cur + `"))`
}

func allFlags() []flagSpec {
	out := globalFlagSpecs()
	for _, v := range verbTable() {
		out = append(out, v.flags...)
	}
	return out
}

func flagWords(f flagSpec) []string {
	out := []string{"--" + f.name}
	if f.short != "" {
		out = append(out, "-"+f.short)
	}
	return out
}

func valueFlagWords() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range allFlags() {
		if f.value == "" {
			continue
		}
		for _, w := range flagWords(f) {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out
}

func flagsWithComp(kind string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range allFlags() {
		if f.comp != kind || f.value == "" {
			continue
		}
		for _, w := range flagWords(f) {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out
}

func zshQuote(s string) string {
	s = strings.ReplaceAll(s, `'`, `'\''`)
	s = strings.ReplaceAll(s, `[`, `\[`)
	s = strings.ReplaceAll(s, `]`, `\]`)
	s = strings.ReplaceAll(s, `:`, `\:`)
	return s
}

func zshAction(kind string) string {
	switch kind {
	case "files":
		return "_files"
	case "dirs":
		return "_files -/"
	case "units":
		return "_opsvc_units"
	case "chains":
		return "_opsvc_chains"
	case "verbs":
		return "(" + strings.Join(visibleVerbs(), " ") + ")"
	case "":
		return ""
	}
	return "(" + kind + ")"
}

func zshSpecs(flags []flagSpec) []string {
	var out []string
	for _, f := range flags {
		action := ""
		if f.value != "" {
			a := zshAction(f.comp)
			if a == "" {
				a = " "
			}
			action = ":" + strings.ToLower(f.value) + ":" + a
		}
		help := "[" + zshQuote(f.help) + "]"
		if f.short != "" {
			out = append(out, fmt.Sprintf("'(-%s --%s)'{-%s,--%s}'%s%s'", f.short, f.name, f.short, f.name, help, action))
		} else {
			eq := ""
			if f.value != "" {
				eq = "="
			}
			out = append(out, fmt.Sprintf("'--%s%s%s%s'", f.name, eq, help, action))
		}
	}
	return out
}

func writeZsh(w io.Writer) {
	fmt.Fprint(w, "#compdef opsvc\n# zsh completion for opsvc (made by: opsvc completion zsh).\n# Install: opsvc completion zsh > \"${fpath[1]}/_opsvc\"\n")
	fmt.Fprintf(w, "_opsvc_units() { local -a u; u=(${(f)\"$(%s)\"}); compadd -a u; }\n", shUnits)
	fmt.Fprintf(w, "_opsvc_chains() { local -a c; c=(ls show lineage ${(f)\"$(%s)\"}); compadd -a c; }\n", shChains)
	fmt.Fprint(w, "_opsvc() {\n\tlocal curcontext=\"$curcontext\" state line\n\ttypeset -A opt_args\n\tlocal -a verbs\n\tverbs=(\n")
	for _, v := range verbTable() {
		if !v.hidden {
			fmt.Fprintf(w, "\t\t'%s:%s'\n", v.name, zshQuote(v.summary))
		}
	}
	fmt.Fprint(w, "\t)\n\t_arguments -C \\\n")
	for _, s := range zshSpecs(globalFlagSpecs()) {
		fmt.Fprintf(w, "\t\t%s \\\n", s)
	}
	fmt.Fprint(w, "\t\t'1: :->verb' \\\n\t\t'*:: :->args'\n\tcase $state in\n\tverb) _describe -t verbs 'opsvc verb' verbs ;;\n\targs)\n\t\tcase $line[1] in\n")
	for _, v := range verbTable() {
		if v.hidden {
			continue
		}
		specs := zshSpecs(append(append([]flagSpec{}, v.flags...), globalFlagSpecs()...))
		if a := zshAction(v.comp); a != "" {
			specs = append(specs, "'*:arg:"+a+"'")
		}
		fmt.Fprintf(w, "\t\t%s) _arguments %s ;;\n", v.name, strings.Join(specs, " "))
	}
	// Autoloaded from $fpath it completes at once; sourced, it registers.
	fmt.Fprint(w, "\t\tesac ;;\n\tesac\n}\nif [ \"$funcstack[1]\" = \"_opsvc\" ]; then\n\t_opsvc \"$@\"\nelse\n\tcompdef _opsvc opsvc\nfi\n")
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) + "'"
}

func fishArgs(kind string) string {
	switch kind {
	case "files":
		return "-F"
	case "dirs":
		return "-a '(__fish_complete_directories)'"
	case "units":
		return "-a '(__opsvc_units)'"
	case "chains":
		return "-a 'ls show lineage (__opsvc_chains)'"
	case "verbs":
		return "-a " + fishQuote(strings.Join(visibleVerbs(), " "))
	case "":
		return ""
	}
	return "-a " + fishQuote(kind)
}

func writeFish(w io.Writer) {
	fmt.Fprint(w, "# fish completion for opsvc (made by: opsvc completion fish).\n# Install: opsvc completion fish > ~/.config/fish/completions/opsvc.fish\n")
	fmt.Fprintf(w, "function __opsvc_units\n\t%s\nend\n", shUnits)
	fmt.Fprintf(w, "function __opsvc_chains\n\t%s\nend\n", shChains)
	verbs := strings.Join(visibleVerbs(), " ")
	fmt.Fprint(w, "complete -c opsvc -f\n")
	for _, v := range verbTable() {
		if !v.hidden {
			fmt.Fprintf(w, "complete -c opsvc -n 'not __fish_seen_subcommand_from %s' -a %s -d %s\n", verbs, v.name, fishQuote(v.summary))
		}
	}
	flag := func(cond string, f flagSpec) {
		line := "complete -c opsvc"
		if cond != "" {
			line += " -n " + fishQuote(cond)
		}
		line += " -l " + f.name
		if f.short != "" {
			line += " -s " + f.short
		}
		if f.value != "" {
			line += " -r"
			if a := fishArgs(f.comp); a != "" {
				line += " " + a
			}
		}
		fmt.Fprintln(w, line+" -d "+fishQuote(f.help))
	}
	for _, f := range globalFlagSpecs() {
		flag("", f)
	}
	for _, v := range verbTable() {
		if v.hidden {
			continue
		}
		cond := "__fish_seen_subcommand_from " + v.name
		for _, f := range v.flags {
			flag(cond, f)
		}
		if a := fishArgs(v.comp); a != "" {
			fmt.Fprintf(w, "complete -c opsvc -n %s %s\n", fishQuote(cond), a)
		}
	}
}

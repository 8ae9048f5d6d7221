# bash completion for opsvc. Source it, or install it as
# /usr/share/bash-completion/completions/opsvc.
_opsvc_units() {
	opsvc status --json 2>/dev/null | sed -n 's/^ *"name": "\([^"]*\)".*/\1/p'
}

_opsvc() {
	local cur prev verb
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	local verbs="daemon status start stop restart reload logs events validate cat chains send version"
	verb=""
	for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
		case $w in -*) ;; *) verb=$w; break ;; esac
	done
	case $prev in
	--socket|--units|--state|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--unit) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")); return ;;
	esac
	if [ -z "$verb" ]; then
		COMPREPLY=($(compgen -W "$verbs --socket --help" -- "$cur"))
		return
	fi
	case $verb in
	status|start|stop|restart|logs|cat|send)
		case $cur in
		-*) COMPREPLY=($(compgen -W "--json --no-wait --drain -f -n" -- "$cur")) ;;
		*) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
		esac ;;
	events) COMPREPLY=($(compgen -W "-f --since --unit --type --json" -- "$cur")) ;;
	chains) COMPREPLY=($(compgen -W "ls show lineage --json" -- "$cur")) ;;
	validate|daemon) COMPREPLY=($(compgen -f -- "$cur")) ;;
	esac
}
complete -F _opsvc opsvc

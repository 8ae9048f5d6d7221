# bash completion for opsvc (made by: opsvc completion bash).
# Install: opsvc completion bash > /usr/share/bash-completion/completions/opsvc
_opsvc_units() { opsvc list --json --color=never 2>/dev/null | tr ',' '\n' | sed -n 's/^.*"name": *"\([^"]*\)".*$/\1/p'; }
_opsvc_chains() { opsvc chains ls --json 2>/dev/null | tr ',' '\n' | sed -n 's/^.*"id": *"\([^"]*\)".*$/\1/p'; }
_opsvc() {
	local cur prev verb i w
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	verb=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-*) case $w in --socket|--units|--state|--config|--color|--listen|--check-state|--property|-p|--signal|-s|--lines|-n|--since|--until|--priority|--grep|--output|-o|--unit|--type|--timeout) ((i++)) ;; esac ;;
		*) verb=$w; break ;;
		esac
	done
	case $prev in
	--socket|--config|--check-state) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--units|--state) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--unit) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")); return ;;
	--color) COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return ;;
	--state) COMPREPLY=($(compgen -W "active inactive failed activating deactivating" -- "$cur")); return ;;
	--signal|-s) COMPREPLY=($(compgen -W "TERM HUP INT KILL USR1 USR2 QUIT" -- "$cur")); return ;;
	--priority|-p) COMPREPLY=($(compgen -W "err" -- "$cur")); return ;;
	--output|-o) COMPREPLY=($(compgen -W "short cat json" -- "$cur")); return ;;
	--type) COMPREPLY=($(compgen -W "unit.starting unit.ready unit.exited unit.stopped unit.failed config.loaded config.invalid" -- "$cur")); return ;;
	esac
	if [ -z "$verb" ]; then
		COMPREPLY=($(compgen -W "daemon status list start stop restart reload daemon-reexec enable disable is-active is-failed is-enabled show kill reset-failed edit logs events validate cat chains move send token console completion help version --color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur"))
		return
	fi
	case $cur in
	-*)
		case $verb in
		daemon) COMPREPLY=($(compgen -W "--check-state --color --config --full --help --json --listen --no-pager --no-watch --replace --socket --state --units --version -h -l" -- "$cur")) ;;
		status) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		list) COMPREPLY=($(compgen -W "--color --config --failed --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		start) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --no-wait --socket --state --units --version -h -l" -- "$cur")) ;;
		stop) COMPREPLY=($(compgen -W "--all --color --config --drain --full --help --json --no-pager --no-wait --socket --state --units --version -h -l" -- "$cur")) ;;
		restart) COMPREPLY=($(compgen -W "--all --color --config --full --help --json --no-pager --no-wait --socket --state --units --version -h -l" -- "$cur")) ;;
		reload) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		daemon-reexec) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		enable) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		disable) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		is-active) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --quiet --socket --state --units --version -h -l -q" -- "$cur")) ;;
		is-failed) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --quiet --socket --state --units --version -h -l -q" -- "$cur")) ;;
		is-enabled) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --quiet --socket --state --units --version -h -l -q" -- "$cur")) ;;
		show) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --property --socket --state --units --value --version -h -l -p" -- "$cur")) ;;
		kill) COMPREPLY=($(compgen -W "--color --config --full --help --json --main --no-pager --signal --socket --state --units --version -h -l -s" -- "$cur")) ;;
		reset-failed) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		edit) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		logs) COMPREPLY=($(compgen -W "--color --config --follow --full --grep --help --json --lines --no-pager --output --priority --since --socket --state --units --until --version -f -h -l -n -o -p" -- "$cur")) ;;
		events) COMPREPLY=($(compgen -W "--color --config --fleet --follow --full --help --json --lines --no-pager --since --socket --state --type --unit --units --version -f -h -l -n" -- "$cur")) ;;
		validate) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		cat) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		chains) COMPREPLY=($(compgen -W "--all --color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		move) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --timeout --units --version -h -l" -- "$cur")) ;;
		send) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		token) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --read-only --rotate --socket --state --units --version -h -l" -- "$cur")) ;;
		console) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --read-only --socket --state --units --version -h -l" -- "$cur")) ;;
		completion) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		help) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		version) COMPREPLY=($(compgen -W "--color --config --full --help --json --no-pager --socket --state --units --version -h -l" -- "$cur")) ;;
		esac
		return ;;
	esac
	case $verb in
	status) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	list) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	start) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	stop) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	restart) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	enable) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	disable) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	is-active) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	is-failed) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	is-enabled) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	show) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	kill) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	reset-failed) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	edit) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	logs) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	validate) COMPREPLY=($(compgen -f -- "$cur")) ;;
	cat) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	chains) COMPREPLY=($(compgen -W "ls show lineage $(_opsvc_chains)" -- "$cur")) ;;
	move) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	send) COMPREPLY=($(compgen -W "$(_opsvc_units)" -- "$cur")) ;;
	completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
	help) COMPREPLY=($(compgen -W "daemon status list start stop restart reload daemon-reexec enable disable is-active is-failed is-enabled show kill reset-failed edit logs events validate cat chains move send token console completion help version" -- "$cur")) ;;
	esac
}
complete -F _opsvc opsvc

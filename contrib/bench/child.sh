#!/bin/bash
# child.sh MODE TAG - the program every supervisor runs in `make bench`.
#
# Its last exec sets argv[0] to TAG (unique to the run and the program), so the
# harness finds each child by its command line, and a child counts as alive
# from that exec on. It leaves no grandchild behind.
#
#   sleep     exec sleep (as TAG)
#   graceful  on SIGTERM or SIGINT: wait 0.2 s, then exit 0
#   ignore    SIGTERM and SIGINT are ignored (only SIGKILL ends it)
#   crash     exits 1 at once, before any exec: never alive (a crash loop)
#
# graceful and ignore wait with bash's `read -t` on child.fifo, a FIFO beside
# this script that nobody writes: no sleep process, and a trapped signal
# interrupts the wait at once.
mode=${1:?usage: child.sh MODE TAG} tag=${2:?usage: child.sh MODE TAG}
case $mode in
sleep) exec -a "$tag" sleep 1000000 ;;
crash) exit 1 ;;
graceful) exec -a "$tag" bash "${BASH_SOURCE[0]}" in-graceful "$tag" ;;
ignore)
	# ignored before the exec, so ignored from the instant the child is alive
	trap '' TERM INT
	exec -a "$tag" bash "${BASH_SOURCE[0]}" in-ignore "$tag"
	;;
in-graceful | in-ignore)
	fifo=${BASH_SOURCE[0]%/*}/child.fifo
	exec 3<>"$fifo" || exit 111
	if [[ $mode == in-graceful ]]; then
		trap 'read -r -t 0.2 -u 3; exit 0' TERM INT
	fi
	while :; do read -r -t 86400 -u 3; done
	;;
*)
	echo "child.sh: unknown mode '$mode' (sleep, graceful, ignore, crash)" >&2
	exit 2
	;;
esac

#!/bin/sh
# A worker that speaks opsvc's IPC protocol on fd 3: one JSON object per line.
printf '{"type":"ready"}\n' >&3
printf '{"type":"status","text":"echoing commands"}\n' >&3
# Heartbeats at half the watchdog interval.
beat=$(( ${OPSVC_HEARTBEAT_USEC:-10000000} / 2000000 ))
[ "$beat" -lt 1 ] && beat=1
( while :; do printf '{"type":"heartbeat"}\n' >&3; sleep "$beat"; done ) &
while IFS= read -r line <&3; do
	case $line in
	*'"type":"shutdown"'*)
		echo "echo-ipc: shutdown requested"
		kill $! 2>/dev/null
		exit 0 ;;
	*'"type":"command"'*)
		id=$(printf '%s' "$line" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
		args=$(printf '%s' "$line" | sed -n 's/.*"args":\(.*\)}$/\1/p')
		[ -n "$args" ] || args=null
		printf '{"type":"reply","id":"%s","ok":true,"data":%s}\n' "$id" "$args" >&3 ;;
	esac
done

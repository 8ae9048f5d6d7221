#!/bin/sh
# Logs a numbered line every $1 seconds (default 1).
interval=${1:-1}
n=0
while :; do
	n=$((n + 1))
	echo "${GREETING:-tick} $n"
	sleep "$interval"
done

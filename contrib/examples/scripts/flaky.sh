#!/bin/sh
# Works for a few seconds, then fails with exit code 3 one time in two.
echo "flaky: started as pid $$"
sleep 4
if [ $(( $$ % 2 )) -eq 0 ]; then
	echo "flaky: giving up with exit 3" >&2
	exit 3
fi
echo "flaky: crashing by SIGKILL" >&2
kill -9 $$

#!/bin/sh
# Serves until SIGTERM, then takes three seconds to finish its work.
stopping=0
trap 'stopping=1' TERM
echo "slowstop: serving"
while [ $stopping -eq 0 ]; do
	sleep 1 &
	wait $!
done
echo "slowstop: draining for 3s"
sleep 3
echo "slowstop: done"

#!/bin/sh
# A worker for the test units: prints a line now and then.
while :; do echo tick; sleep 1; done

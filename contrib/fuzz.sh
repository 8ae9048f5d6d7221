#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 3s).
# `make test` runs it briefly; `make fuzz` runs it longer. New crashers are
# written by the go command under the package's testdata/fuzz/, where they
# become seeds that every `go test` run replays.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
go=${GO:-go}
# Fuzz targets, found by name in the test files: `go test -list` would build
# every package's tests just to look.
grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | while read -r dir; do
  pkg=$($go list "$dir")
  for t in $(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $t ($fuzztime)"
    if ! $go test -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" "$pkg" >/tmp/opsvc-fuzz.$$ 2>&1; then
      # The go command reports "context deadline exceeded" when the fuzz time runs out while
      # one input is still being tried; that is no finding. A finding writes its input.
      if grep -q 'context deadline exceeded' /tmp/opsvc-fuzz.$$ && ! grep -q 'Failing input written' /tmp/opsvc-fuzz.$$; then
        echo "fuzz: $t: time ran out during an input (no finding)"
        continue
      fi
      cat /tmp/opsvc-fuzz.$$
      exit 1
    fi
  done
done
status=$?
rm -f /tmp/opsvc-fuzz.$$
exit $status

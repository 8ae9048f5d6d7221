#!/usr/bin/env bash
# run.sh - `make bench`: builds opsvc, the harness, the floor program and the
# registry benchmark into contrib/bench/bin/, then measures opsvc, the floor and every installed peer
# supervisor side by side (see contrib/bench/README.md). Options are passed
# to the harness, e.g.:
#
#   contrib/bench/run.sh --quick                 # N=100, 1 repetition, about 3 min
#   contrib/bench/run.sh --only opsvc,floor      # leave the peers out
#   contrib/bench/run.sh -h                      # every option
#
# The table goes to stdout and to contrib/bench/results/latest.md (raw figures
# in latest.json); progress goes to stderr.
set -euo pipefail
export LC_ALL=C CGO_ENABLED=0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
GO=${GO:-go}

args=()
for a in "$@"; do
  case $a in
    --*) args+=("-${a#--}") ;; # the harness takes Go-style flags; accept --flag too
    *) args+=("$a") ;;
  esac
done

if [[ -n ${MAKELEVEL:-} ]]; then
  cmdline="make bench${*:+ (run.sh $*)}"
else
  cmdline="contrib/bench/run.sh${*:+ $*}"
fi

# A private opsvc binary: bin/opsvc may be rebuilt while the run goes on.
mkdir -p "$HERE/bin"
"$GO" build -o "$HERE/bin/opsvc" ./cmd/opsvc
"$GO" build -o "$HERE/bin/harness" ./contrib/bench/harness
"$GO" build -o "$HERE/bin/floor" ./contrib/bench/floor
"$GO" build -o "$HERE/bin/regbench" ./contrib/bench/regbench

# Go benchmark figures: from `make bench`'s first step when it is fresh,
# otherwise the harness runs the benchmarks it reports.
gobench=""
if [[ -f .run-bench-go.txt && -n $(find .run-bench-go.txt -mmin -60 2>/dev/null) ]]; then
  gobench=$ROOT/.run-bench-go.txt
fi

exec "$HERE/bin/harness" -repo "$ROOT" -opsvc "$HERE/bin/opsvc" -floor "$HERE/bin/floor" \
  -regbench "$HERE/bin/regbench" -child "$HERE/child.sh" -out "$HERE/results" \
  -gobench "$gobench" -command "$cmdline" "${args[@]}"

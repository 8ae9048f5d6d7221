#!/usr/bin/env bash
# Runs the Windows test binaries of the packages below under wine.
#
#   contrib/windows/test.sh              every package in the table
#   contrib/windows/test.sh ./config     the named packages only (all their tests)
#   contrib/windows/test.sh './config|Paths'   ... only the tests -test.run Paths picks
#
# Needs wine64 and x86_64-w64-mingw32-gcc (Debian: wine64, gcc-mingw-w64-x86-64).
# Wine's prefix, the ProcessPrng stand-in and the test binaries live in .run/
# (ignored by git). Exits non-zero if any test binary fails or times out.
#
# Environment: GO (default go), WINEPREFIX (default .run/wine),
# WINTEST_TIMEOUT (per package, default 240s).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# package | tests to run (a -test.run pattern; empty: all)
# A package is listed when it has code or tests that are Windows-specific.
read -r -d '' table <<'TABLE' || true
./config|Paths
./supervisor/npipe|
./supervisor|PipePeer|Windows
./cmd/opsvc|Windows
./unit|Windows
./supervisor/logs|Windows
./worker|ChildEnv|Channel|Conn[FC]
TABLE

GO=${GO:-go}
timeout_s=${WINTEST_TIMEOUT:-240s}
export WINEPREFIX=${WINEPREFIX:-$root/.run/wine}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}   # no Mono/Gecko prompts

wine=$(command -v wine64 || true)
[ -n "$wine" ] || { [ -x /usr/lib/wine/wine64 ] && wine=/usr/lib/wine/wine64; }
if [ -z "$wine" ]; then
  echo "test-windows: wine64 not found (Debian: apt-get install wine64 gcc-mingw-w64-x86-64)" >&2
  exit 1
fi
cc=$(command -v x86_64-w64-mingw32-gcc || true)
if [ -z "$cc" ]; then
  echo "test-windows: x86_64-w64-mingw32-gcc not found (Debian: apt-get install gcc-mingw-w64-x86-64)" >&2
  exit 1
fi
wineserver=$(command -v wineserver || true)
[ -n "$wineserver" ] || { [ -x /usr/lib/wine/wineserver ] && wineserver=/usr/lib/wine/wineserver; }

out=$root/.run/wintest
mkdir -p "$out"
start=$(date +%s)

# The wine prefix, made once and kept in .run/wine.
sys32=$WINEPREFIX/drive_c/windows/system32
if [ ! -d "$sys32" ]; then
  echo "test-windows: creating the wine prefix $WINEPREFIX"
  mkdir -p "$WINEPREFIX"
  timeout 300 "$wine" wineboot -i >/dev/null 2>&1 || true
  [ -n "$wineserver" ] && timeout 60 "$wineserver" -w || true
  [ -d "$sys32" ] || { echo "test-windows: wineboot did not create $sys32" >&2; exit 1; }
fi

# Go's runtime needs ProcessPrng from bcryptprimitives.dll, which wine 8.0 lacks.
shim=$out/bcryptprimitives.dll
if [ ! -f "$shim" ] || [ contrib/windows/prng.c -nt "$shim" ]; then
  "$cc" -O2 -shared -o "$shim" contrib/windows/prng.c -lbcrypt
fi
cmp -s "$shim" "$sys32/bcryptprimitives.dll" || cp "$shim" "$sys32/bcryptprimitives.dll"

# Go (1.25 and later) removes files through FileDispositionInformationEx,
# which wine 8.0 does not implement ("Invalid function"): os.RemoveAll, and so
# every t.TempDir cleanup, would fail. The test binaries are built with an
# overlay of that one file of the standard library that takes the older way
# (FileDispositionInformation), as Go itself does on file systems without the
# newer one. Release builds never see it.
overlay=()
at=$("$GO" env GOROOT)/src/internal/syscall/windows/at_windows.go
if grep -q '^var TestDeleteatFallback bool$' "$at" 2>/dev/null; then
  sed 's/^var TestDeleteatFallback bool$/var TestDeleteatFallback = true/' "$at" >"$out/at_windows.go"
  printf '{"Replace":{"%s":"%s"}}\n' "$at" "$out/at_windows.go" >"$out/overlay.json"
  overlay=(-overlay "$out/overlay.json")
else
  echo "test-windows: warning: $at has no TestDeleteatFallback; removing files may fail under wine" >&2
fi

if [ $# -gt 0 ]; then
  table=$(for a in "$@"; do case $a in *'|'*) echo "$a" ;; *) echo "$a|" ;; esac; done)
fi

failed=()
while IFS='|' read -r pkg run; do
  [ -n "$pkg" ] || continue
  name=$(echo "${pkg#./}" | tr '/' '_')
  exe=$out/$name.test.exe
  rm -f "$exe"
  if ! GOOS=windows GOARCH=amd64 CGO_ENABLED=0 "$GO" test "${overlay[@]}" -c -o "$exe" "$pkg"; then
    echo "--- FAIL: $pkg (build)"
    failed+=("$pkg")
    continue
  fi
  if [ ! -f "$exe" ]; then
    echo "--- SKIP: $pkg (no tests)"
    continue
  fi
  flags=(-test.v -test.timeout="$timeout_s")
  [ -z "$run" ] || flags+=(-test.run "$run")
  pkgdir=$root/${pkg#./}
  t0=$(date +%s)
  echo "=== wine $pkg ${run:+(-run $run)}"
  set +e
  (cd "$pkgdir" && timeout --kill-after=10s "$(( ${timeout_s%s} + 30 ))s" "$wine" "$exe" "${flags[@]}") 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ] || grep -q -e '^--- FAIL' -e '^FAIL' -e '^panic:' "$out/$name.log" || ! grep -q '^PASS$' "$out/$name.log"; then
    echo "--- FAIL: $pkg under wine (exit $rc, $(( $(date +%s) - t0 ))s; log: .run/wintest/$name.log)"
    failed+=("$pkg")
  else
    echo "ok   $pkg under wine ($(( $(date +%s) - t0 ))s)"
  fi
done <<<"$table"

[ -z "$wineserver" ] || "$wineserver" -k >/dev/null 2>&1 || true
echo "test-windows: $(( $(date +%s) - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-windows: FAIL under wine: ${failed[*]}" >&2
  exit 1
fi
echo "test-windows: every package passed under wine"

#!/usr/bin/env bash
# Builds the release archives into dist/: one per platform, each holding the
# opsvc binary, README.md, LICENSE (when there is one), contrib/opsvc.service
# and the shell completion scripts; a .zip for Windows, a .tar.gz elsewhere;
# and SHA256SUMS over them.
#
# Environment: GO (default go); VERSION (default: the source's version, with
# -dev+COMMIT added unless HEAD is tagged vVERSION); PLATFORMS (default below).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/arm64 freebsd/amd64 windows/amd64"}
base=$(sed -n 's/^var version = "\(.*\)"$/\1/p' cmd/opsvc/main.go)
[ -n "$base" ] || { echo "dist: no version in cmd/opsvc/main.go" >&2; exit 1; }
if [ -z "${VERSION:-}" ]; then
  VERSION=$base
  if ! git describe --tags --exact-match --match "v$base" >/dev/null 2>&1; then
    VERSION="$base-dev+$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || VERSION="$VERSION.dirty"
  fi
fi
# Archive times are the commit's, so that the same commit gives the same archives.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)

rm -rf dist
mkdir -p dist/.stage
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  name=opsvc-$VERSION-$os-$arch
  dir=dist/.stage/$name
  mkdir -p "$dir/completion"
  exe=opsvc
  [ "$os" = windows ] && exe=opsvc.exe
  echo "dist: $name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=$VERSION" -o "$dir/$exe" ./cmd/opsvc
  cp README.md "$dir/"
  [ ! -f LICENSE ] || cp LICENSE "$dir/"
  cp contrib/opsvc.service "$dir/"
  cp contrib/completion/opsvc.bash contrib/completion/_opsvc contrib/completion/opsvc.fish "$dir/completion/"
  find "$dir" -exec touch -h -d "@$epoch" {} +
  if [ "$os" = windows ]; then
    rm -f "dist/$name.zip"
    if command -v zip >/dev/null 2>&1; then
      (cd dist/.stage && find "$name" | LC_ALL=C sort | zip -X -q "../$name.zip" -@)
    else
      (cd dist/.stage && python3 -m zipfile -c "../$name.zip" "$name")
    fi
  else
    tar -C dist/.stage --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
      -cf - "$name" | gzip -n -9 >"dist/$name.tar.gz"
  fi
done
rm -rf dist/.stage
(cd dist && sha256sum opsvc-* >SHA256SUMS)
echo "dist: $(ls dist | wc -l) files in dist/ (version $VERSION)"

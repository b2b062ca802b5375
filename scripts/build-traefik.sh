#!/usr/bin/env bash
# Build the pinned Traefik into .tmp/bin/traefik-<version>, for the gateway tier's live Traefik run
# (make test-traefik). Prints the binary's path.
#
# `go install github.com/traefik/traefik/v3/cmd/traefik@<version>` is refused: Traefik's go.mod has
# replace directives. So the module source is fetched from the Go module proxy (checksummed by
# sum.golang.org), copied, and built as the main module. On the project's 2-core machine the first
# build took about 16 minutes under load (10 of CPU), which is why it is not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v3.6.4
OUT=".tmp/bin/traefik-$VERSION"
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-traefik: Go is needed to build Traefik" >&2; exit 1; }
mkdir -p .tmp/bin .tmp/src
exec 9>.tmp/traefik-build.lock
flock 9  # one build at a time
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
MOD_DIR=$(cd .tmp && go mod download -json "github.com/traefik/traefik/v3@$VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -d "$MOD_DIR" ] || { echo "build-traefik: module download failed" >&2; exit 1; }
SRC=".tmp/src/traefik-$VERSION"
rm -rf "$SRC"
cp -r "$MOD_DIR" "$SRC"
chmod -R u+w "$SRC"
echo "building Traefik $VERSION (first use only; 10-20 minutes)" >&2
(cd "$SRC" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$PWD/../../bin/traefik-$VERSION.partial" ./cmd/traefik) >&2
mv ".tmp/bin/traefik-$VERSION.partial" "$OUT"
rm -rf "$SRC"
echo "$PWD/$OUT"

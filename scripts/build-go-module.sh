#!/usr/bin/env bash
# Build a pinned Go program from its module's source into .tmp/bin/<name>-<version>, once; print its path.
#
#   scripts/build-go-module.sh NAME MODULE VERSION PACKAGE [VERSION_FILE]
#
# For programs that `go install MODULE/PACKAGE@VERSION` cannot build: a module whose go.mod has replace
# directives (Traefik), or one whose build needs a file its own tooling generates (FerretDB's
# build/version/version.txt, written with VERSION when VERSION_FILE names it). The module source is fetched
# from the Go module proxy (checksummed by sum.golang.org), copied, and built as the main module; one build
# at a time (flock). The pinned versions live in the scripts that call this one.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 NAME MODULE VERSION PACKAGE [VERSION_FILE]" >&2; exit 2; }
NAME=$1 MODULE=$2 VERSION=$3 PACKAGE=$4 VERSION_FILE=${5:-}
cd "$(dirname "$0")/.."
OUT=".tmp/bin/$NAME-$VERSION"
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build $NAME: Go is needed to build it (apt-get install golang-go)" >&2; exit 1; }
mkdir -p .tmp/bin .tmp/src
exec 9>".tmp/$NAME-build.lock"
flock 9
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
MOD_DIR=$(cd .tmp && go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -d "$MOD_DIR" ] || { echo "build $NAME: downloading $MODULE@$VERSION failed" >&2; exit 1; }
SRC=".tmp/src/$NAME-$VERSION"
rm -rf "$SRC"
cp -r "$MOD_DIR" "$SRC"
chmod -R u+w "$SRC"
if [ -n "$VERSION_FILE" ]; then echo "$VERSION" > "$SRC/$VERSION_FILE"; fi
echo "building $NAME $VERSION from source (first use only)" >&2
(cd "$SRC" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$PWD/../../bin/$NAME-$VERSION.partial" "$PACKAGE") >&2
mv ".tmp/bin/$NAME-$VERSION.partial" "$OUT"
rm -rf "$SRC"
echo "$PWD/$OUT"

#!/usr/bin/env bash
# Build the pinned OpenTelemetry Collector the tracing tests export to into .tmp/bin/otelcol-<version>:
# the OTLP receiver (core) and the file exporter (contrib) of one release, nothing else, assembled by
# the collector's own builder (go.opentelemetry.io/collector/cmd/builder) from the Go module proxy
# (checksummed by sum.golang.org). Prints the binary's path.
#
# The pinned version lives here only (tests/support/otelcol.py calls this script). Two components
# keep the first build short; the full contrib distribution is several hundred modules.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v0.165.0
CONTRIB_VERSION=v0.165.1
OUT=".tmp/bin/otelcol-$VERSION"
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-otelcol: Go is needed to build the collector" >&2; exit 1; }
mkdir -p .tmp/bin .tmp/src
exec 9>.tmp/otelcol-build.lock
flock 9  # one build at a time
if [ -x "$OUT" ]; then echo "$PWD/$OUT"; exit 0; fi
SRC="$PWD/.tmp/src/otelcol-$VERSION"
rm -rf "$SRC"
mkdir -p "$SRC"
cat > "$SRC/builder.yaml" <<YAML
dist:
  name: otelcol-sessionvalidator
  description: OTLP in, JSON lines out, for SessionValidator's tracing tests
  output_path: $SRC/out
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver $VERSION
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter $CONTRIB_VERSION
YAML
echo "building the OpenTelemetry Collector $VERSION (first use only; a few minutes)" >&2
GOBIN="$SRC/gobin" go install "go.opentelemetry.io/collector/cmd/builder@$VERSION" >&2
(cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-trimpath ./gobin/builder --config builder.yaml) >&2
mv "$SRC/out/otelcol-sessionvalidator" "$OUT"
rm -rf "$SRC"
echo "$PWD/$OUT"

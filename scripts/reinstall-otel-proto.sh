#!/usr/bin/env bash
# Reinstall opentelemetry-proto last, with the lock's hashes: scripts/reinstall-otel-proto.sh PIP...
#   e.g. scripts/reinstall-otel-proto.sh .venv/bin/python -m pip
#        scripts/reinstall-otel-proto.sh /opt/build/bin/pip --python /opt/venv/bin/python
#
# xds-protos (Envoy's protos, for ext_authz) bundles an older copy of the OpenTelemetry protos under the same
# module paths as opentelemetry-proto (opentelemetry/proto/...). Whichever pip installs last wins, and pip's order
# is not fixed: with xds-protos last, the OTLP exporter cannot import its messages (InstrumentationScope). The
# newer copy serves both (Envoy's protos use only what it keeps).
set -euo pipefail
LOCK="$(cd "$(dirname "$0")/.." && pwd)/requirements/runtime.lock"
ENTRY=$(mktemp)
trap 'rm -f "$ENTRY"' EXIT
awk '/^opentelemetry-proto==/ {p = 1; print; next} p && /^ +--hash/ {print; next} {p = 0}' "$LOCK" > "$ENTRY"
grep -q '^opentelemetry-proto==' "$ENTRY" || { echo "reinstall-otel-proto: no opentelemetry-proto in $LOCK" >&2; exit 1; }
"$@" install --no-deps --force-reinstall --no-compile --require-hashes --only-binary=:all: -r "$ENTRY"

#!/usr/bin/env bash
# Build the pinned Traefik into .tmp/bin/traefik-<version>, for the gateway tier's live Traefik run
# (make test-traefik); print its path.
#
# `go install github.com/traefik/traefik/v3/cmd/traefik@<version>` is refused: Traefik's go.mod has replace
# directives, so it is built from source (scripts/build-go-module.sh). On the project's 2-core machine the
# first build took about 16 minutes under load (10 of CPU), which is why it is not part of make test.
set -euo pipefail
exec "$(dirname "$0")/build-go-module.sh" traefik github.com/traefik/traefik/v3 v3.6.4 ./cmd/traefik

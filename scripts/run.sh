#!/usr/bin/env bash
# `make run`: start SessionValidator for development on any machine.
#
# - Honours every SESSIONVALIDATOR_* variable.
# - When SESSIONVALIDATOR_REDIS_URL is unset (or the default) and nothing
#   answers there, starts a local redis-server (installing it if missing) and
#   stops it again on exit. Its data is kept in .tmp/redis (append-only file),
#   so minted sessions survive a restart of `make run` or of that Redis.
# - SESSIONVALIDATOR_STORE_URL=mongodb://host:27017/<db> runs against MongoDB
#   (connect-mongo's sessions); when it names 127.0.0.1 or localhost port
#   27017 and nothing answers there, starts a local FerretDB (the tests'
#   MongoDB-compatible server, built on first use) and stops it on exit.
# - When no secret is configured, uses a development secret kept in
#   .tmp/dev-secret (never use it in production).
# - Mints a ready session and prints the commands that check it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
DEFAULT_URL="redis://127.0.0.1:6379/0"
STORE_URL="${SESSIONVALIDATOR_STORE_URL:-}"
if [ -z "$STORE_URL" ]; then
  export SESSIONVALIDATOR_REDIS_URL="${SESSIONVALIDATOR_REDIS_URL:-$DEFAULT_URL}"
  STORE_URL="$SESSIONVALIDATOR_REDIS_URL"
fi
export SESSIONVALIDATOR_LISTEN="${SESSIONVALIDATOR_LISTEN:-[::]:50051}"
MONGO_PID=""
REDIS_PID=""
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "$MONGO_PID" ]; then kill "$MONGO_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

redis_answers() {
  "$PY" - "$STORE_URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=0.5, socket_timeout=0.5).ping()
except Exception:
    raise SystemExit(1)
PY
}

mongo_answers() {
  "$PY" - "$STORE_URL" <<'PY'
import sys, pymongo
try:
    with pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
        client.admin.command("ping")
except Exception:
    raise SystemExit(1)
PY
}

case "$STORE_URL" in
  mongodb://127.0.0.1:27017/*|mongodb://localhost:27017/*|mongodb://127.0.0.1:27017|mongodb://localhost:27017)
    if ! mongo_answers; then
      FERRETDB=$(scripts/build-ferretdb.sh)
      mkdir -p .tmp/ferretdb/data
      echo "run: nothing answers at $STORE_URL; starting a local FerretDB (MongoDB wire protocol, SQLite; stopped again on exit)" >&2
      "$FERRETDB" --handler=sqlite --sqlite-url="file:$PWD/.tmp/ferretdb/data/" --state-dir="$PWD/.tmp/ferretdb" \
        --listen-addr=127.0.0.1:27017 --debug-addr=- --telemetry=disable --log-level=warn \
        >>"$PWD/.tmp/ferretdb/ferretdb.log" 2>&1 &
      MONGO_PID=$!
      for _ in $(seq 1 100); do mongo_answers && break; sleep 0.1; done
      mongo_answers || { echo "run: FerretDB did not start; see .tmp/ferretdb/ferretdb.log" >&2; exit 1; }
    fi ;;
esac

if [ "$STORE_URL" = "$DEFAULT_URL" ] && ! redis_answers; then
  make --no-print-directory system-deps
  mkdir -p .tmp/redis
  echo "run: nothing answers at $DEFAULT_URL; starting a local redis-server (data kept in .tmp/redis, stopped again on exit)" >&2
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
    --dir "$PWD/.tmp/redis" --logfile "$PWD/.tmp/redis/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 1 100); do redis_answers && break; sleep 0.1; done
  redis_answers || { echo "run: redis-server did not start; see .tmp/redis/redis.log" >&2; exit 1; }
fi

if [ -z "${SESSIONVALIDATOR_SECRETS:-}" ] && [ -z "${SESSIONVALIDATOR_SECRETS_FILE:-}" ]; then
  mkdir -p .tmp
  if [ ! -s .tmp/dev-secret ]; then
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' > .tmp/dev-secret
    chmod 600 .tmp/dev-secret
  fi
  export SESSIONVALIDATOR_SECRETS_FILE="$PWD/.tmp/dev-secret"
  echo "run: no secret configured; using the DEVELOPMENT secret in .tmp/dev-secret (set SESSIONVALIDATOR_SECRETS for real use)" >&2
fi

GRPCURL_VERSION=$(sed -n 's/^GRPCURL_VERSION := //p' Makefile)
GHZ_VERSION=$(sed -n 's/^GHZ_VERSION = "\([^"]*\)".*/\1/p' bench/ghz.py)
COOKIE=$("$PY" -m sessionvalidator_service mint --user '{"id":"dev-user","username":"dev","roles":["developer"]}')
PORT="${SESSIONVALIDATOR_LISTEN##*:}"
HOST="${SESSIONVALIDATOR_LISTEN%:*}"
case "$HOST" in "[::]"|"0.0.0.0"|"") HOST=localhost ;; esac
TARGET="$HOST:$PORT"
cat >&2 <<MSG

A session is ready for user dev-user. Its Cookie header:

  $COOKIE

Check it:
  .venv/bin/sessionvalidator check --address $TARGET --cookie '$COOKIE'

More sessions (the development secret is found in .tmp/dev-secret):
  .venv/bin/sessionvalidator mint --user '{"id":"42","username":"ann"}'
  .venv/bin/sessionvalidator mint --anonymous      # a session without a logged-in user

With grpcurl and ghz (pinned; 'make grpcurl ghz' builds them into .tmp/bin with Go):
  .tmp/bin/grpcurl-$GRPCURL_VERSION -plaintext -d '{"cookie_header_text":"$COOKIE"}' $TARGET sessionvalidator.v1.SessionValidator/ValidateSession
  .tmp/bin/ghz-$GHZ_VERSION --insecure --call sessionvalidator.v1.SessionValidator/ValidateSession -d '{"cookie_header_text":"$COOKIE"}' -n 2000 -c 20 $TARGET

MSG

"$PY" -m sessionvalidator_service serve &
SERVER_PID=$!
trap 'kill -TERM "$SERVER_PID" 2>/dev/null || true' INT TERM
status=0
wait "$SERVER_PID" || status=$?
if [ "$status" -gt 128 ]; then
  # A trapped signal interrupted the wait, not the service: collect the
  # service's own exit status once it has drained.
  status=0
  wait "$SERVER_PID" || status=$?
fi
SERVER_PID=""
exit "$status"

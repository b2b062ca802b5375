#!/usr/bin/env bash
# `make run`: start SessionValidator for development on any machine.
#
# - Honours every SESSIONVALIDATOR_* variable.
# - The store is SESSIONVALIDATOR_STORE_URL (or the older _REDIS_URL), by
#   default redis://127.0.0.1:6379/0. When nothing answers there and the URL
#   is redis:// or mongodb:// on a free port of this machine (127.0.0.1,
#   localhost or [::1]), starts a local redis-server (installed with apt if
#   missing) or FerretDB (the tests' MongoDB-compatible server, built on first
#   use) on that port, and stops it again on exit. Its data is kept in
#   .tmp/redis-<port> (append-only file) or .tmp/ferretdb-<port>, so minted
#   sessions survive a restart of `make run` or of that store. When it cannot
#   start one, it says why and what to set.
# - When no secret is configured, uses a development secret kept in
#   .tmp/dev-secret (never use it in production).
# - Writes the settings it runs with to .tmp/run.env (removed again on exit;
#   the secret itself only as a file path), which
#   `sessionvalidator mint|check|healthcheck --env-file .tmp/run.env` read: a
#   second terminal reaches the same service and store.
# - Mints a ready session and prints the commands that check it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
RUN_ENV=.tmp/run.env
if [ -n "${SESSIONVALIDATOR_STORE_URL:-}" ] && [ -n "${SESSIONVALIDATOR_REDIS_URL:-}" ]; then
  echo "run: set SESSIONVALIDATOR_STORE_URL or its older name SESSIONVALIDATOR_REDIS_URL, not both" >&2
  exit 2
fi
export SESSIONVALIDATOR_STORE_URL="${SESSIONVALIDATOR_STORE_URL:-${SESSIONVALIDATOR_REDIS_URL:-redis://127.0.0.1:6379/0}}"
unset SESSIONVALIDATOR_REDIS_URL
export SESSIONVALIDATOR_LISTEN="${SESSIONVALIDATOR_LISTEN:-[::]:50051}"
STORE_PID=""
SERVER_PID=""
mkdir -p .tmp

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$STORE_PID" ]; then kill "$STORE_PID" 2>/dev/null || true; fi
  # Only our own file: another `make run` may have written its own since.
  if grep -qs "^# pid $$\$" "$RUN_ENV"; then rm -f "$RUN_ENV"; fi
}
trap cleanup EXIT

# Print, on one line: kind (redis, mongo or other), scheme, host, port, whether the
# host is this machine (1/0), whether the URL carries credentials (1/0), and the URL
# without its password.
store_facts() {
  "$PY" - "$SESSIONVALIDATOR_STORE_URL" <<'PY'
import ipaddress, sys
from urllib.parse import urlsplit
from sessionvalidator_service.config import redact_url
url = sys.argv[1]
parts = urlsplit(url)
kind = {"redis": "redis", "rediss": "redis", "unix": "redis", "mongodb": "mongo", "mongodb+srv": "mongo"}.get(parts.scheme, "other")
try:
    host = parts.hostname or ""
    port = parts.port or {"redis": 6379, "mongodb": 27017}.get(parts.scheme, 0)
except ValueError:  # several hosts (a replica set), or not a number
    host, port = "", 0
try:
    local = host == "localhost" or ipaddress.ip_address(host).is_loopback
except ValueError:
    local = False
creds = parts.username is not None or parts.password is not None or "password=" in parts.query
print(kind, parts.scheme, host or "-", port, int(local), int(creds), redact_url(url))
PY
}

# Exit 0 when the store answers a ping; else print why not (never a password).
store_problem() {
  "$PY" - "$SESSIONVALIDATOR_STORE_URL" "$KIND" <<'PY'
import sys
url, kind = sys.argv[1:]
try:
    if kind == "redis":
        import redis
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    else:
        import pymongo
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
            client.admin.command("ping")
except Exception as exc:
    print(str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0][:200] or type(exc).__name__)
    raise SystemExit(1)
PY
}

# Exit 1 when something listens on host:port already (port 0: print a free one).
port_free() {
  "$PY" - "$1" "$2" <<'PY'
import errno, socket, sys
host, port = sys.argv[1].strip("[]"), int(sys.argv[2])
host = {"localhost": "127.0.0.1", "-": "127.0.0.1", "": "0.0.0.0"}.get(host, host)
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
    try:
        sock.bind((host, port))
    except OSError as exc:  # only a taken port says no; anything else is for the server to report
        raise SystemExit(1 if exc.errno == errno.EADDRINUSE else 0)
    if port == 0:
        print(sock.getsockname()[1])
PY
}

wait_for_store() {  # $1: what was started, $2: its log
  for _ in $(seq 1 150); do store_problem >/dev/null && return 0; sleep 0.1; done
  echo "run: $1 did not answer at $SAFE_URL within 15 s; see $2" >&2
  exit 1
}

read -r KIND SCHEME HOST PORT LOCAL CREDS SAFE_URL < <(store_facts)
BIND_HOST="$HOST"
[ "$HOST" = localhost ] && BIND_HOST=127.0.0.1
if [ "$KIND" = other ]; then
  echo "run: using the store at $SAFE_URL (make run does not check or start a $SCHEME:// store)" >&2
elif PROBLEM=$(store_problem); then
  echo "run: using the store that answers at $SAFE_URL" >&2
elif [ "$LOCAL" = 1 ] && { [ "$SCHEME" = redis ] || [ "$SCHEME" = mongodb ]; }; then
  NAME=$([ "$KIND" = redis ] && echo Redis || echo MongoDB)
  if ! port_free "$HOST" "$PORT"; then
    echo "run: something listens on $HOST:$PORT but does not answer as $NAME at $SAFE_URL ($PROBLEM)." >&2
    echo "  Stop it, or set SESSIONVALIDATOR_STORE_URL to a free port (make run then starts one there)." >&2
    exit 1
  fi
  if [ "$CREDS" = 1 ]; then
    echo "run: nothing answers at $SAFE_URL, and make run does not start a store for a URL with credentials" >&2
    echo "  (it could not honour them). Start that $NAME yourself, or drop the user and password from the URL." >&2
    exit 1
  fi
  if [ "$KIND" = redis ]; then
    make --no-print-directory system-deps
    DATA=".tmp/redis-$PORT"
    mkdir -p "$DATA"
    echo "run: nothing answers at $SAFE_URL; starting a local redis-server on $HOST:$PORT (data kept in $DATA, stopped again on exit)" >&2
    redis-server --port "$PORT" --bind "$BIND_HOST" --save '' --appendonly yes --appendfsync always \
      --dir "$PWD/$DATA" --logfile "$PWD/$DATA/redis.log" &
    STORE_PID=$!
    wait_for_store redis-server "$DATA/redis.log"
  else
    FERRETDB=$(scripts/build-ferretdb.sh)
    DATA=".tmp/ferretdb-$PORT"
    mkdir -p "$DATA/data"
    LISTEN_ADDR="$BIND_HOST:$PORT"
    case "$BIND_HOST" in *:*) LISTEN_ADDR="[$BIND_HOST]:$PORT" ;; esac
    echo "run: nothing answers at $SAFE_URL; starting a local FerretDB (MongoDB wire protocol, SQLite) on $LISTEN_ADDR (data kept in $DATA, stopped again on exit)" >&2
    "$FERRETDB" --handler=sqlite --sqlite-url="file:$PWD/$DATA/data/" --state-dir="$PWD/$DATA" \
      --listen-addr="$LISTEN_ADDR" --debug-addr=- --telemetry=disable --log-level=warn \
      >>"$PWD/$DATA/ferretdb.log" 2>&1 &
    STORE_PID=$!
    wait_for_store FerretDB "$DATA/ferretdb.log"
  fi
else
  echo "run: nothing answers at $SAFE_URL ($PROBLEM)." >&2
  echo "  make run starts a store only for redis:// or mongodb:// on this machine (127.0.0.1, localhost, [::1])." >&2
  echo "  Start that store, or set SESSIONVALIDATOR_STORE_URL to one that runs (unset: a local Redis on 127.0.0.1:6379)." >&2
  exit 1
fi

if [ -z "${SESSIONVALIDATOR_SECRETS:-}" ] && [ -z "${SESSIONVALIDATOR_SECRETS_FILE:-}" ]; then
  if [ ! -s .tmp/dev-secret ]; then
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' > .tmp/dev-secret
    chmod 600 .tmp/dev-secret
  fi
  export SESSIONVALIDATOR_SECRETS_FILE="$PWD/.tmp/dev-secret"
  echo "run: no secret configured; using the DEVELOPMENT secret in .tmp/dev-secret (set SESSIONVALIDATOR_SECRETS for real use)" >&2
fi

# The service's port: a fixed one, so that the second terminal can find it.
LISTEN_PORT="${SESSIONVALIDATOR_LISTEN##*:}"
LISTEN_HOST="${SESSIONVALIDATOR_LISTEN%:*}"
if [ "$LISTEN_PORT" = 0 ]; then
  LISTEN_PORT=$(port_free "$LISTEN_HOST" 0)
  export SESSIONVALIDATOR_LISTEN="$LISTEN_HOST:$LISTEN_PORT"
fi
case "$LISTEN_HOST" in "[::]"|"0.0.0.0"|"") TARGET="localhost:$LISTEN_PORT" ;; *) TARGET="$LISTEN_HOST:$LISTEN_PORT" ;; esac
if [ -z "${SESSIONVALIDATOR_WORKERS:-}" ] && ! port_free "$LISTEN_HOST" "$LISTEN_PORT"; then
  echo "run: port $LISTEN_PORT is taken (another make run?); set SESSIONVALIDATOR_LISTEN to a free one, such as [::]:50052" >&2
  exit 1
fi

# What a second terminal needs: every SESSIONVALIDATOR_* setting but an inline secret.
"$PY" - "$RUN_ENV" "$$" <<'PY'
import os, sys
path, pid = sys.argv[1:]
lines = [
    f"# pid {pid}",
    "# Written by make run (scripts/run.sh) and removed when it stops: the settings it runs with.",
    "# sessionvalidator mint|check|healthcheck --env-file .tmp/run.env reach the same store and service.",
]
lines += sorted(
    f"{name}={value}"
    for name, value in os.environ.items()
    if name.startswith("SESSIONVALIDATOR_") and name != "SESSIONVALIDATOR_SECRETS" and "\n" not in value
)
fd = os.open(f"{path}.{pid}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the URL may hold a password
with os.fdopen(fd, "w", encoding="utf-8") as out:
    out.write("\n".join(lines) + "\n")
os.replace(f"{path}.{pid}", path)
PY
if [ -n "${SESSIONVALIDATOR_SECRETS:-}" ]; then
  echo "run: SESSIONVALIDATOR_SECRETS is not written to $RUN_ENV: set it in the second terminal too (or use _SECRETS_FILE)" >&2
fi

GRPCURL_VERSION=$(sed -n 's/^GRPCURL_VERSION := //p' Makefile)
GHZ_VERSION=$(sed -n 's/^GHZ_VERSION = "\([^"]*\)".*/\1/p' bench/ghz.py)
COOKIE=$("$PY" -m sessionvalidator_service mint --user '{"id":"dev-user","username":"dev","roles":["developer"]}')
cat >&2 <<MSG

A session is ready for user dev-user (store $SAFE_URL, service $TARGET). Its Cookie header:

  $COOKIE

Check it:
  .venv/bin/sessionvalidator check --env-file $RUN_ENV --cookie '$COOKIE'

More sessions ($RUN_ENV holds this run's store, service and secret file):
  .venv/bin/sessionvalidator mint --env-file $RUN_ENV --user '{"id":"42","username":"ann"}'
  .venv/bin/sessionvalidator mint --env-file $RUN_ENV --anonymous      # a session without a logged-in user

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

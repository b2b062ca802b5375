"""Run a command against a live SessionValidator seeded with the shared vectors.

    python tests/harness.py -- go test ./...

Starts a real redis-server and the real service on free ports, seeds the
sessions and users of tests/vectors/validate_session.json, and runs the
command with:

* ``SESSIONVALIDATOR_TEST_ADDR``: host:port of the seeded service;
* ``SESSIONVALIDATOR_TEST_DOWN_ADDR``: host:port of a service whose store is
  unreachable (every ValidateSession call fails with UNAVAILABLE);
* ``SESSIONVALIDATOR_TEST_VECTORS``: the vector file's absolute path;
* ``SESSIONVALIDATOR_TEST_LIMITED_ADDR``: a seeded service whose rate limit
  is 1 bad attempt a minute (burst 1), so a second bad cookie from this host
  is RESOURCE_EXHAUSTED;
* ``SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR``: host:port where nothing listens;
* ``SESSIONVALIDATOR_TEST_CONFORMANCE``: tests/vectors/client_conformance.json;
* ``SESSIONVALIDATOR_TEST_TOKENS``: a JSON file for the session-token tests:
  ``jwks_url`` (the seeded service's ``/.well-known/jwks.json``), ``issuer``,
  ``audience``, and ``refused``, tokens signed with the service's own key (or
  none) that a verifier must refuse (tests/support/token_vectors.py). The
  seeded service issues tokens when a request asks (``issue_token``).

Exits with the command's status; everything it started is stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import RedisServer, ValidatorProcess, free_port
from tests.support.token_vectors import AUDIENCE, ISSUER, refused_tokens, write_key

VECTORS = Path(__file__).resolve().parent / "vectors" / "validate_session.json"
CONFORMANCE = VECTORS.with_name("client_conformance.json")


def seed(server: RedisServer, corpus: dict[str, Any]) -> None:
    """Write the corpus's sessions and user records into ``server`` as connect-redis would."""
    seed_client(server.client(), corpus)


def seed_client(client: Any, corpus: dict[str, Any]) -> None:
    """Write the corpus's sessions and user records through ``client``."""
    for session in corpus["sessions"]:
        if session.get("type") == "hash":  # something other than a session under a session key
            client.hset(session["key"], mapping=session["value"])
            if session["ttl_s"] is not None:
                client.expire(session["key"], session["ttl_s"])
        else:
            client.set(session["key"], session["value"].encode("utf-8"), ex=session["ttl_s"])
    for user in corpus["users"]:
        if user["type"] == "hash":
            client.hset(user["key"], mapping=user["value"])
        else:
            client.set(user["key"], user["value"])


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    corpus = json.loads(VECTORS.read_text(encoding="utf-8"))
    redis_server = RedisServer().start()
    live = down = limited = None
    keys = tempfile.TemporaryDirectory(prefix="sessionvalidator-harness-")
    try:
        seed(redis_server, corpus)
        settings = corpus["settings"]
        key_file = write_key(Path(keys.name) / "signing.pem")
        live = ValidatorProcess(
            {
                **settings,
                "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
                "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
                "SESSIONVALIDATOR_JWT_KEY_FILE": key_file,
                "SESSIONVALIDATOR_JWT_ISSUER": ISSUER,
                "SESSIONVALIDATOR_JWT_AUDIENCE": AUDIENCE,
            }
        ).start()
        live.wait_ready()
        assert live.output is not None
        serving = next(r for r in live.output.json_lines() if r.get("event") == "serving")
        tokens = Path(keys.name) / "tokens.json"
        tokens.write_text(
            json.dumps(
                {
                    "jwks_url": f"http://127.0.0.1:{serving['http_port']}/.well-known/jwks.json",
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "refused": refused_tokens(key_file, write_key(Path(keys.name) / "removed.pem")),
                }
            ),
            encoding="utf-8",
        )
        down = ValidatorProcess(
            {**settings, "SESSIONVALIDATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        ).start()
        limited = ValidatorProcess(
            {
                **settings,
                "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
                "SESSIONVALIDATOR_RATE_LIMIT": "1/m",
                "SESSIONVALIDATOR_RATE_LIMIT_BURST": "1",
            }
        ).start()
        limited.wait_ready()
        env = {
            **os.environ,
            "SESSIONVALIDATOR_TEST_ADDR": live.address,
            "SESSIONVALIDATOR_TEST_DOWN_ADDR": down.address,
            "SESSIONVALIDATOR_TEST_VECTORS": str(VECTORS),
            "SESSIONVALIDATOR_TEST_LIMITED_ADDR": limited.address,
            "SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR": f"127.0.0.1:{free_port()}",
            "SESSIONVALIDATOR_TEST_CONFORMANCE": str(CONFORMANCE),
            "SESSIONVALIDATOR_TEST_TOKENS": str(tokens),
        }
        return subprocess.call(command, env=env)
    finally:
        for validator in (live, down, limited):
            if validator is not None:
                validator.close()
        redis_server.close()
        keys.cleanup()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

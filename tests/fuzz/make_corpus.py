"""Write the committed seed corpora, tests/fuzz/corpus/<target>/, from tests/vectors/*.json.

    .venv/bin/python tests/fuzz/make_corpus.py

Seeds are small (under 4 KiB) and named after the vector they come from, so a
crash on a seed is easy to trace. Re-run after changing the vectors; the
output is deterministic.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sessionvalidator_service.mint import mint_session  # noqa: E402
from sessionvalidator_service.signature import Signer  # noqa: E402
from tests.conftest import load_vectors  # noqa: E402
from tests.fuzz.fuzzing import CORPUS, NEST  # noqa: E402

MAX_SEED = 4096
MINT_NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def cookie_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for case in load_vectors("express_cookie.json")["headers"]:
        raw = bytes.fromhex(case["header_hex"]) if "header_hex" in case else case["header"].encode("latin-1")
        seeds[f"express-{case['name']}"] = raw
    for case in load_vectors("validate_session.json")["cases"]:
        request = case["request"]
        if "cookie_header_b64" in request:
            raw = base64.b64decode(request["cookie_header_b64"])
        elif request:
            raw = next(iter(request.values())).encode("utf-8")
        else:
            raw = b""
        seeds[f"service-{case['name']}"] = raw
    return seeds


def stored_seeds() -> dict[str, bytes]:
    # Sessions stored as strings (a session seeded as a hash is the WRONGTYPE case, not JSON).
    seeds = {
        f"session-{s['sid']}": s["value"].encode("utf-8")
        for s in load_vectors("validate_session.json")["sessions"]
        if isinstance(s["value"], str)
    }
    signer = Signer(["seed secret"])
    minted = {
        "anonymous": mint_session(signer, now=MINT_NOW),
        "scalar-user": mint_session(signer, user="6512bd43d9caa6e02c990b0a", now=MINT_NOW),
        "number-user": mint_session(signer, user=42, now=MINT_NOW),
        "object-user": mint_session(signer, user={"id": 1, "username": "ann", "roles": ["a"]}, now=MINT_NOW),
        "browser-session": mint_session(signer, user="7", max_age_s=None, now=MINT_NOW),
        "extra-fields": mint_session(signer, user=0, extra={"views": 3, "flash": {"info": ["hi"]}}, now=MINT_NOW),
    }
    seeds.update({f"mint-{name}": m.stored_json.encode("utf-8") for name, m in minted.items()})
    seeds["edge-lone-surrogate"] = b'{"cookie":{"expires":null},"passport":{"user":"\\ud800"}}'
    seeds["edge-huge-number"] = b'{"cookie":{"expires":null},"passport":{"user":{"id":1e400}}}'
    # Nesting requests (fuzzing.expand): 0xFF, depth, wrapper, payload.
    seeds["nest-arrays-3"] = bytes([NEST, 0, 3, 0]) + b"1"
    seeds["nest-session-5"] = bytes([NEST, 0, 5, 1]) + b'{"cookie":{},"passport":{"user":"42"}}'
    return seeds


def profile_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for user in load_vectors("validate_session.json")["users"]:
        name = user["key"].replace(":", "-")
        if user["type"] == "hash":
            seeds[f"hash-{name}"] = b"\x00".join(
                part.encode("utf-8") for pair in user["value"].items() for part in pair
            )
        else:
            seeds[f"string-{name}"] = user["value"].encode("utf-8")
    for session in load_vectors("validate_session.json")["sessions"]:
        try:
            passport = json.loads(session["value"]).get("passport", {})
        except (TypeError, ValueError, AttributeError):
            continue
        if "user" in passport:
            seeds[f"passport-{session['sid']}"] = json.dumps(passport["user"]).encode("utf-8")
    seeds["emails-list"] = b'{"id":"u","emails":[{"value":"a@b.c"}],"roles":"[\\"x\\",\\"y\\"]"}'
    seeds["numbers"] = b'{"id":12345678901234567890,"score":1.5e300,"n":-0.0}'
    seeds["nest-record-4"] = bytes([NEST, 0, 4, 2]) + b'{"id":"n","username":"deep"}'
    return seeds


def main() -> None:
    for target, seeds in (("cookie", cookie_seeds()), ("stored", stored_seeds()), ("profile", profile_seeds())):
        directory = CORPUS / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        written = 0
        for name, data in sorted(seeds.items()):
            if len(data) <= MAX_SEED:
                (directory / re.sub(r"[^A-Za-z0-9._-]", "_", name)).write_bytes(data)
                written += 1
        print(f"{directory.relative_to(ROOT)}: {written} seeds")


if __name__ == "__main__":
    main()

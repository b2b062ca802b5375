"""Send every case of tests/vectors/validate_session.json to a running validator.

    .venv/bin/python bench/reference/check_vectors.py HOST:PORT [VECTORS.json]

The validator must already run with the corpus's settings against a Redis
seeded with its sessions and users (run_vectors.py does all of that). Compares
verdict, reason and every field present in each case's ``expect``; prints a
line per mismatch and ``N passed, M failed``; exits 1 if any case failed.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc

DEFAULT_VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "validate_session.json"
USER_FIELDS = ("id", "username", "display_name", "email", "roles")


def build_request(spec: dict[str, Any]) -> pb.ValidateSessionRequest:
    if "cookie_header_text" in spec:
        return pb.ValidateSessionRequest(cookie_header_text=spec["cookie_header_text"])
    if "cookie_header_b64" in spec:
        return pb.ValidateSessionRequest(cookie_header=base64.b64decode(spec["cookie_header_b64"]))
    if "cookie_header" in spec:  # not used by the corpus today; accept latin-1 text
        return pb.ValidateSessionRequest(cookie_header=spec["cookie_header"].encode("latin-1"))
    if "signed_value" in spec:
        return pb.ValidateSessionRequest(signed_value=spec["signed_value"])
    if spec:
        msg = f"unknown request form: {sorted(spec)}"
        raise ValueError(msg)
    return pb.ValidateSessionRequest()


def compare(expect: dict[str, Any], got: pb.ValidateSessionResponse) -> list[str]:
    problems: list[str] = []

    def check(field: str, want: Any, have: Any) -> None:
        if want != have:
            problems.append(f"{field}: want {want!r}, got {have!r}")

    check("verdict", expect["verdict"], pb.Verdict.Name(got.verdict))
    check("reason", expect["reason"], pb.Reason.Name(got.reason))
    if "session_id" in expect:
        check("session_id", expect["session_id"], got.session_id)
    if "authenticated" in expect:
        check("authenticated", expect["authenticated"], got.authenticated)
    if "secret_index" in expect:
        check("secret_index", expect["secret_index"], got.secret_index if got.HasField("secret_index") else None)
    if "has_expire_time" in expect:
        check("has_expire_time", expect["has_expire_time"], got.HasField("expire_time"))
    if "user" in expect:
        want_user = expect["user"]
        if not got.HasField("user"):
            problems.append(f"user: want {want_user!r}, got no user")
        else:
            for field in USER_FIELDS:
                if field in want_user:
                    have = getattr(got.user, field)
                    check(f"user.{field}", want_user[field], list(have) if field == "roles" else have)
        unknown = set(want_user) - set(USER_FIELDS)
        if unknown:
            problems.append(f"user: expectation has fields this checker does not know: {sorted(unknown)}")
    known = {"verdict", "reason", "session_id", "authenticated", "secret_index", "has_expire_time", "user"}
    unknown = set(expect) - known
    if unknown:
        problems.append(f"expectation has fields this checker does not know: {sorted(unknown)}")
    return problems


def run(address: str, vectors: Path) -> int:
    corpus = json.loads(vectors.read_text(encoding="utf-8"))
    passed = failed = 0
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = session_validator_service_pb2_grpc.SessionValidatorStub(channel)
        for case in corpus["cases"]:
            name = case["name"]
            try:
                response = stub.ValidateSession(build_request(case["request"]), timeout=5)
            except grpc.RpcError as exc:
                failed += 1
                print(f"FAIL {name}: call failed: {exc.code().name} {exc.details()}")
                continue
            problems = compare(case["expect"], response)
            if problems:
                failed += 1
                for problem in problems:
                    print(f"FAIL {name}: {problem}")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    vectors = Path(argv[1]) if len(argv) == 2 else DEFAULT_VECTORS
    return run(argv[0], vectors)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

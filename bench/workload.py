"""The load workload: sessions minted into Redis as connect-redis writes them, and a mixed set of cookies.

    .venv/bin/python bench/workload.py --redis-url redis://127.0.0.1:6379/0 --secrets '["s1"]' --out DIR

The mix, of ``sessions / 0.8`` requests (2,500 for the default 2,000 sessions):

* 80 % valid: logged-in sessions (Passport user as a whole record, a string
  id or a numeric id), some among other cookies, some signed with the
  previous secret when two or more are configured (rotation);
* 8 % bad signature: a tampered signature, a tampered session id, or an
  unknown secret;
* 6 % missing or logged out: half signed but destroyed (never in Redis,
  MISSING), half logged out (Passport user removed: VALID, anonymous);
* 6 % malformed: unsigned values and garbage (MALFORMED).

Every case carries the verdict it must get; :func:`check_verdicts` asks a
server for all of them so a misconfigured peer cannot look fast by failing.
The ghz data files are JSON arrays (ghz sends them round-robin), shuffled
with a fixed seed; the batch file holds ``{"requests": [16 credentials]}``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from sessionvalidator_service.mint import encode_uri_component, mint_session
from sessionvalidator_service.signature import Signer

VALID_SHARE = 0.80
BAD_SIGNATURE_SHARE = 0.08
MISSING_SHARE = 0.06  # the rest (6 %) is malformed
USERS = 500
MAX_AGE_S = 3600.0
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True, slots=True)
class Case:
    """One request of the workload and the answer it must get."""

    kind: str
    request: dict[str, str]
    verdict: str
    authenticated: bool


@dataclass(frozen=True, slots=True)
class Workload:
    """The shuffled cases and the Redis keys written for them."""

    cases: list[Case]
    keys: list[str]

    def distribution(self) -> Counter[str]:
        """How many cases of each kind."""
        return Counter(case.kind for case in self.cases)


@dataclass(frozen=True, slots=True)
class WorkloadFiles:
    """The ghz data files."""

    single: Path
    batch: Path


def _sid(rng: random.Random) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(24)).rstrip(b"=").decode("ascii")


def _user(rng: random.Random) -> Any:
    """Pick what serializeUser stored: a whole record (50 %), a string id (35 %) or a number (15 %)."""
    n = rng.randrange(USERS)
    roll = rng.random()
    if roll < 0.50:
        roles = ["user", "admin"] if n % 10 == 0 else ["user"]
        return {
            "id": str(1000 + n),
            "username": f"user{n}",
            "displayName": f"User {n}",
            "email": f"u{n}@example.com",
            "roles": roles,
        }
    if roll < 0.85:
        return str(1000 + n)
    return 1000 + n


def _header(rng: random.Random, cookie_name: str, value: str) -> str:
    """Build the Cookie header: the cookie alone (70 %) or among other cookies, as browsers send it."""
    if rng.random() < 0.70:
        return f"{cookie_name}={value}"
    return f"_ga=GA1.2.{rng.randrange(10**9)}.{rng.randrange(10**9)}; {cookie_name}={value}; theme=dark"


def _tamper(text: str, index: int, rng: random.Random) -> str:
    alphabet = _B64.replace(text[index], "")
    return text[:index] + rng.choice(alphabet) + text[index + 1 :]


def _case(kind: str, header: str, verdict: str, *, authenticated: bool = False) -> Case:
    return Case(kind, {"cookie_header_text": header}, verdict, authenticated)


def build(
    client: redis.Redis,
    secrets: Sequence[str],
    *,
    cookie_name: str = "connect.sid",
    key_prefix: str = "sess:",
    sessions: int = 2000,
    seed: int = 1,
    mongo_sessions: Any = None,
) -> Workload:
    """Mint the sessions into Redis (pipelined) and return the shuffled workload.

    ``mongo_sessions``, a pymongo collection, receives the same sessions as
    connect-mongo writes them (``{_id, session: <JSON text>, expires}``).
    """
    rng = random.Random(seed)
    signers = [Signer([secret]) for secret in secrets]  # one per secret: rotation signs with an older one
    stranger = Signer(["not-a-configured-secret"])
    total = round(sessions / VALID_SHARE)
    n_bad = round(total * BAD_SIGNATURE_SHARE)
    n_missing = round(total * MISSING_SHARE)
    n_malformed = total - sessions - n_bad - n_missing
    stored: list[tuple[str, str, int | None]] = []
    cases: list[Case] = []
    valid_sids: list[str] = []

    for _ in range(sessions):
        signer = signers[1] if len(signers) > 1 and rng.random() < 0.10 else signers[0]
        minted = mint_session(signer, user=_user(rng), max_age_s=MAX_AGE_S, session_id=_sid(rng))
        stored.append((minted.session_id, minted.stored_json, minted.ttl_s))
        valid_sids.append(minted.session_id)
        cases.append(
            _case("valid", _header(rng, cookie_name, minted.cookie_value), "VERDICT_VALID", authenticated=True)
        )

    for index in range(n_missing):
        if index % 2 == 0:  # logged out: req.logout() left "passport": {} in a live session
            minted = mint_session(signers[0], max_age_s=MAX_AGE_S, session_id=_sid(rng), extra={"passport": {}})
            stored.append((minted.session_id, minted.stored_json, minted.ttl_s))
            cases.append(_case("logged_out", _header(rng, cookie_name, minted.cookie_value), "VERDICT_VALID"))
        else:  # signed, but destroyed (never stored)
            value = encode_uri_component("s:" + signers[0].sign(_sid(rng)))
            cases.append(_case("destroyed", _header(rng, cookie_name, value), "VERDICT_MISSING"))

    for index in range(n_bad):
        sid = rng.choice(valid_sids)
        signed = signers[0].sign(sid)
        if index % 3 == 0:  # a character of the signature changed
            signed = _tamper(signed, len(sid) + 1 + rng.randrange(43), rng)
        elif index % 3 == 1:  # a character of the session id changed, signature kept
            signed = _tamper(signed, rng.randrange(len(sid)), rng)
        else:  # signed with a secret the server does not know
            signed = stranger.sign(sid)
        cases.append(
            _case(
                "bad_signature", _header(rng, cookie_name, encode_uri_component("s:" + signed)), "VERDICT_BAD_SIGNATURE"
            )
        )

    for index in range(n_malformed):
        sid = _sid(rng)
        garbage = [
            sid,  # unsigned, as express-session would never issue
            f"s{sid}.{sid}",  # no "s:" prefix
            f"%E0%A4%A{sid[:8]}",  # a broken escape: decoding fails, the raw value is kept
            "j%3A" + quote(json.dumps({"cart": rng.randrange(100)}), safe=""),  # a JSON cookie
        ][index % 4]
        cases.append(_case("malformed", f"{cookie_name}={garbage}", "VERDICT_MALFORMED"))

    pipe = client.pipeline(transaction=False)
    for sid, value, ttl in stored:
        pipe.set(key_prefix + sid, value.encode("utf-8"), ex=ttl)
    pipe.execute()
    if mongo_sessions is not None:
        now = datetime.now(UTC)
        documents = [
            {"_id": sid, "session": value, "expires": now + timedelta(seconds=ttl or 1209600)}
            for sid, value, ttl in stored
        ]
        for start in range(0, len(documents), 1000):
            mongo_sessions.insert_many(documents[start : start + 1000])
    rng.shuffle(cases)
    return Workload(cases, [key_prefix + sid for sid, _, _ in stored])


def delete_keys(client: redis.Redis, keys: Sequence[str]) -> None:
    """Remove the sessions :func:`build` wrote."""
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def batches(cases: Sequence[Case], size: int) -> Iterator[list[Case]]:
    """Yield the cases in groups of ``size``, wrapping around so every group is full."""
    count = -(-len(cases) // size)
    for index in range(count):
        yield [cases[(index * size + i) % len(cases)] for i in range(size)]


def write_files(directory: Path, workload: Workload, batch_size: int = 16) -> WorkloadFiles:
    """Write the ghz data files (JSON arrays, sent round-robin)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = WorkloadFiles(directory / "single.json", directory / "batch.json")
    files.single.write_text(json.dumps([case.request for case in workload.cases]), encoding="utf-8")
    batch = [{"requests": [case.request for case in group]} for group in batches(workload.cases, batch_size)]
    files.batch.write_text(json.dumps(batch), encoding="utf-8")
    (directory / "expected.json").write_text(
        json.dumps([{"kind": c.kind, "verdict": c.verdict, "authenticated": c.authenticated} for c in workload.cases]),
        encoding="utf-8",
    )
    return files


class VerdictMismatchError(RuntimeError):
    """A server answered the workload with verdicts other than the expected ones."""


def check_verdicts(
    address: str,
    cases: Sequence[Case],
    *,
    batch_size: int = 0,
    channels: int = 4,
    window_size: int = 32,
    retries: int = 2,
) -> Counter[str]:
    """Send every case once (``window_size`` in flight over ``channels`` connections); require the expected verdicts.

    With ``batch_size`` the cases go through ValidateSessions in groups. Returns
    the verdict distribution (``VERDICT_VALID+auth`` counts logged-in answers).
    """
    import grpc
    from google.protobuf import json_format

    from sessionvalidator.v1 import session_validator_service_pb2 as pb
    from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc

    requests = [json_format.ParseDict(case.request, pb.ValidateSessionRequest()) for case in cases]
    step = batch_size or 1
    groups = [requests[start : start + step] for start in range(0, len(requests), step)]
    opened = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)]
    stubs = [pb_grpc.SessionValidatorStub(channel) for channel in opened]

    def send(index: int) -> Any:
        stub = stubs[index % channels]
        if batch_size:
            return stub.ValidateSessions.future(pb.ValidateSessionsRequest(requests=groups[index]), timeout=10)
        return stub.ValidateSession.future(groups[index][0], timeout=10)

    def receive(index: int, call: Any) -> list[pb.ValidateSessionResponse]:
        for attempt in range(retries + 1):
            try:
                answer = call.result()
            except grpc.RpcError as exc:
                # UNAVAILABLE is retryable by contract (a store hiccup on a busy box); anything else is final.
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == retries:
                    msg = f"{address}: a call failed: {exc.code().name} {exc.details()}"
                    raise VerdictMismatchError(msg) from None
                time.sleep(0.05)
                call = send(index)
            else:
                return list(answer.responses) if batch_size else [answer]
        raise AssertionError  # unreachable: the loop returns or raises

    answers: list[pb.ValidateSessionResponse] = []
    try:
        for first in range(0, len(groups), window_size):
            window = [(index, send(index)) for index in range(first, min(first + window_size, len(groups)))]
            for index, call in window:
                answers += receive(index, call)
    finally:
        for channel in opened:
            channel.close()
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    for case, answer in zip(cases, answers, strict=True):
        verdict = pb.Verdict.Name(answer.verdict)
        tally[verdict + ("+auth" if answer.authenticated else "")] += 1
        if verdict != case.verdict or answer.authenticated != case.authenticated:
            reason = pb.Reason.Name(answer.reason)
            wrong.append(
                f"{case.kind}: want {case.verdict} auth={case.authenticated}, "
                f"got {verdict} ({reason}) auth={answer.authenticated}"
            )
    if wrong:
        examples = "\n  ".join(wrong[:5])
        msg = f"{address}: {len(wrong)} of {len(cases)} answers differ from the workload's verdicts, e.g.\n  {examples}"
        raise VerdictMismatchError(msg)
    return tally


def describe(tally: Counter[str]) -> str:
    """``VERDICT_VALID+auth 80.0 %, ...``."""
    total = sum(tally.values()) or 1
    return ", ".join(f"{name.removeprefix('VERDICT_')} {100 * n / total:.1f} %" for name, n in tally.most_common())


def main(argv: Sequence[str] | None = None) -> int:
    """Mint into a Redis and write the data files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--secrets", required=True, help="a JSON array of secrets, current first")
    parser.add_argument("--cookie-name", default="connect.sid")
    parser.add_argument("--key-prefix", default="sess:")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="directory for single.json, batch.json, expected.json")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url)
    workload = build(
        client,
        json.loads(args.secrets),
        cookie_name=args.cookie_name,
        key_prefix=args.key_prefix,
        sessions=args.sessions,
        seed=args.seed,
    )
    files = write_files(args.out, workload, args.batch_size)
    print(f"{len(workload.cases)} requests {dict(workload.distribution())}, {len(workload.keys)} sessions written")
    print(f"{files.single}\n{files.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

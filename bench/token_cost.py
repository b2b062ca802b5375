"""What a session token adds to one ValidateSession call, measured in-process.

    .venv/bin/python bench/token_cost.py [--sessions 2000] [--calls 50000] [--rounds 7] [--algorithm EdDSA]

The servicer's ValidateSession handler runs on an in-memory store (no network,
no gRPC framing: the handler's own cost), over bench/workload.py's mix (80 %
valid logged-in sessions, each used many times, as in ``make bench``), with
``issue_token`` off and on in alternating rounds. Printed: the median cost per
call of each, their difference (the per-call cost of tokens at the bench's hit
rate), the token cache's hit rate, and what one signature costs (a miss).
Medians of alternating rounds, because the machine is shared; the load average
is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.profile import Profile
from sessionvalidator_service.servicer import SessionValidatorServicer
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.stores.memory import MemoryStore
from sessionvalidator_service.tokens import TokenConfig, TokenIssuer, load_keys, new_private_key_pem
from sessionvalidator_service.validator import Validator

SECRET = "token cost benchmark: a secret comfortably over 32 bytes"  # noqa: S105 - a benchmark secret
VALID_SHARE = 0.8


def workload(store: MemoryStore, sessions: int) -> list[pb.ValidateSessionRequest]:
    """Valid logged-in sessions, and one bad-signature cookie for every four of them (80 % valid)."""
    signer = Signer((SECRET,))
    requests = []
    for index in range(sessions):
        minted = mint_session(signer, user={"id": f"u-{index}", "username": f"user{index}", "roles": ["a"]})
        asyncio.get_event_loop().run_until_complete(
            store.write_session(minted.session_id, minted.stored_json, ttl_s=minted.ttl_s)
        )
        requests.append(pb.ValidateSessionRequest(cookie_header_text=minted.cookie_header("connect.sid")))
    bad = [
        pb.ValidateSessionRequest(
            cookie_header_text=f"connect.sid=s%3Aforged{i}.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        )
        for i in range(round(sessions * (1 - VALID_SHARE) / VALID_SHARE))
    ]
    mixed = requests + bad
    # A fixed interleaving, so each round sees the same order.
    return [mixed[(i * 7919) % len(mixed)] for i in range(len(mixed))]


async def timed_round(servicer: SessionValidatorServicer, requests: list[Any], calls: int) -> float:
    """Seconds per call over ``calls`` calls cycling through ``requests``."""
    context: Any = None  # unused: no rate limit, so no caller identity is read
    count = len(requests)
    started = time.perf_counter()
    for i in range(calls):
        await servicer.ValidateSession(requests[i % count], context)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--algorithm", default="EdDSA", choices=("EdDSA", "ES256", "RS256"))
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the validator logs refused cookies; not what is measured

    with tempfile.TemporaryDirectory() as directory:
        key = Path(directory) / "signing.pem"
        key.write_bytes(new_private_key_pem(args.algorithm))
        config = TokenConfig(str(key), "https://bench.example", "bench")
        tokens = TokenIssuer(config, load_keys(config))
    store = MemoryStore()
    requests = workload(store, args.sessions)
    asking = []
    for request in requests:
        copy = pb.ValidateSessionRequest()
        copy.CopyFrom(request)
        copy.issue_token = True
        asking.append(copy)
    validator = Validator(
        secrets=(SECRET,), store=store, cookie_name="connect.sid", metrics=Metrics(CollectorRegistry())
    )
    servicer = SessionValidatorServicer(validator, metrics=Metrics(CollectorRegistry()), identify=False, tokens=tokens)
    loop = asyncio.get_event_loop()
    loop.run_until_complete(timed_round(servicer, asking, len(asking)))  # warm every cache once
    plain: list[float] = []
    with_token: list[float] = []
    signed_before = tokens.signed
    for _ in range(args.rounds):
        plain.append(loop.run_until_complete(timed_round(servicer, requests, args.calls)))
        with_token.append(loop.run_until_complete(timed_round(servicer, asking, args.calls)))
    valid_calls = args.rounds * args.calls * VALID_SHARE
    misses = tokens.signed - signed_before

    profile = Profile(id="u-1", username="user1", roles=("a",))
    tag = validator.hasher
    sign_times = []
    for _ in range(200):
        tokens.use_keys(tokens.keys)  # an empty cache: every call signs
        started = time.perf_counter()
        tokens.token("sid", profile, None, tag)
        sign_times.append(time.perf_counter() - started)
    load = os.getloadavg()
    p, t = statistics.median(plain), statistics.median(with_token)
    print(f"algorithm {args.algorithm}, {args.sessions} sessions, {args.calls} calls x {args.rounds} rounds")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"ValidateSession handler, issue_token off: {p * 1e6:.2f} us/call (rounds: {_us(plain)})")
    print(f"ValidateSession handler, issue_token on:  {t * 1e6:.2f} us/call (rounds: {_us(with_token)})")
    print(f"added per call: {(t - p) * 1e6:.2f} us (median of rounds; valid calls get a token, 80 %)")
    print(
        f"token cache: {misses} signatures for {valid_calls:.0f} valid calls (hit rate {1 - misses / valid_calls:.4%})"
    )
    print(f"one signature (a miss): median {statistics.median(sign_times) * 1e6:.1f} us")


def _us(values: list[float]) -> str:
    return " ".join(f"{v * 1e6:.1f}" for v in values)


if __name__ == "__main__":
    main()

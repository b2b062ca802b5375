"""SIGTERM under load: every call the service had in hand is answered, new connections refused, exit 0."""

from __future__ import annotations

import collections
import itertools
import signal
import time

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.faults.support import (
    NOT_SERVING,
    SERVING,
    SETTINGS,
    Cookie,
    HealthWatch,
    LoadThreads,
    Outcome,
    call_once,
    delay_proxy,
    internal_errors,
    mint_cookies,
    new_channel,
    tampered,
)
from tests.support.processes import RedisServer, running_validator

pytestmark = pytest.mark.integration

GRACE_S = 5
REDIS_DELAY_S = 0.6  # every lookup takes this long, so calls are still in flight when a new connection is tried
THREADS = 16


def judge(outcomes: list[Outcome], by_key: dict[str, Cookie], seen: dict[str, float], signalled: float) -> str:
    """Check every call against what SIGTERM allows; return a summary."""
    # In hand: the service had sent the call's lookup to Redis (the proxy saw its key) before the signal.
    held = [o for o in outcomes if seen.get(by_key[o.key].session_id or "-", float("inf")) < signalled]
    draining = [o for o in held if o.ended > signalled]
    # Every one of them got its right answer.
    assert [o for o in held if o.code is not None or by_key[o.key].wrong(o)] == []
    assert len(draining) >= THREADS // 2, "too few calls were in flight at the signal to prove anything"
    # Any other call: the right answer, or refused as UNAVAILABLE -- never a wrong verdict or another error.
    assert [o for o in outcomes if by_key[o.key].wrong(o)] == []
    refused = collections.Counter(o.code for o in outcomes if o.code is not None)
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE}, refused
    # Calls begun well before the signal were all answered (those just before it may not have reached the server).
    assert [o for o in outcomes if o.started < signalled - 0.5 and o.code is not None] == []
    return (
        f"calls {len(outcomes)}; in hand at SIGTERM {len(draining)}, all answered OK, the last "
        f"{max(o.ended for o in draining) - signalled:.3f}s after the signal; later calls refused {dict(refused)}"
    )


def test_sigterm_under_load_drains_every_call_in_hand(redis_server: RedisServer) -> None:
    valid = mint_cookies(redis_server, 1000)
    warm_cookies = mint_cookies(redis_server, 3, tag="warm")
    bad = [tampered(c) for c in valid[:20]]
    by_key = {c.key: c for c in [*valid, *bad]}
    counter = itertools.count()

    def pick(_: int) -> tuple[str, pb.ValidateSessionRequest]:
        n = next(counter)
        # Each call asks about a session of its own (so the proxy's log of keys names the call);
        # one in eight is a forged cookie, answered without Redis (as is every call once all are used).
        cookie = bad[n % len(bad)] if n % 8 == 7 or n >= len(valid) else valid[n]
        return cookie.key, cookie.request

    env = {
        **SETTINGS,
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "2000",
        "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": str(GRACE_S),
    }
    with delay_proxy(redis_server.port, REDIS_DELAY_S) as proxy:
        env["SESSIONVALIDATOR_REDIS_URL"] = proxy.url
        # Not waiting for readiness: with Redis 200 ms away it never turns SERVING by itself
        # (see test_readiness_turns_serving_with_a_redis_200ms_away); calls fill the pool instead.
        with running_validator(env, ready=False) as validator:
            assert validator.proc is not None
            with new_channel(validator.address) as channel:
                warm = [call_once(pb_grpc.SessionValidatorStub(channel), c.key, c.request, 5.0) for c in warm_cookies]
            assert [o for c, o in zip(warm_cookies, warm, strict=True) if o.code is not None or c.wrong(o)] == []
            liveness = HealthWatch(validator.address, "")  # NOT_SERVING once the signal is handled
            load = LoadThreads(validator.address, pick, threads=THREADS, timeout=GRACE_S + 3, pause_s=0.0)
            try:
                liveness.wait_for(SERVING, after=0, timeout=5)
                load.start()
                time.sleep(0.8)
                signalled = time.monotonic()
                validator.proc.send_signal(signal.SIGTERM)
                liveness.wait_for(NOT_SERVING, after=signalled, timeout=2)
                liveness.close()  # an open Watch stream is a call too: it would hold the drain for the whole grace
                # While the in-flight calls drain, a new connection is refused. (Health flips just before the
                # server stops taking calls, so give that a moment: a call in between is legitimately served.)
                time.sleep(0.1)
                with new_channel(validator.address) as fresh:
                    refused = call_once(pb_grpc.SessionValidatorStub(fresh), "fresh", valid[0].request, 2.0)
                code = validator.proc.wait(timeout=GRACE_S + 2)
                exited = time.monotonic()
            finally:
                outcomes = load.stop()
                liveness.close()
            seen = dict(proxy.seen)

    summary = judge(outcomes, by_key, seen, signalled)
    assert code == 0
    assert exited - signalled < GRACE_S + 1
    assert refused.code is grpc.StatusCode.UNAVAILABLE, refused
    still_draining = [o for o in outcomes if o.started < signalled and o.code is None and o.ended > refused.ended]
    assert still_draining, "the new connection was not tried while calls were draining"
    assert not [r for r in internal_errors(validator) if r.get("event") == "internal_error"]
    print(
        f"\n{summary}; a new connection refused {refused.ended - signalled:.3f}s after the signal while "
        f"{len(still_draining)} calls were draining; exit 0 after {exited - signalled:.3f}s (grace {GRACE_S}s)"
    )

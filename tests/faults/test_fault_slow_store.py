"""A slow Redis (a real one behind a delaying TCP proxy): bounded failures, readiness follows, recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.faults.support import (
    NOT_SERVING,
    SERVING,
    SETTINGS,
    Cookie,
    DelayProxy,
    HealthWatch,
    LoadThreads,
    Outcome,
    call_once,
    delay_proxy,
    health_status,
    internal_errors,
    mint_cookies,
    open_fds,
    tampered,
)
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

pytestmark = pytest.mark.integration

STORE_TIMEOUT_S = 0.2
SLOW_S = 1.0  # well past the store timeout and the readiness ping's 0.5 s


@pytest.fixture
def slow_setup(redis_server: RedisServer) -> Iterator[tuple[DelayProxy, ValidatorProcess, list[Cookie]]]:
    valid = mint_cookies(redis_server, 12)
    unknown = mint_cookies(redis_server, 4, stored=False, tag="gone")
    cookies = valid + unknown + [tampered(c) for c in valid[:4]]
    with delay_proxy(redis_server.port) as proxy:
        env = {
            **SETTINGS,
            "SESSIONVALIDATOR_REDIS_URL": proxy.url,
            "SESSIONVALIDATOR_STORE_TIMEOUT_MS": str(int(STORE_TIMEOUT_S * 1000)),
        }
        with running_validator(env) as validator:
            yield proxy, validator, cookies


def wrong(cookies: list[Cookie], outcomes: list[Outcome]) -> list[str]:
    by_key = {c.key: c for c in cookies}
    problems = [problem for o in outcomes if (problem := by_key[o.key].wrong(o))]
    problems += [
        f"{o.key}: {o.code} {o.error_reason}"
        for o in outcomes
        if o.code is not None and (o.code, o.error_reason) != (grpc.StatusCode.UNAVAILABLE, "STORE_TIMEOUT")
    ]
    return problems


def concurrently(stub: pb_grpc.SessionValidatorStub, cookies: list[Cookie], timeout: float) -> list[Outcome]:
    results: list[Outcome] = []
    callers = [
        threading.Thread(target=lambda c=c: results.append(call_once(stub, c.key, c.request, timeout))) for c in cookies
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=timeout + 5)
    assert len(results) == len(cookies)
    return results


def slow_phase(stub: pb_grpc.SessionValidatorStub, cookies: list[Cookie]) -> tuple[list[float], list[float]]:
    """With Redis slow: store timeouts and caller deadlines end calls on time. Returns both sets of durations."""
    lookups = [c for c in cookies if c.verdict != pb.VERDICT_BAD_SIGNATURE]
    # One call at a time, then several at once (sharing a pipeline or not): each ends at the store
    # timeout, not at Redis's pace, with UNAVAILABLE / STORE_TIMEOUT.
    timed_out = [call_once(stub, c.key, c.request, 5.0) for c in lookups[:6]] + concurrently(stub, lookups[6:14], 5.0)
    for outcome in timed_out:
        assert (outcome.code, outcome.error_reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_TIMEOUT"), outcome
        assert outcome.ended - outcome.started < 0.5, outcome
    # A caller's deadline shorter than the store timeout: DEADLINE_EXCEEDED at about the deadline.
    short = [call_once(stub, c.key, c.request, 0.08) for c in lookups[:5]]
    for outcome in short:
        assert outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED, outcome
        assert outcome.ended - outcome.started < 0.3, outcome
    # Cookies that need no store are still judged, at once.
    for cookie in (c for c in cookies if c.verdict == pb.VERDICT_BAD_SIGNATURE):
        outcome = call_once(stub, cookie.key, cookie.request, 5.0)
        assert outcome.code is None
        assert cookie.wrong(outcome) is None
        assert outcome.ended - outcome.started < 0.3
    return [o.ended - o.started for o in timed_out], [o.ended - o.started for o in short]


def settled_connections(proxy: DelayProxy, pid: int) -> tuple[int, int]:
    """Connections dropped for silence are closed: nothing piles up. In the end the pipelined
    connection and the session cache's invalidation connection remain. Returns (fds, proxied)."""
    settled = time.monotonic() + 5.0
    while proxy.open_connections() > 2 and time.monotonic() < settled:
        time.sleep(0.1)
    return open_fds(pid), proxy.open_connections()


def test_slow_store_times_out_fast_and_recovers(slow_setup: tuple[DelayProxy, ValidatorProcess, list[Cookie]]) -> None:
    proxy, validator, cookies = slow_setup
    assert validator.proc is not None
    lookups = [c for c in cookies if c.verdict != pb.VERDICT_BAD_SIGNATURE]
    watch = HealthWatch(validator.address)
    channel = grpc.insecure_channel(validator.address)
    stub = pb_grpc.SessionValidatorStub(channel)
    try:
        watch.wait_for(SERVING, after=0, timeout=5)
        baseline = [call_once(stub, c.key, c.request, 5.0) for c in cookies]
        assert wrong(cookies, baseline) == []
        assert all(o.code is None for o in baseline)
        time.sleep(0.5)
        fds_before, proxied_before = open_fds(validator.proc.pid), proxy.open_connections()

        slow_at = time.monotonic()
        proxy.set_delay(SLOW_S)
        timed_out, deadlines = slow_phase(stub, cookies)
        down_at = watch.wait_for(NOT_SERVING, after=slow_at, timeout=3.0)
        assert health_status(validator.address, "") == SERVING

        # Fast again, while calls keep coming (some connections still wait for replies delayed by the slow phase).
        def pick(n: int) -> tuple[str, pb.ValidateSessionRequest]:
            return lookups[n % len(lookups)].key, lookups[n % len(lookups)].request

        load = LoadThreads(validator.address, pick, threads=3)
        load.start()
        try:
            time.sleep(0.3)
            fast_at = time.monotonic()
            proxy.set_delay(0.0)
            up_at = watch.wait_for(SERVING, after=fast_at, timeout=2.0)
            time.sleep(max(0.0, fast_at + 2.2 - time.monotonic()))
        finally:
            outcomes = load.stop()
        # Never a wrong verdict, nor a reply meant for another call; failures only as store timeouts.
        assert wrong(cookies, outcomes) == []
        ok_after = [o.ended for o in outcomes if o.started >= fast_at and o.code is None]
        assert ok_after, "no call succeeded once the store was fast again"
        assert min(ok_after) - fast_at < 2.0
        # Once the replies delayed before the switch have drained, every call succeeds.
        assert [o for o in outcomes if o.started >= fast_at + SLOW_S + 0.5 and o.code is not None] == []
        after = [call_once(stub, c.key, c.request, 5.0) for c in cookies]
        assert wrong(cookies, after) == []
        assert all(o.code is None for o in after)
        assert validator.proc.poll() is None
        assert internal_errors(validator) == []
        fds_after, proxied_after = settled_connections(proxy, validator.proc.pid)
        assert proxied_after <= 2
        assert fds_after - fds_before <= max(0, proxied_after - proxied_before) + 2
        print(
            f"\nstore-timeout calls {min(timed_out):.3f}..{max(timed_out):.3f}s; 80 ms deadline calls "
            f"{min(deadlines):.3f}..{max(deadlines):.3f}s; NOT_SERVING {down_at - slow_at:.3f}s after slow; "
            f"SERVING {up_at - fast_at:.3f}s after fast; first OK {min(ok_after) - fast_at:.3f}s after fast; "
            f"load {len(outcomes)} calls, {sum(o.code is not None for o in outcomes)} timed out; "
            f"proxy accepted {proxy.accepted} connections; open to Redis {proxied_before}->{proxied_after}; "
            f"fds {fds_before}->{fds_after}"
        )
    finally:
        channel.close()
        watch.close()
    assert validator.terminate(timeout=15) == 0


def test_readiness_turns_serving_with_a_redis_200ms_away(redis_server: RedisServer) -> None:
    # Each PING takes 0.2 s, well inside the 0.5 s readiness ping timeout; calls have 2 s.
    with delay_proxy(redis_server.port, 0.2) as proxy:
        env = {**SETTINGS, "SESSIONVALIDATOR_REDIS_URL": proxy.url, "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "2000"}
        with running_validator(env, ready=False) as validator:
            watch = HealthWatch(validator.address)
            try:
                watch.wait_for(SERVING, after=0, timeout=3.0)
            finally:
                print(f"\nreadiness updates {[s for _, s in watch.updates]}; proxy accepted {proxy.accepted}")
                watch.close()


def test_the_pool_grows_when_each_round_trip_is_within_the_store_timeout(redis_server: RedisServer) -> None:
    # Every round trip takes 40 ms, within the default 100 ms store timeout. The first burst
    # of concurrent calls may find too few connections; the pool must then have grown.
    cookies = mint_cookies(redis_server, 8)
    env = {**SETTINGS, "SESSIONVALIDATOR_REDIS_URL": ""}
    with delay_proxy(redis_server.port, 0.04) as proxy:
        env["SESSIONVALIDATOR_REDIS_URL"] = proxy.url
        with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
            stub = pb_grpc.SessionValidatorStub(channel)
            failures = []
            for _ in range(6):
                outcomes = concurrently(stub, cookies, 2.0)
                assert wrong(cookies, [o for o in outcomes if o.code is None]) == []
                failures.append(sum(o.code is not None for o in outcomes))
                time.sleep(0.3)
            print(f"\nfailed calls per burst of 8: {failures}; proxy accepted {proxy.accepted} connections")
            assert sum(failures[2:]) <= 2

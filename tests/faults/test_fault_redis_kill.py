"""Redis killed under load: never a wrong verdict, readiness follows, recovery by itself, no leak (TLS too)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.faults.support import (
    CORPUS,
    NOT_SERVING,
    READINESS,
    SERVING,
    SETTINGS,
    HealthWatch,
    LoadThreads,
    Outcome,
    call_once,
    health_status,
    local_ports_to,
    open_fds,
    redis_clients_from,
    request_of,
    save_snapshot,
    wrong_answers,
)
from tests.harness import seed
from tests.support.processes import RedisServer, RedisTls, ValidatorProcess, debug_sleep, running_validator
from tests.support.vectors import needs_store

pytestmark = pytest.mark.integration

CASES = {case["name"]: case for case in CORPUS["cases"]}
REQUESTS = {name: request_of(case) for name, case in CASES.items()}
NAMES = sorted(CASES)
THREADS = 6
# What a call may fail with while Redis is down: UNAVAILABLE, never a verdict.
STORE_ERRORS = {"STORE_UNAVAILABLE", "STORE_TIMEOUT"}


def pick(n: int) -> tuple[str, pb.ValidateSessionRequest]:
    """Every vector in turn: valid, bad signature, malformed, expired, missing."""
    name = NAMES[n % len(NAMES)]
    return name, REQUESTS[name]


def resting_footprint(redis_server: RedisServer, validator: ValidatorProcess) -> tuple[int, int, int]:
    """After a quiet second: (open fds, the service's sockets to Redis in any state, connections Redis lists)."""
    assert validator.proc is not None
    time.sleep(1.0)
    pid = validator.proc.pid
    return open_fds(pid), len(local_ports_to(pid, redis_server.store_port)), redis_clients_from(redis_server, pid)


@pytest.fixture(params=["redis", "rediss"])
def killed_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, the service reading it over TCP or over TLS."""
    server = RedisServer(tls=RedisTls.made_in(tmp_path) if request.param == "rediss" else None).start()
    try:
        yield server
    finally:
        server.close()


def test_redis_killed_under_load(killed_redis: RedisServer) -> None:
    redis_server = killed_redis
    seed(redis_server, CORPUS)
    save_snapshot(redis_server)  # the restarted redis-server loads the same sessions: verdicts never change
    env = {**SETTINGS, "SESSIONVALIDATOR_REDIS_URL": redis_server.store_url}
    with running_validator(env) as validator:
        assert validator.proc is not None
        watch = HealthWatch(validator.address)
        try:
            watch.wait_for(SERVING, after=0, timeout=5)
            # Warm up with the same load so the pool holds what it needs, then measure at rest.
            assert (
                wrong_answers(
                    LoadThreads(validator.address, pick, threads=THREADS).start().run_for(0.7), CASES, STORE_ERRORS
                )
                == []
            )
            fds_before, sockets_before, redis_before = resting_footprint(redis_server, validator)

            load = LoadThreads(validator.address, pick, threads=THREADS).start()
            try:
                time.sleep(0.5)
                pooled_at_kill = len(local_ports_to(validator.proc.pid, redis_server.store_port))
                killed = time.monotonic()
                redis_server.stop()  # SIGKILL
                down_at = watch.wait_for(NOT_SERVING, after=killed, timeout=3)
                time.sleep(max(0.0, killed + 1.0 - time.monotonic()))  # about a second of outage under load
                assert validator.proc.poll() is None
                assert health_status(validator.address, "") == SERVING  # liveness does not follow the store
                restarting = time.monotonic()  # readiness may flip before start() returns
                redis_server.start()  # same port, same dump.rdb
                restarted = time.monotonic()
                up_at = watch.wait_for(SERVING, after=restarting, timeout=3)
                time.sleep(max(0.0, restarted + 2.5 - time.monotonic()))
            finally:
                outcomes = load.stop()
            assert validator.proc.poll() is None, "the service died"
            assert wrong_answers(outcomes, CASES, STORE_ERRORS) == []

            assert any(o.code is not None for o in outcomes if killed <= o.ended and o.started <= restarted), (
                "the load did not see the outage"
            )
            ok_after = [
                o.ended for o in outcomes if o.started >= restarted and o.code is None and needs_store(CASES[o.key])
            ]
            assert ok_after, "no store-backed call succeeded after Redis came back"
            assert min(ok_after) - restarted < 2.0
            assert up_at - restarted < 2.0
            # Once recovered (2 s), every call succeeds: no connection pooled before the kill is
            # handed out dead (see test_connections_pooled_before_a_redis_restart_are_not_reused).
            late = [o for o in outcomes if o.started >= restarted + 2.0 and o.code is not None]
            assert late == []

            fds_after, sockets_after, redis_after = resting_footprint(redis_server, validator)
            reasons = collections.Counter(o.error_reason for o in outcomes if o.code is not None)
            last_failure = max((o.ended for o in outcomes if o.code is not None), default=restarted)
            print(
                f"\ncalls={len(outcomes)} failed={dict(reasons)} not_serving_after_kill={down_at - killed:.3f}s "
                f"serving_after_restart={up_at - restarted:.3f}s first_ok={min(ok_after) - restarted:.3f}s "
                f"last_failure={last_failure - restarted:.3f}s stale_failures_after_2s={len(late)}/{pooled_at_kill} "
                f"fds {fds_before}->{fds_after} sockets_to_redis {sockets_before}->{sockets_after} "
                f"client_list {redis_before}->{redis_after}"
            )
            # No leak: the pool needs at most one connection per concurrent call plus the readiness
            # ping, counting sockets in any state (a dead one kept open counts too), and every fd the
            # service gained is one of those sockets.
            assert 1 <= redis_after <= sockets_after <= THREADS + 1
            assert fds_after - fds_before <= max(0, sockets_after - sockets_before) + 2
            assert health_status(validator.address, READINESS) == SERVING
        finally:
            watch.close()
        assert validator.terminate(timeout=15) == 0


def burst(redis_server: RedisServer, stub: pb_grpc.SessionValidatorStub, n: int) -> list[Outcome]:
    """``n`` concurrent calls while Redis is held busy, so each takes a pooled connection of its own."""
    request = REQUESTS["valid_anonymous_session"]
    sleeper = redis_server.client()
    blocker = threading.Thread(target=lambda: debug_sleep(sleeper, 0.3), daemon=True)
    blocker.start()
    time.sleep(0.05)
    results: list[Outcome] = []
    callers = [
        threading.Thread(target=lambda: results.append(call_once(stub, "burst", request, 5.0))) for _ in range(n)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=10)
    blocker.join(timeout=5)
    sleeper.close()
    return results


def test_connections_opened_before_a_redis_restart_are_not_reused(killed_redis: RedisServer) -> None:
    """No call fails on a connection that died with the old Redis (the pipelined one, or redis-py's pooled ones)."""
    redis_server = killed_redis
    seed(redis_server, CORPUS)
    save_snapshot(redis_server)
    env = {
        **SETTINGS,
        "SESSIONVALIDATOR_REDIS_URL": redis_server.store_url,
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "2000",
        # One lookup per waiting call, whichever server kind delivers them together.
        "SESSIONVALIDATOR_COALESCE": "false",
    }
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        assert validator.proc is not None
        stub = pb_grpc.SessionValidatorStub(channel)
        assert all(o.code is None for o in burst(redis_server, stub, 8))
        pooled = len(local_ports_to(validator.proc.pid, redis_server.store_port))
        assert pooled >= 1
        redis_server.stop()
        time.sleep(0.8)
        redis_server.start()
        restarted = time.monotonic()
        watch = HealthWatch(validator.address)
        try:
            watch.wait_for(SERVING, after=0, timeout=3)
        finally:
            watch.close()
        time.sleep(max(0.0, restarted + 2.5 - time.monotonic()))  # recovered by every measure
        failed = [o for o in burst(redis_server, stub, 8) if o.code is not None]
        print(f"\npooled={pooled} failed_in_a_burst_2.5s_after_restart={len(failed)}: {failed[:1]}")
        assert failed == []

"""Redis killed under load: never a wrong verdict, readiness follows, recovery by itself, no leak."""

from __future__ import annotations

import collections
import time

import grpc
import pytest
from sessionvalidator.v1 import session_validator_service_pb2 as pb

from tests.faults.support import (
    CORPUS,
    NOT_SERVING,
    READINESS,
    SERVING,
    HealthWatch,
    Outcome,
    LoadThreads,
    health_status,
    needs_store,
    open_fds,
    redis_clients_from,
    request_of,
    save_snapshot,
)
from tests.harness import seed
from tests.support.processes import RedisServer, running_validator

pytestmark = pytest.mark.integration

CASES = {case["name"]: case for case in CORPUS["cases"]}
REQUESTS = {name: request_of(case) for name, case in CASES.items()}
NAMES = sorted(CASES)
THREADS = 6


def pick(n: int) -> tuple[str, pb.ValidateSessionRequest]:
    name = NAMES[n % len(NAMES)]
    return name, REQUESTS[name]


def wrong_answers(outcomes: list[Outcome]) -> list[str]:
    """Every OK answer must be the vector's own verdict and reason; every failure UNAVAILABLE."""
    wrong = []
    for outcome in outcomes:
        expect = CASES[outcome.key]["expect"]
        if outcome.code is not None:
            if outcome.code is not grpc.StatusCode.UNAVAILABLE or outcome.error_reason not in {
                "STORE_UNAVAILABLE",
                "STORE_TIMEOUT",
            }:
                wrong.append(f"{outcome.key}: {outcome.code} {outcome.error_reason}")
            elif not needs_store(CASES[outcome.key]):
                wrong.append(f"{outcome.key}: {outcome.code} for a cookie that needs no store")
            continue
        got = (pb.Verdict.Name(outcome.verdict or 0), pb.Reason.Name(outcome.reason or 0))
        if got != (expect["verdict"], expect["reason"]):
            wrong.append(f"{outcome.key}: got {got}, expected {(expect['verdict'], expect['reason'])}")
        elif "session_id" in expect and outcome.session_id != expect["session_id"]:
            wrong.append(f"{outcome.key}: session id {outcome.session_id!r}")
        elif "authenticated" in expect and outcome.authenticated is not expect["authenticated"]:
            wrong.append(f"{outcome.key}: authenticated {outcome.authenticated}")
        elif "user" in expect and outcome.user_id != expect["user"]["id"]:
            wrong.append(f"{outcome.key}: user {outcome.user_id!r}")
    return wrong


def test_redis_killed_under_load(redis_server: RedisServer) -> None:
    seed(redis_server, CORPUS)
    save_snapshot(redis_server)  # the restarted redis-server loads the same sessions
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": redis_server.url}
    with running_validator(env) as validator:
        assert validator.proc is not None
        pid = validator.proc.pid
        watch = HealthWatch(validator.address)
        try:
            watch.wait_for(SERVING, after=0, timeout=5)
            # Warm up with the same load so the pool holds what it needs, then measure at rest.
            warm = LoadThreads(validator.address, pick, threads=THREADS).start()
            time.sleep(0.7)
            assert wrong_answers(warm.stop()) == []
            time.sleep(1.0)
            fds_before = open_fds(pid)
            redis_before = redis_clients_from(redis_server, pid)

            load = LoadThreads(validator.address, pick, threads=THREADS).start()
            try:
                time.sleep(0.5)
                killed = time.monotonic()
                redis_server.stop()  # SIGKILL
                down_at = watch.wait_for(NOT_SERVING, after=killed, timeout=3)
                time.sleep(max(0.0, killed + 1.0 - time.monotonic()))  # about a second of outage under load
                assert validator.proc.poll() is None
                assert health_status(validator.address, "") == SERVING  # liveness does not follow the store
                redis_server.start()  # same port, same dump.rdb
                restarted = time.monotonic()
                up_at = watch.wait_for(SERVING, after=restarted, timeout=3)
                time.sleep(1.5)
            finally:
                outcomes = load.stop()
            assert validator.proc.poll() is None, "the service died"

            assert wrong_answers(outcomes) == []
            during = [o for o in outcomes if killed <= o.ended and o.started <= restarted]
            failed_during = [o for o in during if o.code is not None]
            assert failed_during, "the outage was not observed by the load"
            after = [o for o in outcomes if o.started >= restarted and needs_store(CASES[o.key])]
            ok_after = [o for o in after if o.code is None]
            assert ok_after, "no call succeeded after Redis came back"
            last_failure = max((o.ended for o in after if o.code is not None), default=restarted)
            first_ok = min(o.ended for o in ok_after)
            assert last_failure - restarted < 2.0
            assert up_at - restarted < 2.0
            assert all(o.code is None for o in outcomes if o.started >= restarted + 2.0)

            time.sleep(1.0)  # quiet
            fds_after = open_fds(pid)
            redis_after = redis_clients_from(redis_server, pid)
            reasons = collections.Counter(o.error_reason for o in outcomes if o.code is not None)
            print(
                f"calls={len(outcomes)} failed={sum(reasons.values())} reasons={dict(reasons)} "
                f"not_serving_after={down_at - killed:.3f}s serving_after={up_at - restarted:.3f}s "
                f"first_ok_after={first_ok - restarted:.3f}s last_failure_after={last_failure - restarted:.3f}s "
                f"fds {fds_before}->{fds_after} redis_conns {redis_before}->{redis_after}"
            )
            # The pool needs at most one connection per concurrent call, plus the readiness ping.
            assert 1 <= redis_after <= THREADS + 2
            assert redis_after <= redis_before + 2
            assert fds_after <= fds_before + 3
            assert health_status(validator.address, READINESS) == SERVING
        finally:
            watch.close()
        assert validator.terminate(timeout=15) == 0

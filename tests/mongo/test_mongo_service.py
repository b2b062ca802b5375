"""The real service over a real MongoDB wire-protocol server (FerretDB).

Every shared vector, readiness that follows MongoDB both ways within 2 s
(health Watch included), outages and a hung server answered UNAVAILABLE
within the store timeout (never a verdict), user records from the users
collection, and ``mint`` writing sessions the service then accepts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.faults.support import error_reason
from tests.integration.test_health import check, next_status, watch
from tests.integration.test_make_run import run_script_answer
from tests.support.mongo import CORPUS, MONGO_ONLY, mongo_env, seed_mongo
from tests.support.processes import FerretDBServer, ValidatorProcess, running_validator
from tests.support.vectors import check_vector, needs_store, request_of

READINESS = "sessionvalidator.v1.SessionValidator"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# OVERLOADED: a store timeout while the event loop itself ran late (a busy shared machine); also retryable.
NOT_A_VERDICT = {"UNAVAILABLE/STORE_UNAVAILABLE", "UNAVAILABLE/STORE_TIMEOUT", "UNAVAILABLE/OVERLOADED"}
STORE_CASES = [case for case in CORPUS["cases"] if needs_store(case)]
NO_STORE_CASES = [case for case in CORPUS["cases"] if not needs_store(case)]


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["name"])
def test_vector(mongo_stub: pb_grpc.SessionValidatorStub, case: dict[str, Any]) -> None:
    check_vector(mongo_stub.ValidateSession(request_of(case), timeout=5), case["expect"])


@pytest.mark.parametrize("case", MONGO_ONLY["cases"], ids=lambda c: c["name"])
def test_mongo_only_vector(mongo_stub: pb_grpc.SessionValidatorStub, case: dict[str, Any]) -> None:
    check_vector(mongo_stub.ValidateSession(request_of(case), timeout=5), case["expect"])


def test_one_batch_of_every_vector_answers_each_as_alone(mongo_stub: pb_grpc.SessionValidatorStub) -> None:
    batch = pb.ValidateSessionsRequest(requests=[request_of(case) for case in CORPUS["cases"]])
    responses = mongo_stub.ValidateSessions(batch, timeout=5).responses
    assert len(responses) == len(CORPUS["cases"])
    for case, response in zip(CORPUS["cases"], responses, strict=True):
        check_vector(response, case["expect"])


def test_user_records_come_from_the_users_collection(mongo_stub: pb_grpc.SessionValidatorStub) -> None:
    case = next(c for c in CORPUS["cases"] if c["request"] and c["expect"].get("user", {}).get("username") == "nine")
    response = mongo_stub.ValidateSession(request_of(case), timeout=5)
    assert response.user.username == "nine"
    assert list(response.user.roles) == ["ops", "on-call"]


@pytest.fixture
def own(ferretdb: FerretDBServer) -> Iterator[ValidatorProcess]:
    seed_mongo(ferretdb, CORPUS)
    env = mongo_env(ferretdb, SESSIONVALIDATOR_SHUTDOWN_GRACE_S="5", SESSIONVALIDATOR_RATE_LIMIT="off")
    with running_validator(env) as validator:
        yield validator


def test_readiness_follows_mongodb_both_ways_within_two_seconds(
    ferretdb: FerretDBServer, own: ValidatorProcess
) -> None:
    updates, channel = watch(own.address, READINESS)
    try:
        assert next_status(updates)[1] == SERVING
        for _ in range(2):
            stopped = time.monotonic()
            ferretdb.stop()
            at, status = next_status(updates)
            assert status == NOT_SERVING
            assert at - stopped < 2.0
            assert check(own.address, READINESS) == NOT_SERVING
            assert check(own.address, "") == SERVING  # liveness does not follow the store
            restarted = time.monotonic()
            ferretdb.start()
            at, status = next_status(updates)
            assert status == SERVING
            assert at - restarted < 2.0
        stub = pb_grpc.SessionValidatorStub(channel)
        valid = next(c for c in STORE_CASES if c["expect"]["verdict"] == "VERDICT_VALID")
        check_vector(stub.ValidateSession(request_of(valid), timeout=5), valid["expect"])
    finally:
        channel.close()


def _outcome(stub: pb_grpc.SessionValidatorStub, case: dict[str, Any]) -> tuple[str, float]:
    started = time.monotonic()
    try:
        response = stub.ValidateSession(request_of(case), timeout=5)
    except grpc.RpcError as exc:
        return f"{exc.code().name}/{error_reason(exc)}", time.monotonic() - started
    check_vector(response, case["expect"])
    return "answered", time.monotonic() - started


def test_an_outage_is_unavailable_never_a_verdict(ferretdb: FerretDBServer, own: ValidatorProcess) -> None:
    with grpc.insecure_channel(own.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        ferretdb.stop()
        outcomes = [_outcome(stub, case) for case in STORE_CASES]
        assert {kind for kind, _ in outcomes} <= NOT_A_VERDICT
        assert max(elapsed for _, elapsed in outcomes) < 1.0
        # Cookies that need no lookup are still answered.
        assert {_outcome(stub, case)[0] for case in NO_STORE_CASES} == {"answered"}
        batch = pb.ValidateSessionsRequest(requests=[request_of(case) for case in STORE_CASES[:5]])
        with pytest.raises(grpc.RpcError) as caught:
            stub.ValidateSessions(batch, timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        ferretdb.start()
        deadline = time.monotonic() + 2.0
        kinds: set[str] = set()
        while time.monotonic() < deadline:
            kinds = {_outcome(stub, case)[0] for case in STORE_CASES}
            if kinds == {"answered"}:
                break
            time.sleep(0.05)
        assert kinds == {"answered"}


def test_a_hung_mongodb_is_store_timeout_within_the_bound(ferretdb: FerretDBServer) -> None:
    seed_mongo(ferretdb, CORPUS)
    env = mongo_env(ferretdb, SESSIONVALIDATOR_STORE_TIMEOUT_MS="150", SESSIONVALIDATOR_RATE_LIMIT="off")
    assert ferretdb.proc is not None
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        updates, watch_channel = watch(validator.address, READINESS)
        try:
            assert next_status(updates)[1] == SERVING
            ferretdb.pause()
            try:
                outcomes = [_outcome(stub, case) for case in STORE_CASES[:6]]
                at, status = next_status(updates, timeout=3)
                stopped_for = at - (time.monotonic() - sum(e for _, e in outcomes))
            finally:
                ferretdb.resume()
            kinds = [kind for kind, _ in outcomes]
            assert set(kinds) <= {"UNAVAILABLE/STORE_TIMEOUT", "UNAVAILABLE/OVERLOADED"}
            assert "UNAVAILABLE/STORE_TIMEOUT" in kinds
            assert max(elapsed for _, elapsed in outcomes) < 0.5  # 150 ms store timeout, never the driver's 30 s
            assert status == NOT_SERVING
            assert stopped_for < 2.0
            assert next_status(updates, timeout=3)[1] == SERVING
        finally:
            watch_channel.close()


MINTED_USER = '{"id":"m-1","username":"minted"}'


def test_mint_writes_sessions_the_service_accepts(ferretdb: FerretDBServer) -> None:
    env = {**os.environ, **mongo_env(ferretdb)}
    minted = subprocess.run(
        [
            sys.executable,
            "-m",
            "sessionvalidator_service",
            "mint",
            "--json",
            "--user",
            '{"id":"m-1","username":"minted"}',
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    record = json.loads(minted.stdout.strip().splitlines()[0])
    with ferretdb.client() as client:
        document = client[ferretdb.database]["sessions"].find_one({"_id": record["session_id"]})
    assert document is not None
    assert isinstance(document["session"], str)  # connect-mongo's default stringify: true
    assert json.loads(document["session"])["passport"]["user"]["username"] == "minted"
    with running_validator(mongo_env(ferretdb)) as validator, grpc.insecure_channel(validator.address) as channel:
        response = pb_grpc.SessionValidatorStub(channel).ValidateSession(
            pb.ValidateSessionRequest(cookie_header_text=record["cookie"]), timeout=5
        )
    assert response.verdict == pb.VERDICT_VALID
    assert response.user.username == "minted"
    # connect-mongo's expires is cookie.expires, millisecond-precise.
    assert abs(response.expire_time.ToDatetime().timestamp() - document["expires"].timestamp()) < 0.002


def test_the_log_never_shows_the_mongodb_password(ferretdb: FerretDBServer) -> None:
    url = f"mongodb://svuser:hunter2-secret@127.0.0.1:{ferretdb.port}/{ferretdb.database}?authSource=admin"
    env = {**mongo_env(ferretdb), "SESSIONVALIDATOR_STORE_URL": url}
    with running_validator(env, ready=False) as validator:
        assert validator.output is not None
        time.sleep(1.0)  # let the readiness pings fail (no such user) and be logged
        lines = list(validator.output.lines)
    assert any("store_url" in line for line in lines)
    assert not any("hunter2-secret" in line for line in lines)


def test_make_run_against_mongodb(ferretdb: FerretDBServer) -> None:
    # `SESSIONVALIDATOR_STORE_URL=mongodb://… make run`: the script mints into MongoDB and serves from it.
    with run_script_answer({"SESSIONVALIDATOR_STORE_URL": ferretdb.url}) as response:
        assert response.verdict == pb.VERDICT_VALID
        assert response.user.id == "dev-user"
        with ferretdb.client() as client:
            assert client[ferretdb.database]["sessions"].find_one({"_id": response.session_id}) is not None

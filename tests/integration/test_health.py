"""grpc.health.v1, readiness that follows Redis, reflection and graceful shutdown."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, ValidatorProcess, debug_sleep, running_validator

READINESS = "sessionvalidator.v1.SessionValidator"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own(redis_server: RedisServer) -> Iterator[ValidatorProcess]:
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "5",
    }
    with running_validator(env) as validator:
        yield validator


def check(address: str, service: str) -> Any:
    with grpc.insecure_channel(address) as channel:
        return (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        )


def test_liveness_readiness_and_list(seeded: ValidatorProcess) -> None:
    assert check(seeded.address, "") == SERVING
    assert check(seeded.address, READINESS) == SERVING
    with grpc.insecure_channel(seeded.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        listed = health.List(health_pb2.HealthListRequest(), timeout=5)
        assert {name: s.status for name, s in listed.statuses.items()} == {
            "": SERVING,
            READINESS: SERVING,
            "envoy.service.auth.v3.Authorization": SERVING,  # ext_authz follows readiness
        }
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(seeded: ValidatorProcess) -> None:
    with grpc.insecure_channel(seeded.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {service.name for response in responses for service in response.list_services_response.service}
    assert {READINESS, "grpc.health.v1.Health"} <= names


def watch(address: str, service: str) -> tuple[queue.Queue[tuple[float, int]], grpc.Channel]:
    """Stream Watch updates into a queue as (monotonic time, status)."""
    updates: queue.Queue[tuple[float, int]] = queue.Queue()
    channel = grpc.insecure_channel(address)
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))

    def pump() -> None:
        try:
            for response in stream:
                updates.put((time.monotonic(), response.status))
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    return updates, channel


def next_status(updates: queue.Queue[tuple[float, int]], timeout: float = 5.0) -> tuple[float, int]:
    return updates.get(timeout=timeout)


def test_readiness_follows_redis_both_ways_within_two_seconds(redis_server: RedisServer, own: ValidatorProcess) -> None:
    updates, channel = watch(own.address, READINESS)
    try:
        assert next_status(updates)[1] == SERVING
        for _ in range(2):
            stopped = time.monotonic()
            redis_server.stop()
            at, status = next_status(updates)
            assert status == NOT_SERVING
            assert at - stopped < 2.0
            assert check(own.address, "") == SERVING  # liveness does not follow the store
            restarted = time.monotonic()
            redis_server.start()
            at, status = next_status(updates)
            assert status == SERVING
            assert at - restarted < 2.0
        # and the service answers again, by itself
        case = next(c for c in CORPUS["cases"] if c["name"] == "missing_unknown_session")
        pb_grpc.SessionValidatorStub(channel).ValidateSession(pb.ValidateSessionRequest(**case["request"]), timeout=5)
    finally:
        channel.close()


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(redis_server: RedisServer) -> None:
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "5000",
        "SESSIONVALIDATOR_SHUTDOWN_GRACE_S": "5",
    }
    case = next(c for c in CORPUS["cases"] if c["name"] == "missing_unknown_session")
    request = pb.ValidateSessionRequest(**case["request"])
    with running_validator(env) as validator:
        updates, watch_channel = watch(validator.address, READINESS)
        channel = grpc.insecure_channel(validator.address)
        stub = pb_grpc.SessionValidatorStub(channel)
        stub.ValidateSession(request, timeout=5)
        assert next_status(updates)[1] == SERVING
        # Make the next lookups wait inside Redis, so they are in flight at SIGTERM.
        blocker = threading.Thread(target=lambda: debug_sleep(redis_server.client(), 1))
        blocker.start()
        time.sleep(0.05)
        futures = [stub.ValidateSession.future(request, timeout=10) for _ in range(5)]
        time.sleep(0.1)
        assert validator.proc is not None
        started = time.monotonic()
        validator.proc.send_signal(15)
        assert next_status(updates)[1] == NOT_SERVING
        for future in futures:
            assert future.result().verdict == pb.VERDICT_MISSING  # in-flight calls finish normally
        with grpc.insecure_channel(validator.address) as fresh, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.SessionValidatorStub(fresh).ValidateSession(request, timeout=2)
        assert caught.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
        assert validator.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5 + 2
        blocker.join()
        channel.close()
        watch_channel.close()


def test_reflection_resolves_method_names_as_ghz_asks(seeded: ValidatorProcess) -> None:
    with grpc.insecure_channel(seeded.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        for symbol in ("sessionvalidator.v1.SessionValidator.ValidateSession", "sessionvalidator.v1.SessionValidator"):
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
            (response,) = stub.ServerReflectionInfo(iter([request]), timeout=5)
            assert not response.HasField("error_response"), symbol
            assert response.file_descriptor_response.file_descriptor_proto
        missing = reflection_pb2.ServerReflectionRequest(file_containing_symbol="sessionvalidator.v1.Nope.Method")
        (response,) = stub.ServerReflectionInfo(iter([missing]), timeout=5)
        assert response.HasField("error_response")

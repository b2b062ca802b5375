"""Health and readiness in-process: readiness follows the store both ways; shutdown drains."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessionvalidator_service.server import READINESS_SERVICE
from sessionvalidator_service.stores import StoreUnavailableError
from sessionvalidator_service.stores.memory import MemoryStore
from tests.fast.conftest import CORPUS, InProcess, LoopThread, start

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def running(loop_thread: LoopThread) -> Iterator[InProcess]:
    service = start(loop_thread, CORPUS["settings"], MemoryStore())
    yield service
    loop_thread.run(service.service.stop())


def status(health: health_pb2_grpc.HealthStub, service: str) -> int:
    status: int = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
    return status


def wait_for(health: health_pb2_grpc.HealthStub, wanted: int, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if status(health, READINESS_SERVICE) == wanted:
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"readiness did not become {wanted} within {within_s} s")


def test_readiness_follows_the_store_both_ways(running: InProcess) -> None:
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert status(health, "") == SERVING  # liveness
        wait_for(health, SERVING, 2.0)
        running.loop.call(lambda: setattr(running.store, "failure", StoreUnavailableError("down")))
        assert wait_for(health, NOT_SERVING, 2.0) < 2.0
        assert status(health, "") == SERVING  # the process itself is alive
        running.loop.call(lambda: setattr(running.store, "failure", None))
        assert wait_for(health, SERVING, 2.0) < 2.0


def test_list_names_every_service(running: InProcess) -> None:
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        wait_for(health, SERVING, 2.0)
        statuses = health.List(health_pb2.HealthListRequest(), timeout=2).statuses
        assert statuses[READINESS_SERVICE].status == SERVING
        assert statuses[""].status == SERVING


def test_shutdown_turns_every_service_not_serving(loop_thread: LoopThread) -> None:
    running = start(loop_thread, CORPUS["settings"], MemoryStore())
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        wait_for(health, SERVING, 2.0)
        responses = health.Watch(health_pb2.HealthCheckRequest(service=READINESS_SERVICE), timeout=5)
        assert next(responses).status == SERVING
        stopping = asyncio.run_coroutine_threadsafe(running.service.stop(), loop_thread.loop)
        assert next(responses).status == NOT_SERVING
        responses.cancel()  # the stream is what shutdown waits for
        stopping.result(10)


def test_shutdown_delay_serves_new_calls_while_not_serving_then_refuses_them(loop_thread: LoopThread) -> None:
    running = start(loop_thread, CORPUS["settings"], MemoryStore())
    delay = 1.0
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        wait_for(health, SERVING, 2.0)
        stopping = asyncio.run_coroutine_threadsafe(running.service.stop(delay_s=delay), loop_thread.loop)
        began = time.monotonic()
        wait_for(health, NOT_SERVING, 0.5)  # at once
        # Still served: a new call on this connection, and on a new one.
        check = health_pb2.HealthCheckRequest(service=READINESS_SERVICE)
        assert health.Check(check, timeout=2).status == NOT_SERVING
        with grpc.insecure_channel(running.address) as fresh:
            assert health_pb2_grpc.HealthStub(fresh).Check(check, timeout=2).status == NOT_SERVING
        assert time.monotonic() - began < delay, "the machine was too slow to check within the delay"
        stopping.result(10)
        assert time.monotonic() - began >= delay
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(check, timeout=2)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE

"""The servicer in-process: failures become the documented statuses; batches answer per item; bounds hold."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.stores import StoredSession, StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.stores.memory import MemoryStore
from sessionvalidator_service.validator import MAX_BATCH, MAX_BATCH_BYTES
from tests.fast.conftest import CORPUS, InProcess, LoopThread, start
from tests.support.processes import server_kind
from tests.support.vectors import request_of, seed_memory

VALID_CASE = next(c for c in CORPUS["cases"] if c["name"] == "valid_object_user")
VALID = request_of(VALID_CASE)
OTHER_VALID = request_of(next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user"))
BAD = pb.ValidateSessionRequest(signed_value="s:abc.def")


class GatedStore(MemoryStore):
    """A memory store whose lookups wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(user_records=True)
        self.gate = threading.Event()
        self.waiting = 0

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        self.waiting += 1
        await asyncio.to_thread(self.gate.wait, 10)
        return await super().get_sessions(session_ids)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    pytest.fail("no ErrorInfo")


@pytest.fixture
def running(loop_thread: LoopThread, request: pytest.FixtureRequest) -> Iterator[InProcess]:
    param: tuple[dict[str, str], MemoryStore | None] = getattr(request, "param", ({}, None))
    env, store = param
    store = store or MemoryStore(user_records=True)
    seed_memory(store, CORPUS)
    service = start(loop_thread, {**CORPUS["settings"], **env}, store)
    yield service
    store.failure = None
    if isinstance(store, GatedStore):
        store.gate.set()
    loop_thread.run(service.service.stop())


def stub_for(running: InProcess) -> tuple[grpc.Channel, pb_grpc.SessionValidatorStub]:
    channel = grpc.insecure_channel(running.address)
    return channel, pb_grpc.SessionValidatorStub(channel)


@pytest.mark.parametrize(
    ("failure", "reason", "pushback"),
    [(StoreUnavailableError("refused"), "STORE_UNAVAILABLE", None), (StoreTimeoutError("slow"), "STORE_TIMEOUT", "-1")],
)
def test_a_store_failure_is_unavailable_never_a_verdict(
    running: InProcess, failure: Exception, reason: str, pushback: str | None
) -> None:
    channel, stub = stub_for(running)
    with channel:
        assert stub.ValidateSession(VALID, timeout=5).verdict == pb.VERDICT_VALID
        running.loop.call(lambda: setattr(running.store, "failure", failure))
        for call in (
            lambda: stub.ValidateSession(VALID, timeout=5),
            lambda: stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[VALID, BAD]), timeout=5),
            # Several sessions: one round trip for all of them, which fails as a whole.
            lambda: stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[VALID, BAD, OTHER_VALID]), timeout=5),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            info = error_info(caught.value)
            assert (info.reason, info.domain) == (reason, "sessionvalidator.v1")
            trailers: dict[str, str | bytes] = {m.key: m.value for m in caught.value.trailing_metadata() or ()}
            # The native server kind cannot send pushback (a documented gap).
            assert trailers.get("grpc-retry-pushback-ms") == (pushback if server_kind().retry_pushback else None)
        # Cookies the store is not needed for are still answered.
        assert stub.ValidateSession(BAD, timeout=5).verdict == pb.VERDICT_BAD_SIGNATURE


def test_a_bug_is_internal_with_a_generic_message(running: InProcess) -> None:
    channel, stub = stub_for(running)
    with channel:
        running.loop.call(lambda: setattr(running.store, "failure", RuntimeError("a bug in a store")))
        with pytest.raises(grpc.RpcError) as caught:
            stub.ValidateSession(VALID, timeout=5)
        assert caught.value.code() is grpc.StatusCode.INTERNAL
        assert caught.value.details() == "internal error"
        assert error_info(caught.value).reason == "INTERNAL_ERROR"


@pytest.mark.parametrize("running", [({"SESSIONVALIDATOR_RATE_LIMIT": "10/s"}, None)], indirect=True)
def test_a_batch_refuses_only_the_bad_items_over_the_limit(running: InProcess) -> None:
    """Issue 14 #1: one valid cookie among 255 bad ones from a peer still gets its verdict."""
    channel, stub = stub_for(running)
    with channel:
        answers = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[VALID] + [BAD] * 255), timeout=5)
        assert answers.responses[0].verdict == pb.VERDICT_VALID
        refused = [r for r in answers.responses[1:] if r.HasField("error")]
        judged = [r for r in answers.responses[1:] if not r.HasField("error")]
        assert len(judged) == 100  # the burst: 10 x 10/s
        assert len(refused) == 155
        assert all(r.verdict == pb.VERDICT_BAD_SIGNATURE for r in judged)
        assert all(r.verdict == pb.VERDICT_UNSPECIFIED for r in refused)
        assert {r.error.reason for r in refused} == {pb.ERROR_REASON_RATE_LIMITED}
        # The peer's valid sessions keep validating, alone and in batches.
        assert stub.ValidateSession(VALID, timeout=5).verdict == pb.VERDICT_VALID


def test_batches_over_the_item_count_or_byte_budget_are_invalid(running: InProcess) -> None:
    channel, stub = stub_for(running)
    with channel:
        for requests in (
            [VALID] * (MAX_BATCH + 1),
            [pb.ValidateSessionRequest(cookie_header=b"x" * (MAX_BATCH_BYTES // 100 + 1))] * 100,
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ValidateSessions(pb.ValidateSessionsRequest(requests=requests), timeout=5)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(caught.value).reason == "BATCH_TOO_LARGE"


def test_identical_session_ids_in_a_batch_are_read_once(running: InProcess) -> None:
    channel, stub = stub_for(running)
    with channel:
        before = running.store.lookups
        answers = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[VALID] * MAX_BATCH), timeout=5)
        assert {r.verdict for r in answers.responses} == {pb.VERDICT_VALID}
        assert running.store.lookups - before == 1


@pytest.mark.parametrize("running", [({"SESSIONVALIDATOR_MAX_IN_FLIGHT": "4"}, GatedStore())], indirect=True)
def test_over_the_in_flight_bound_calls_are_refused_overloaded_not_cancelled(running: InProcess) -> None:
    store = running.store
    assert isinstance(store, GatedStore)
    channel, stub = stub_for(running)
    with channel, ThreadPoolExecutor(8) as pool:
        held = [pool.submit(stub.ValidateSession, VALID, timeout=10) for _ in range(4)]
        while store.waiting < 1:  # coalesced: the four wait on one lookup
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ValidateSession(VALID, timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason == "OVERLOADED"
        # Cheap answers are refused too: the bound is on calls, whatever they need.
        store.gate.set()
        assert [f.result().verdict for f in held] == [pb.VERDICT_VALID] * 4
    assert running.metrics._overloaded["in_flight"]._value.get() >= 1


@pytest.mark.parametrize(
    "running", [({"SESSIONVALIDATOR_PROFILE_ATTRIBUTES": "username, profile"}, None)], indirect=True
)
def test_an_attribute_allowlist_keeps_only_those_keys(running: InProcess) -> None:
    case = next(c for c in CORPUS["cases"] if c["name"] == "valid_user_object_secrets_left_out_of_attributes")
    channel, stub = stub_for(running)
    with channel:
        response = stub.ValidateSession(request_of(case), timeout=5)
    assert json_format.MessageToDict(response.user.attributes) == {"username": "sec", "profile": {"plan": "pro"}}
    assert response.user.id == "u-24"


@pytest.mark.parametrize("running", [({"SESSIONVALIDATOR_PROFILE_ATTRIBUTES": "none"}, None)], indirect=True)
def test_attributes_can_be_switched_off(running: InProcess) -> None:
    channel, stub = stub_for(running)
    with channel:
        response = stub.ValidateSession(VALID, timeout=5)
    assert response.user.username == "ann"
    assert not response.user.HasField("attributes")


class LateLoopStore(MemoryStore):
    """A store that times out after blocking the event loop, as a CPU-starved server would."""

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:  # noqa: ARG002
        time.sleep(0.15)  # noqa: ASYNC251 - blocking the loop is the point: it runs nothing else meanwhile
        await asyncio.sleep(0.05)  # let the lag be seen
        raise StoreTimeoutError("timed out")


@pytest.mark.parametrize("running", [({"SESSIONVALIDATOR_STORE_TIMEOUT_MS": "100"}, LateLoopStore())], indirect=True)
def test_a_store_timeout_while_the_loop_ran_late_is_overload_not_the_store(running: InProcess) -> None:
    """Issue 14 #5: the store timeout measures the store; a late event loop is the server's own overload."""
    channel, stub = stub_for(running)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ValidateSession(VALID, timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "OVERLOADED"
    assert running.metrics._overloaded["event_loop"]._value.get() == 1

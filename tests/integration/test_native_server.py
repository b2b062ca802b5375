"""The experimental pygrpc-native server answers every shared vector as grpcio does."""

from __future__ import annotations

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.harness import seed
from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, running_validator
from tests.support.vectors import request_of


def test_native_server_answers_every_vector_like_grpcio(redis_server: RedisServer) -> None:
    seed(redis_server, CORPUS)
    answers = {}
    for kind in ("grpcio", "native"):
        env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": redis_server.url, "SESSIONVALIDATOR_SERVER": kind}
        with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
            stub = pb_grpc.SessionValidatorStub(channel)
            responses = [stub.ValidateSession(request_of(case), timeout=5) for case in CORPUS["cases"]]
            for response in responses:
                response.ClearField("expire_time")  # TTL-derived: moves between the two runs
            answers[kind] = responses
    assert answers["native"] == answers["grpcio"]
    assert {pb.Verdict.Name(r.verdict) for r in answers["native"]} >= {"VERDICT_VALID", "VERDICT_MISSING"}


def test_auto_serves_on_native_without_tls_and_says_why(redis_server: RedisServer) -> None:
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": redis_server.url, "SESSIONVALIDATOR_SERVER": "auto"}
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        assert stub.ValidateSession(request_of(CORPUS["cases"][0]), timeout=5).verdict != pb.VERDICT_UNSPECIFIED
        assert validator.output is not None
        serving = [line for line in validator.output.json_lines() if line.get("event") == "serving"]
        assert [(line["server"], line["server_reason"]) for line in serving] == [("native", "auto_no_tls")]


def test_a_multi_address_target_needs_an_explicit_authority_on_native(redis_server: RedisServer) -> None:
    """grpc-core's default authority for ``ipv4:a,b`` holds a comma, which pygrpc-native 0.5 resets (INTERNAL)."""
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": redis_server.url, "SESSIONVALIDATOR_SERVER": "native"}
    request = request_of(CORPUS["cases"][0])
    with running_validator(env) as validator:
        target = f"ipv4:{validator.address},{validator.address}"
        with grpc.insecure_channel(target) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.SessionValidatorStub(channel).ValidateSession(request, timeout=5)
            assert caught.value.code() is grpc.StatusCode.INTERNAL
        # What the clients do: name the authority, so the comma never reaches the server.
        with grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")]) as channel:
            assert pb_grpc.SessionValidatorStub(channel).ValidateSession(request, timeout=5).verdict


def test_pygrpc_native_still_cannot_send_retry_pushback() -> None:
    """Why serverkind.py says ``retry_pushback=False`` for native: the library refuses the reserved key.

    When this fails, pygrpc-native answers such a call: turn native's retry_pushback on and drop this test.
    """
    import asyncio

    import pygrpc_native.aio

    async def fail_with_pushback(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:  # noqa: ARG001
        await context.abort(grpc.StatusCode.UNAVAILABLE, "slow store", (("grpc-retry-pushback-ms", "-1"),))

    async def call() -> grpc.StatusCode:
        server = pygrpc_native.aio.server()
        handlers = {"Call": grpc.unary_unary_rpc_method_handler(fail_with_pushback)}
        server.add_registered_method_handlers("test.Pushback", handlers)  # served natively, not by its fallback
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary("/test.Pushback/Call", None, None)(b"", timeout=1.0)
            return caught.value.code()
        finally:
            await server.stop(0)

    assert asyncio.run(call()) is grpc.StatusCode.DEADLINE_EXCEEDED  # never answered: it hangs

"""Bad attempts are limited per peer: refused past the limit, valid sessions unharmed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.harness import seed
from tests.integration.conftest import CORPUS
from tests.support.processes import RedisServer, running_validator
from tests.support.vectors import request_of

BAD = request_of(next(c for c in CORPUS["cases"] if c["name"] == "bad_signature_tampered"))
GOOD = request_of(next(c for c in CORPUS["cases"] if c["name"] == "valid_scalar_user"))


@pytest.fixture
def limited(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[pb_grpc.SessionValidatorStub]:
    seed(redis_server, CORPUS)
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_RATE_LIMIT": "4/s",
        "SESSIONVALIDATOR_RATE_LIMIT_BURST": "3",
        **getattr(request, "param", {}),
    }
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


def refusal(error: grpc.RpcError) -> tuple[str, float]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert status.details[1].Unpack(retry)
    assert info.reason == "RATE_LIMITED"
    return info.metadata["scope"], retry.retry_delay.ToTimedelta().total_seconds()


def call(stub: pb_grpc.SessionValidatorStub, request: pb.ValidateSessionRequest, client: str | None = None) -> Any:
    metadata = (("x-client-ip", client),) if client else None
    return stub.ValidateSession(request, timeout=5, metadata=metadata)


def test_a_peer_over_the_limit_loses_only_its_bad_attempts(limited: pb_grpc.SessionValidatorStub) -> None:
    for _ in range(3):
        assert call(limited, BAD).verdict == pb.VERDICT_BAD_SIGNATURE
    with pytest.raises(grpc.RpcError) as caught:
        call(limited, BAD)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    scope, delay = refusal(caught.value)
    assert scope == "peer"
    assert 0 < delay <= 0.25
    # The same peer speaks for other users too: their sessions still validate.
    assert call(limited, GOOD).verdict == pb.VERDICT_VALID
    time.sleep(delay + 0.05)
    assert call(limited, BAD).verdict == pb.VERDICT_BAD_SIGNATURE  # refilled


@pytest.mark.parametrize("limited", [{"SESSIONVALIDATOR_RATE_LIMIT_PEER_HEADER": "x-client-ip"}], indirect=True)
def test_a_client_named_by_the_gateway_is_banned_while_its_bucket_is_empty(
    limited: pb_grpc.SessionValidatorStub,
) -> None:
    for _ in range(3):
        assert call(limited, BAD, "203.0.113.7").verdict == pb.VERDICT_BAD_SIGNATURE
    for request in (BAD, GOOD):
        with pytest.raises(grpc.RpcError) as caught:
            call(limited, request, "203.0.113.7")
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refusal(caught.value)[0] == "client"
    assert call(limited, GOOD, "198.51.100.1").verdict == pb.VERDICT_VALID  # another client
    # A batch that runs the bucket dry mid-way: the bad item over the limit is refused on its own,
    # every other item keeps its verdict; from then on the client is banned whole.
    batch = pb.ValidateSessionsRequest(requests=[GOOD, BAD, BAD, BAD, BAD])
    metadata = (("x-client-ip", "198.51.100.2"),)
    answers = limited.ValidateSessions(batch, timeout=5, metadata=metadata).responses
    assert [a.verdict for a in answers] == [pb.VERDICT_VALID] + [pb.VERDICT_BAD_SIGNATURE] * 3 + [
        pb.VERDICT_UNSPECIFIED
    ]
    assert [a.HasField("error") for a in answers] == [False] * 4 + [True]
    assert answers[4].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert answers[4].error.reason == pb.ERROR_REASON_RATE_LIMITED
    assert answers[4].error.retry_delay.ToNanoseconds() > 0
    with pytest.raises(grpc.RpcError) as caught:
        limited.ValidateSessions(batch, timeout=5, metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal(caught.value)[0] == "client"


@pytest.mark.parametrize("limited", [{"SESSIONVALIDATOR_RATE_LIMIT": "off"}], indirect=True)
def test_the_limit_can_be_switched_off(limited: pb_grpc.SessionValidatorStub) -> None:
    for _ in range(50):
        assert call(limited, BAD).verdict == pb.VERDICT_BAD_SIGNATURE

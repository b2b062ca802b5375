"""The status mapping (errors.py), as a table."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.errors import batch_too_large, failure_for, item_error, malformed_request, to_status
from sessionvalidator_service.stores import StoreError, StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.validator import OverloadedError, RateLimitedError


@pytest.mark.parametrize(
    ("exc", "code", "reason", "http", "no_retry"),
    [
        (StoreUnavailableError("refused"), code_pb2.UNAVAILABLE, "STORE_UNAVAILABLE", 503, False),
        (StoreError("some store failure"), code_pb2.INTERNAL, "INTERNAL_ERROR", 500, False),
        (StoreTimeoutError("slow"), code_pb2.UNAVAILABLE, "STORE_TIMEOUT", 503, True),
        (OverloadedError(), code_pb2.UNAVAILABLE, "OVERLOADED", 503, False),
        (RateLimitedError(0.5, "client"), code_pb2.RESOURCE_EXHAUSTED, "RATE_LIMITED", 429, False),
        (RuntimeError("bug"), code_pb2.INTERNAL, "INTERNAL_ERROR", 500, False),
        (KeyError("bug"), code_pb2.INTERNAL, "INTERNAL_ERROR", 500, False),
    ],
)
def test_failure_for(exc: Exception, code: int, reason: str, http: int, no_retry: bool) -> None:
    failure = failure_for(exc)
    assert (failure.code, failure.reason_name, failure.http_status, failure.no_retry) == (code, reason, http, no_retry)
    assert "bug" not in failure.message  # nothing of the exception leaks


def test_every_reason_sent_is_declared_in_the_contract() -> None:
    declared = {name.removeprefix("ERROR_REASON_") for name in pb.ErrorReason.keys()}  # noqa: SIM118
    sent = {
        failure_for(exc).reason_name
        for exc in (StoreUnavailableError(), StoreTimeoutError(), OverloadedError(), RateLimitedError(1, "peer"))
    } | {malformed_request().reason_name, batch_too_large("x", "1").reason_name, failure_for(ValueError()).reason_name}
    assert sent <= declared
    assert declared - sent == {"UNSPECIFIED"}


def test_rich_status_carries_error_info_and_retry_info() -> None:
    status = to_status(failure_for(RateLimitedError(0.25, "peer")))
    assert status.code.value[0] == code_pb2.RESOURCE_EXHAUSTED
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    from google.rpc import status_pb2

    parsed = status_pb2.Status.FromString(details)
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert parsed.details[0].Unpack(info)
    assert parsed.details[1].Unpack(retry)
    assert (info.reason, info.domain, dict(info.metadata)) == ("RATE_LIMITED", "sessionvalidator.v1", {"scope": "peer"})
    assert retry.retry_delay.ToNanoseconds() == 250_000_000


def test_item_error_mirrors_the_status() -> None:
    error = item_error(failure_for(RateLimitedError(1.5, "peer")))
    assert (error.code, error.reason) == (code_pb2.RESOURCE_EXHAUSTED, pb.ERROR_REASON_RATE_LIMITED)
    assert error.retry_delay.ToNanoseconds() == 1_500_000_000

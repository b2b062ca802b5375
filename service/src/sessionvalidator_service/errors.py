"""The one place where failures become gRPC statuses (AIP-193).

Verdicts are never errors: every cookie, however broken, is answered with an
OK response. A status is only for "could not decide":

| situation | code | ErrorInfo.reason |
|---|---|---|
| store refused, dropped or errored | UNAVAILABLE | STORE_UNAVAILABLE |
| store did not answer in time | UNAVAILABLE, no retry (pushback) | STORE_TIMEOUT |
| a bug | INTERNAL (generic message) | INTERNAL_ERROR |
| a batch over the size limit | INVALID_ARGUMENT | BATCH_TOO_LARGE |
| a body that is not a protobuf message | INVALID_ARGUMENT | MALFORMED_REQUEST |
| too many bad cookies from one peer | RESOURCE_EXHAUSTED (+ RetryInfo) | RATE_LIMITED |
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sessionvalidator_service.store import StoreError

__all__ = [
    "DOMAIN",
    "abort_batch_too_large",
    "abort_internal",
    "abort_malformed_request",
    "abort_rate_limited",
    "abort_store",
]

DOMAIN = "sessionvalidator.v1"


def _status(code: int, message: str, reason: str, metadata: dict[str, str]) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[detail]))


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status, extra: tuple[tuple[str, str], ...] = ()
) -> NoReturn:
    await context.abort(status.code, status.details, (*status.trailing_metadata, *extra))
    raise AssertionError  # pragma: no cover - abort always raises


async def abort_store(
    context: grpc.aio.ServicerContext[Any, Any], error: StoreError, *, retry_pushback: bool = True
) -> NoReturn:
    """End the call with UNAVAILABLE: the store could not be read.

    A refused or dropped store connection may be one replica's problem, so
    clients retry it (on another replica, with round_robin). A store that
    timed out is slow for everyone: ``grpc-retry-pushback-ms: -1`` tells
    gRPC clients not to retry, instead of spending the rest of their deadline
    adding load to it.
    """
    timed_out = error.reason != "STORE_UNAVAILABLE"
    status = _status(
        code_pb2.UNAVAILABLE,
        "session store timed out" if timed_out else "session store unavailable",
        error.reason,
        {"retryable": "false" if timed_out else "true"},
    )
    await _abort(context, status, (("grpc-retry-pushback-ms", "-1"),) if timed_out and retry_pushback else ())


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """End the call with INTERNAL and a message that reveals nothing."""
    await _abort(context, _status(code_pb2.INTERNAL, "internal error", "INTERNAL_ERROR", {}))


async def abort_malformed_request(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """End a call whose body is not the request message at all."""
    status = _status(code_pb2.INVALID_ARGUMENT, "the request is not a valid protobuf message", "MALFORMED_REQUEST", {})
    await _abort(context, status)


async def abort_batch_too_large(context: grpc.aio.ServicerContext[Any, Any], size: int, limit: int) -> NoReturn:
    """End a batch call that carries more credentials than allowed."""
    status = _status(
        code_pb2.INVALID_ARGUMENT,
        f"a batch holds at most {limit} credentials, got {size}",
        "BATCH_TOO_LARGE",
        {"limit": str(limit), "size": str(size)},
    )
    await _abort(context, status)


async def abort_rate_limited(context: grpc.aio.ServicerContext[Any, Any], retry_after_s: float, scope: str) -> NoReturn:
    """End the call with RESOURCE_EXHAUSTED: this peer sent too many bad cookies."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain=DOMAIN, metadata={"scope": scope}))
    retry = any_pb2.Any()
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(1, round(retry_after_s * 1e9)))
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED, message="too many bad session cookies", details=[detail, retry]
        )
    )
    await _abort(context, status)

"""The one place where failures become statuses (AIP-193).

Verdicts are never errors: every cookie, however broken, is answered with an
OK response. A status is only for "could not decide". :func:`failure_for`
maps an exception to a :class:`Failure` (pure, table-tested); the gRPC
adapters send it with :func:`abort`, the HTTP ones read its ``http_status``.

| situation | code | ErrorInfo.reason | HTTP |
|---|---|---|---|
| store refused, dropped or errored | UNAVAILABLE | STORE_UNAVAILABLE | 503 |
| store did not answer in time | UNAVAILABLE, no retry (pushback) | STORE_TIMEOUT | 503 |
| over the bound on calls in progress | UNAVAILABLE | OVERLOADED | 503 |
| too many bad cookies from one caller | RESOURCE_EXHAUSTED (+ RetryInfo) | RATE_LIMITED | 429 |
| a batch over the item or byte limit | INVALID_ARGUMENT | BATCH_TOO_LARGE | 400 |
| a body that is not a protobuf message | INVALID_ARGUMENT | MALFORMED_REQUEST | 400 |
| a bug | INTERNAL (generic message) | INTERNAL_ERROR | 500 |

The reason strings come from the contract's ``ErrorReason`` enum (its value
names without the ``ERROR_REASON_`` prefix), declared once for every language.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.logs import LogBudget
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.stores import StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.validator import OverloadedError, RateLimitedError

__all__ = [
    "DOMAIN",
    "Failure",
    "FailureReporter",
    "abort",
    "batch_too_large",
    "failure_for",
    "item_error",
    "malformed_request",
    "reason_name",
    "to_status",
]

DOMAIN = pb.DESCRIPTOR.package

log = logging.getLogger("sessionvalidator.errors")


def reason_name(value: pb.ErrorReason.ValueType) -> str:
    """ErrorInfo.reason on the wire: the enum value's name without its prefix."""
    return pb.ErrorReason.Name(value).removeprefix("ERROR_REASON_")


STORE_UNAVAILABLE = reason_name(pb.ERROR_REASON_STORE_UNAVAILABLE)
STORE_TIMEOUT = reason_name(pb.ERROR_REASON_STORE_TIMEOUT)
OVERLOADED = reason_name(pb.ERROR_REASON_OVERLOADED)
RATE_LIMITED = reason_name(pb.ERROR_REASON_RATE_LIMITED)
INTERNAL_ERROR = reason_name(pb.ERROR_REASON_INTERNAL_ERROR)
_HTTP = {
    code_pb2.UNAVAILABLE: 503,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.INTERNAL: 500,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a call could not be decided, in every form a front end needs."""

    code: int  # google.rpc.Code
    reason: pb.ErrorReason.ValueType
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None
    # grpc-retry-pushback-ms: -1, telling gRPC clients not to retry.
    no_retry: bool = False

    @property
    def reason_name(self) -> str:
        """ErrorInfo.reason as sent."""
        return reason_name(self.reason)

    @property
    def http_status(self) -> int:
        """What an HTTP front end answers."""
        return _HTTP.get(self.code, 500)


_STORE_UNAVAILABLE = Failure(
    code_pb2.UNAVAILABLE, pb.ERROR_REASON_STORE_UNAVAILABLE, "session store unavailable", {"retryable": "true"}
)
# A store that timed out is slow for every replica: retrying adds load to it.
_STORE_TIMEOUT = Failure(
    code_pb2.UNAVAILABLE,
    pb.ERROR_REASON_STORE_TIMEOUT,
    "session store timed out",
    {"retryable": "false"},
    no_retry=True,
)
_OVERLOADED = Failure(
    code_pb2.UNAVAILABLE, pb.ERROR_REASON_OVERLOADED, "validator overloaded; retry with backoff", {"retryable": "true"}
)
_INTERNAL = Failure(code_pb2.INTERNAL, pb.ERROR_REASON_INTERNAL_ERROR, "internal error")
_MALFORMED_REQUEST = Failure(
    code_pb2.INVALID_ARGUMENT, pb.ERROR_REASON_MALFORMED_REQUEST, "the request is not a valid protobuf message"
)


def failure_for(exc: BaseException) -> Failure:
    """Map what a validation raised to its failure (anything unknown is a bug: INTERNAL)."""
    if isinstance(exc, StoreTimeoutError):
        return _STORE_TIMEOUT
    if isinstance(exc, StoreUnavailableError):
        return _STORE_UNAVAILABLE
    if isinstance(exc, OverloadedError):
        return _OVERLOADED
    if isinstance(exc, RateLimitedError):
        return rate_limited(exc.retry_after_s, exc.scope)
    return _INTERNAL


def rate_limited(retry_after_s: float, scope: str) -> Failure:
    """Return the failure for too many bad cookies from one identity."""
    return Failure(
        code_pb2.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_RATE_LIMITED,
        "too many bad session cookies",
        {"scope": scope},
        retry_after_s=retry_after_s,
    )


def malformed_request() -> Failure:
    """Return the failure for a body that is not the request message at all."""
    return _MALFORMED_REQUEST


def batch_too_large(problem: str, limit: str) -> Failure:
    """Return the failure for a batch over its item count or byte budget."""
    return Failure(
        code_pb2.INVALID_ARGUMENT, pb.ERROR_REASON_BATCH_TOO_LARGE, f"batch too large: {problem}", {"limit": limit}
    )


def _delay(seconds: float) -> duration_pb2.Duration:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(1, round(seconds * 1e9)))
    return delay


def to_status(failure: Failure) -> grpc.Status:
    """Return the rich status: google.rpc.Status with ErrorInfo (and RetryInfo when known)."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=failure.reason_name, domain=DOMAIN, metadata=dict(failure.metadata)))
    details.append(info)
    if failure.retry_after_s is not None:
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=_delay(failure.retry_after_s)))
        details.append(retry)
    return rpc_status.to_status(status_pb2.Status(code=failure.code, message=failure.message, details=details))


def item_error(failure: Failure) -> pb.ItemError:
    """Return the per-item form of a failure, inside a batch response."""
    error = pb.ItemError(code=failure.code, reason=failure.reason, message=failure.message)
    if failure.retry_after_s is not None:
        error.retry_delay.CopyFrom(_delay(failure.retry_after_s))
    return error


async def abort(context: grpc.aio.ServicerContext[Any, Any], failure: Failure, *, retry_pushback: bool) -> NoReturn:
    """End the call with ``failure``; ``retry_pushback`` where the server kind can send it."""
    status = to_status(failure)
    extra = (("grpc-retry-pushback-ms", "-1"),) if failure.no_retry and retry_pushback else ()
    await context.abort(status.code, status.details, (*status.trailing_metadata, *extra))
    raise AssertionError  # pragma: no cover - abort always raises


class FailureReporter:
    """Counts and logs failures, within a log budget, for every front end."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._logs = LogBudget(log)

    def failure(self, exc: BaseException) -> Failure:
        """Map ``exc`` to its failure, counting it and logging it once per budget."""
        failure = failure_for(exc)
        if failure.reason == pb.ERROR_REASON_INTERNAL_ERROR:
            log.error("validation failed unexpectedly", exc_info=exc, extra={"event": "internal_error"})
        elif failure.code == code_pb2.UNAVAILABLE and failure.reason != pb.ERROR_REASON_OVERLOADED:
            self._metrics.store_error(failure.reason_name)
            self._logs.error(
                "store_error", "session store failed", error_reason=failure.reason_name, error=type(exc).__name__
            )
        return failure

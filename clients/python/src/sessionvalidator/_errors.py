"""Exceptions for "the validator could not decide", mapped from gRPC statuses.

A verdict (however bad the cookie) always arrives as a :class:`Validation`;
these exceptions only ever mean that no verdict was reached. Callers must not
treat them as a verdict either way: answer 503, or retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb

__all__ = [
    "DEADLINE_EXCEEDED",
    "DOMAIN",
    "ERROR_REASONS",
    "VALIDATOR_UNREACHABLE",
    "RateLimitedError",
    "SessionValidatorError",
    "StoreUnavailableError",
    "ValidatorTimeoutError",
    "error_reason_name",
    "from_item_error",
    "from_rpc_error",
]

#: The ``ErrorInfo.domain`` of the errors the service itself raises.
DOMAIN = "sessionvalidator.v1"

_REASON_PREFIX = "ERROR_REASON_"


def error_reason_name(value: int) -> str:
    """Return the wire form of an ``ErrorReason``: its name without the ``ERROR_REASON_`` prefix."""
    return pb.ErrorReason.Name(cast("pb.ErrorReason.ValueType", value)).removeprefix(_REASON_PREFIX)


#: Every ``ErrorInfo.reason`` the service sends, derived from the contract's ``enum ErrorReason``.
ERROR_REASONS = frozenset(
    error_reason_name(value) for value in pb.ErrorReason.values() if value != pb.ERROR_REASON_UNSPECIFIED
)

#: The cause of an UNAVAILABLE without an ErrorInfo reason: the validator itself was not reached.
VALIDATOR_UNREACHABLE = "VALIDATOR_UNREACHABLE"
#: The cause of a DEADLINE_EXCEEDED.
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class SessionValidatorError(Exception):
    """The validator gave no verdict: the call ended with a non-OK gRPC status.

    ``code`` is the :class:`grpc.StatusCode`. ``reason``, ``domain`` and
    ``metadata`` come from the ``google.rpc.ErrorInfo`` in the rich status,
    when the server sent one (``reason`` is ``None`` otherwise, for example
    when the validator itself could not be reached).
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        #: The ``google.rpc.RetryInfo`` delay in seconds (sent with RESOURCE_EXHAUSTED), or ``None``.
        self.retry_delay = retry_delay

    @property
    def cause(self) -> str:
        """Why no verdict was reached, in the words the middleware logs.

        The ErrorInfo reason when there is one, ``VALIDATOR_UNREACHABLE`` for
        UNAVAILABLE without one, ``DEADLINE_EXCEEDED``, else the code's name.
        """
        if self.reason:
            return self.reason
        if self.code == grpc.StatusCode.UNAVAILABLE:
            return VALIDATOR_UNREACHABLE
        return str(self.code.name)

    def __str__(self) -> str:
        suffix = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}: {self.message}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, reason={self.reason!r})"


class StoreUnavailableError(SessionValidatorError):
    """UNAVAILABLE: the session store, or the validator itself, could not be reached.

    ``reason`` is ``STORE_UNAVAILABLE`` or ``STORE_TIMEOUT`` when the validator
    answered that its store failed, ``None`` when the validator itself could
    not be reached. Retryable; the client already retried within its deadline.
    """


class RateLimitedError(SessionValidatorError):
    """RESOURCE_EXHAUSTED: the validator refuses this caller's bad cookies for a while (``retry_delay``)."""


class ValidatorTimeoutError(SessionValidatorError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline (the client's ``timeout``)."""


def _details(error: grpc.Call | grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo | None, float | None]:
    """Return the ErrorInfo of the rich status (one of our domain first, else any) and the RetryInfo delay."""
    try:
        # AioRpcError has the blocking Call accessors from_call reads.
        status = rpc_status.from_call(cast("grpc.Call", error))
    except (ValueError, DecodeError):
        # A detail that does not match the status or does not parse is not trusted.
        return None, None
    if status is None:
        return None, None
    infos = []
    delay: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                infos.append(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(retry) and retry.HasField("retry_delay"):
                delay = retry.retry_delay.ToTimedelta().total_seconds()
    ours = [info for info in infos if info.domain == DOMAIN]
    return (ours or infos or [None])[0], delay


def _error_class(code: grpc.StatusCode) -> type[SessionValidatorError]:
    if code == grpc.StatusCode.UNAVAILABLE:
        return StoreUnavailableError
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ValidatorTimeoutError
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimitedError
    return SessionValidatorError


def from_item_error(error: pb.ItemError) -> SessionValidatorError:
    """Map a batch item's own error (``ValidateSessionResponse.error``) to the matching exception."""
    code = next((c for c in grpc.StatusCode if c.value[0] == error.code), grpc.StatusCode.UNKNOWN)
    return _error_class(code)(
        error.message,
        code=code,
        reason=error_reason_name(error.reason) if error.reason else None,
        domain=DOMAIN,
        retry_delay=error.retry_delay.ToTimedelta().total_seconds() if error.HasField("retry_delay") else None,
    )


def from_rpc_error(error: grpc.RpcError) -> SessionValidatorError:
    """Map a failed call to the matching :class:`SessionValidatorError` subclass."""
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        # Raised by gRPC before a call existed; there is no status to read.
        return SessionValidatorError(str(error) or type(error).__name__, code=grpc.StatusCode.UNKNOWN)
    code = error.code()
    info, delay = _details(error)
    return _error_class(code)(
        error.details() or "",
        code=code,
        reason=info.reason if info is not None else None,
        domain=info.domain if info is not None else None,
        metadata=dict(info.metadata) if info is not None else None,
        retry_delay=delay,
    )

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

__all__ = [
    "DOMAIN",
    "SessionValidatorError",
    "StoreUnavailableError",
    "ValidatorTimeoutError",
    "from_rpc_error",
]

#: The ``ErrorInfo.domain`` of the errors the service itself raises.
DOMAIN = "sessionvalidator.v1"


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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))

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


class ValidatorTimeoutError(SessionValidatorError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline (the client's ``timeout``)."""


def _error_info(error: grpc.Call | grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """Return the ErrorInfo of the rich status: one of our domain first, else any."""
    try:
        # AioRpcError has the blocking Call accessors from_call reads.
        status = rpc_status.from_call(cast("grpc.Call", error))
    except (ValueError, DecodeError):
        # A detail that does not match the status or does not parse is not trusted.
        return None
    if status is None:
        return None
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                infos.append(info)
    ours = [info for info in infos if info.domain == DOMAIN]
    return (ours or infos or [None])[0]


def from_rpc_error(error: grpc.RpcError) -> SessionValidatorError:
    """Map a failed call to the matching :class:`SessionValidatorError` subclass."""
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        # Raised by gRPC before a call existed; there is no status to read.
        return SessionValidatorError(str(error) or type(error).__name__, code=grpc.StatusCode.UNKNOWN)
    code = error.code()
    info = _error_info(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        cls: type[SessionValidatorError] = StoreUnavailableError
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        cls = ValidatorTimeoutError
    else:
        cls = SessionValidatorError
    return cls(
        error.details() or "",
        code=code,
        reason=info.reason if info is not None else None,
        domain=info.domain if info is not None else None,
        metadata=dict(info.metadata) if info is not None else None,
    )

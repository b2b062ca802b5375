"""Redis's error replies as exception classes, and Redis client failures as store errors: one home for both.

Both Redis client paths hand the store an error reply as one of redis-py's exception classes, chosen by the reply's
first word exactly as redis-py's own parser chooses them (``NOSCRIPT`` is :class:`~redis.exceptions.NoScriptError`,
``NOPERM`` :class:`~redis.exceptions.NoPermissionError`, ``LOADING`` :class:`~redis.exceptions.BusyLoadingError`
...), plus :class:`WrongTypeError` for ``WRONGTYPE``, which redis-py leaves a plain ``ResponseError``. The pipelined
connection types replies as hiredis parses them (:func:`reply_error`); replies that come through redis-py's pool
are typed on the way in (:func:`typed`). Code above this module tells error replies apart by class, never by text,
and maps a client failure to the store's error with :func:`store_error`.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redis._parsers.base import BaseParser  # redis-py's table of error reply classes (the version is pinned)

from sessionvalidator_service.stores import StoreError, StoreTimeoutError, StoreUnavailableError

__all__ = ["ErrorReply", "WrongTypeError", "describe", "refuses_scripts", "reply_error", "store_error", "typed"]


# What every error reply is an instance of: redis-py's table also picks ConnectionError kinds for some
# (AuthenticationError for WRONGPASS, BusyLoadingError for LOADING).
ErrorReply = redis.exceptions.RedisError


class WrongTypeError(redis.exceptions.ResponseError):
    """``WRONGTYPE``: the key holds another type (a store shared with other data); not a store failure."""


def reply_error(message: str) -> ErrorReply:
    """Return the exception for one error reply (what hiredis calls for each ``-...`` line)."""
    if message.startswith("WRONGTYPE"):
        return WrongTypeError(message)
    error: ErrorReply = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]  # redis-py is untyped here
    return error


def typed(reply: Any) -> Any:
    """Return a reply from redis-py's pool typed as the pipelined connection types it (``WRONGTYPE`` included)."""
    if type(reply) is redis.exceptions.ResponseError and str(reply).startswith("WRONGTYPE"):
        return WrongTypeError(str(reply))
    return reply


def describe(error: BaseException) -> str:
    """Return the reply as Redis sent it (redis-py keeps the first word apart, as ``status_code``)."""
    code = getattr(error, "status_code", None)
    return f"{code} {error}" if code else str(error)


def refuses_scripts(error: ErrorReply) -> bool:
    """Whether an error reply to ``EVAL`` means this server will never run the script.

    ``NOPERM`` (an ACL user without scripting) and plain ``ERR`` (scripting unknown or disabled) do; ``LOADING``,
    ``BUSY``, ``MASTERDOWN`` and the like are the store being unavailable for now.
    """
    return isinstance(error, redis.exceptions.NoPermissionError) or (
        type(error) is redis.exceptions.ResponseError and getattr(error, "status_code", None) == "ERR"
    )


def store_error(exc: BaseException) -> StoreError:
    """Return the store's error for a Redis client failure: a timeout, or the store unavailable."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
        return StoreTimeoutError(str(exc) or "store timeout")
    return StoreUnavailableError(describe(exc) or type(exc).__name__)

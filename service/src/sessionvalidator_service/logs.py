"""JSON-lines logging that never carries secrets, cookies or session ids.

Session ids are logged as a short keyed hash (:class:`SessionIdHasher`): the
same id gives the same tag on every replica that shares the secrets, so an
operator can follow one session across log lines without learning its id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogBudget", "SessionIdHasher", "configure_logging"]


def configure_logging(level: int) -> None:
    """Send JSON lines to stdout at ``level``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC
            json_ensure_ascii=False,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # grpc and redis are chatty at DEBUG; keep them at WARNING unless asked.
    for name in ("grpc", "asyncio", "redis", "pymongo"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # grpc.aio logs a traceback at ERROR when a client goes away mid-call
    # (a cancelled RPC): that is the client's business, not an error here.
    logging.getLogger("grpc._cython.cygrpc").addFilter(_drop_client_disconnects)


def _drop_client_disconnects(record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[0] is not None:
        name = record.exc_info[0].__name__
        return name not in {"CancelledError", "ExecuteBatchError", "UsageError", "AbortError"}
    return "Client disconnected" not in record.getMessage()


class LogBudget:
    """Log each kind of repeated WARNING/ERROR event at most ``per_interval`` times an interval.

    What is held back is counted and reported as ``suppressed`` on the next
    line of that event, so a flood (bad signatures from a scanner, a store
    outage under load) costs a few lines a second, not one per call.
    """

    __slots__ = ("_clock", "_interval", "_limit", "_logger", "_state")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_interval: int = 5,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._limit = per_interval
        self._interval = interval_s
        self._clock = clock
        # event -> [interval start, lines this interval, suppressed since last line]
        self._state: dict[str, list[float]] = {}

    def _admit(self, event: str) -> int | None:
        """Return how many lines were suppressed before this one, or ``None`` to suppress it."""
        now = self._clock()
        state = self._state.get(event)
        if state is None:
            state = self._state[event] = [now, 0.0, 0.0]
        elif now - state[0] >= self._interval:
            state[0], state[1] = now, 0.0
        if state[1] >= self._limit:
            state[2] += 1
            return None
        state[1] += 1
        suppressed, state[2] = int(state[2]), 0.0
        return suppressed

    def _log(self, level: int, event: str, message: str, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        suppressed = self._admit(event)
        if suppressed is None:
            return
        extra: dict[str, Any] = {"event": event, **fields}
        if suppressed:
            extra["suppressed"] = suppressed
        self._logger.log(level, message, extra=extra)

    def warning(self, event: str, message: str, **fields: Any) -> None:
        """Log a WARNING for ``event`` within its budget."""
        self._log(logging.WARNING, event, message, fields)

    def error(self, event: str, message: str, **fields: Any) -> None:
        """Log an ERROR for ``event`` within its budget."""
        self._log(logging.ERROR, event, message, fields)


class SessionIdHasher:
    """Tags session ids with 12 hex characters of a keyed hash."""

    __slots__ = ("_mac",)

    def __init__(self, first_secret: str) -> None:
        # Derive a dedicated key: the tag must reveal nothing about the
        # signing secret and must not be computable without it.
        key = hmac.digest(first_secret.encode("utf-8"), b"sessionvalidator/log-tag/v1", "sha256")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, session_id: str) -> str:
        """Return the tag of ``session_id``."""
        mac = self._mac.copy()
        mac.update(session_id.encode("utf-8"))
        return mac.hexdigest()[:12]

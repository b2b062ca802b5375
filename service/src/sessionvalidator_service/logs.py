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

from pythonjsonlogger.json import JsonFormatter

__all__ = ["SessionIdHasher", "configure_logging", "logger"]

logger = logging.getLogger("sessionvalidator")


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
    for name in ("grpc", "asyncio", "redis"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


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

"""WSGI (and CGI-style) helper: validate the Cookie header of a WSGI ``environ``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessionvalidator._client import Client
from sessionvalidator._models import Validation

__all__ = ["validate_environ"]


def validate_environ(client: Client, environ: Mapping[str, Any], *, timeout: float | None = None) -> Validation:
    """Judge the Cookie header of a WSGI request (Flask, Django, Pyramid, ...).

    PEP 3333 gives header values as "bytes as str": each byte one latin-1
    character, so ``HTTP_COOKIE`` is encoded back to latin-1 and sent as the
    exact bytes the browser sent. Without ``HTTP_COOKIE`` the request had no
    Cookie header (``VERDICT_MISSING``, ``REASON_NO_COOKIE``).
    """
    header = environ.get("HTTP_COOKIE")
    if header is not None and not isinstance(header, str | bytes):
        raise TypeError(f"environ['HTTP_COOKIE'] must be a str, got {type(header).__name__}")
    return client.validate_cookie_header(header, timeout=timeout)

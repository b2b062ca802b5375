"""ASGI middleware: validate every HTTP request and websocket handshake before the app sees it.

Plain ASGI, no framework import, so it wraps Starlette, FastAPI or any other
ASGI app. Starlette and FastAPI read ``scope["state"]`` as ``request.state``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import grpc

from sessionvalidator._client import AsyncClient
from sessionvalidator._errors import SessionValidatorError
from sessionvalidator._models import Validation

__all__ = [
    "ASGIApp",
    "Receive",
    "Scope",
    "Send",
    "SessionValidatorMiddleware",
    "default_unauthorized_response",
    "default_unavailable_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``scope["state"]`` keys (``request.state.session_validation`` / ``.session_user`` in Starlette).
VALIDATION_KEY = "session_validation"
USER_KEY = "session_user"

log = logging.getLogger("sessionvalidator")

#: At most one "no verdict" warning per this many seconds (per middleware), with a count of the ones left out.
WARN_EVERY_S = 10.0

# Websocket close codes: 4401 is the application range (4000-4999) echoing HTTP
# 401; 1013 is RFC 6455's registered "Try Again Later".
WS_UNAUTHORIZED = 4401
WS_TRY_AGAIN_LATER = 1013


class JSONResponse:
    """A minimal ASGI JSON response, so the middleware needs no framework."""

    def __init__(self, status: int, content: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.status = status
        self.body = json.dumps(content, separators=(",", ":")).encode("utf-8")
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            *headers,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - ASGI signature
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def default_unauthorized_response(scope: Scope, validation: Validation) -> ASGIApp:  # noqa: ARG001 - hook signature
    """401 ``{"error": "unauthorized"}``, ``cache-control: no-store``."""
    return JSONResponse(401, {"error": "unauthorized"})


def default_unavailable_response(scope: Scope, error: SessionValidatorError) -> ASGIApp:  # noqa: ARG001 - hook signature
    """503 ``{"error": "unavailable"}`` with ``Retry-After: 1``, or 429 ``{"error": "rate_limited"}``."""
    return denial_for_error(error, expose_verdict=False)


def denial_for_error(error: SessionValidatorError, *, expose_verdict: bool) -> JSONResponse:
    """Answer a call without a verdict as the table says: 429 for RESOURCE_EXHAUSTED, else 503."""
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        seconds = max(1, math.ceil(error.retry_delay or 0))
        return JSONResponse(429, {"error": "rate_limited"}, [(b"retry-after", str(seconds).encode("ascii"))])
    body = {"error": "unavailable"}
    if expose_verdict:
        body["reason"] = error.cause
    return JSONResponse(503, body, [(b"retry-after", b"1")])


class _WarningLimiter:
    """Logs "no verdict" at WARNING at most once per ``every`` seconds, counting the ones left out."""

    def __init__(self, every: float = WARN_EVERY_S) -> None:
        self._every = every
        self._last = -math.inf
        self._suppressed = 0
        self._lock = threading.Lock()

    def warn(self, error: SessionValidatorError) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._every:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        status = 429 if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED else 503
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        log.warning(
            "sessionvalidator: no verdict, answering %d: %s%s",
            status,
            error.cause,
            more,
            extra={"event": "session_validation_unavailable", "cause": error.cause, "suppressed": suppressed},
        )


class SessionValidatorMiddleware:
    """Let through only requests whose ``connect.sid`` cookie holds a logged-in user's valid session.

    For every ``http`` and ``websocket`` scope (``lifespan`` and others pass
    straight through), all Cookie headers are sent to the validator, byte for
    byte and joined with ``"; "``. The :class:`Validation` is stored at
    ``scope["state"]["session_validation"]`` and the logged-in user (or
    ``None``) at ``scope["state"]["session_user"]``: ``request.state.…`` in
    Starlette and FastAPI.

    The decisions are the same in every SessionValidator client
    (tests/vectors/client_conformance.json):

    * a valid session with a logged-in Passport user: the app runs;
    * a valid session without one (never logged in, logged out): refused,
      unless ``allow_anonymous_sessions=True`` (then the app runs with
      ``session_user`` ``None``);
    * any other verdict: ``unauthorized_response(scope, validation)`` answers
      (default: 401 ``{"error": "unauthorized"}``), unless
      ``allow_anonymous=True``, which lets every request with a verdict
      through so the app decides from ``session_validation`` itself;
    * no verdict (:class:`SessionValidatorError`: store down, validator
      unreachable or overloaded, deadline passed, rate limited):
      ``unavailable_response(scope, error)`` answers (default: 503
      ``{"error": "unavailable"}`` with ``Retry-After: 1``, or 429
      ``{"error": "rate_limited"}`` for RESOURCE_EXHAUSTED), and a warning
      naming the cause (never the cookie) is logged on the
      ``sessionvalidator`` logger, at most once every 10 s. This happens even
      with ``allow_anonymous``: an outage never becomes a verdict.

    Every default refusal is JSON with ``cache-control: no-store``.
    ``expose_verdict=True`` adds the verdict and reason to the 401 body and the
    cause to the 503 body (off by default: it tells a caller whether a forged
    signature verified). ``require_authenticated`` is deprecated: refusing
    sessions without a user is the default.

    A hook returns any ASGI app to answer with, such as a Starlette
    ``RedirectResponse("/login")``.

    Websockets: the hooks do not apply. The handshake is accepted and at once
    closed with code 4401 (not valid) or 1013 "Try Again Later" (validator
    could not decide), so browser code can tell the two apart from
    ``CloseEvent.code``; the app is never called. (Closing before accepting
    would turn both into an HTTP 403 that browsers do not expose.)

    ``exclude_paths`` are never validated and get no state: an entry matches
    that exact path, or every path below it when it ends with ``/``
    (``("/healthz", "/static/")``).
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AsyncClient,
        *,
        allow_anonymous_sessions: bool = False,
        allow_anonymous: bool = False,
        expose_verdict: bool = False,
        require_authenticated: bool = True,
        unauthorized_response: Callable[[Scope, Validation], ASGIApp] | None = None,
        unavailable_response: Callable[[Scope, SessionValidatorError], ASGIApp] | None = None,
        exclude_paths: Iterable[str] = (),
    ) -> None:
        if not require_authenticated and not allow_anonymous_sessions:
            # The old spelling of allow_anonymous_sessions=True.
            allow_anonymous_sessions = True
        self.app = app
        self.client = client
        self.allow_anonymous = allow_anonymous
        self.allow_anonymous_sessions = allow_anonymous_sessions
        self.expose_verdict = expose_verdict
        self.unauthorized_response = unauthorized_response or self._default_unauthorized
        self.unavailable_response = unavailable_response or self._default_unavailable
        self._warnings = _WarningLimiter()
        paths = tuple(exclude_paths)
        self._exact = frozenset(path for path in paths if not path.endswith("/"))
        self._prefixes = tuple(path for path in paths if path.endswith("/"))

    def _default_unauthorized(self, scope: Scope, validation: Validation) -> ASGIApp:
        if not self.expose_verdict:
            return default_unauthorized_response(scope, validation)
        return JSONResponse(401, {"error": "unauthorized", "verdict": validation.verdict, "reason": validation.reason})

    def _default_unavailable(self, scope: Scope, error: SessionValidatorError) -> ASGIApp:  # noqa: ARG002 - hook signature
        return denial_for_error(error, expose_verdict=self.expose_verdict)

    def _excluded(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    def _admits(self, validation: Validation) -> bool:
        if self.allow_anonymous:
            return True
        return validation.valid and (validation.authenticated or self.allow_anonymous_sessions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in {"http", "websocket"} or self._excluded(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        try:
            validation = await self.client.validate_headers(scope.get("headers", ()))
        except SessionValidatorError as exc:
            self._warnings.warn(exc)
            if kind == "websocket":
                await _close_websocket(receive, send, WS_TRY_AGAIN_LATER, "unavailable")
            else:
                await self.unavailable_response(scope, exc)(scope, receive, send)
            return
        _annotate_span(validation)
        state = scope.setdefault("state", {})
        state[VALIDATION_KEY] = validation
        state[USER_KEY] = validation.user if validation.valid and validation.authenticated else None
        if self._admits(validation):
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await _close_websocket(receive, send, WS_UNAUTHORIZED, "unauthorized")
        else:
            await self.unauthorized_response(scope, validation)(scope, receive, send)


def _annotate_span(validation: Validation) -> None:
    """Put the verdict on the request's current span, when the application traces with OpenTelemetry.

    Nothing is imported for it: an application that never imported OpenTelemetry pays one dict lookup.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                "sessionvalidator.verdict": validation.verdict,
                "sessionvalidator.reason": validation.reason,
                "sessionvalidator.authenticated": validation.authenticated,
            }
        )


async def _close_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    """Complete the handshake, then close with ``code``, so the client sees the code."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})

"""ASGI middleware: validate every HTTP request and websocket handshake before the app sees it.

Plain ASGI, no framework import, so it wraps Starlette, FastAPI or any other
ASGI app. Starlette and FastAPI read ``scope["state"]`` as ``request.state``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from sessionvalidator._client import AsyncClient
from sessionvalidator._errors import SessionValidatorError, StoreUnavailableError
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

# The ErrorInfo reasons with which the validator says its session store failed.
STORE_REASONS = frozenset({"STORE_UNAVAILABLE", "STORE_TIMEOUT"})

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
    """401 ``{"error": "unauthorized", "verdict": ..., "reason": ...}``."""
    return JSONResponse(
        401,
        {"error": "unauthorized", "verdict": validation.verdict, "reason": validation.reason},
    )


def default_unavailable_response(scope: Scope, error: SessionValidatorError) -> ASGIApp:  # noqa: ARG001 - hook signature
    """503 ``{"error": "session store unavailable"}``, or ``"session validator unavailable"`` when not the store."""
    return JSONResponse(503, {"error": _unavailable_message(error)})


def _unavailable_message(error: SessionValidatorError) -> str:
    if isinstance(error, StoreUnavailableError) and error.reason in STORE_REASONS:
        return "session store unavailable"
    return "session validator unavailable"


class SessionValidatorMiddleware:
    """Let through only requests whose ``connect.sid`` cookie the validator calls valid.

    For every ``http`` and ``websocket`` scope (``lifespan`` and others pass
    straight through), all Cookie headers are sent to the validator, byte for
    byte and joined with ``"; "``. The :class:`Validation` is stored at
    ``scope["state"]["session_validation"]`` and the logged-in user (or
    ``None``) at ``scope["state"]["session_user"]``: ``request.state.…`` in
    Starlette and FastAPI.

    Then:

    * valid (and, with ``require_authenticated=True``, logged in): the app runs;
    * otherwise: ``unauthorized_response(scope, validation)`` answers (default:
      401 JSON ``{"error": "unauthorized", "verdict": ..., "reason": ...}``),
      unless ``allow_anonymous=True``, which lets the request through so the
      app decides from ``session_validation`` itself;
    * the validator could not decide (:class:`SessionValidatorError`: store
      down, deadline passed): ``unavailable_response(scope, error)`` answers
      (default: 503 JSON ``{"error": "session store unavailable"}``, or
      ``"session validator unavailable"`` when the store is not the cause). This
      happens even with ``allow_anonymous``: an outage never becomes a verdict.

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
        allow_anonymous: bool = False,
        require_authenticated: bool = False,
        unauthorized_response: Callable[[Scope, Validation], ASGIApp] = default_unauthorized_response,
        unavailable_response: Callable[[Scope, SessionValidatorError], ASGIApp] = default_unavailable_response,
        exclude_paths: Iterable[str] = (),
    ) -> None:
        if allow_anonymous and require_authenticated:
            raise ValueError("allow_anonymous and require_authenticated contradict each other; pick one")
        self.app = app
        self.client = client
        self.allow_anonymous = allow_anonymous
        self.require_authenticated = require_authenticated
        self.unauthorized_response = unauthorized_response
        self.unavailable_response = unavailable_response
        paths = tuple(exclude_paths)
        self._exact = frozenset(path for path in paths if not path.endswith("/"))
        self._prefixes = tuple(path for path in paths if path.endswith("/"))

    def _excluded(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    def _admits(self, validation: Validation) -> bool:
        if validation.valid:
            return validation.authenticated or not self.require_authenticated
        return self.allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in {"http", "websocket"} or self._excluded(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        try:
            validation = await self.client.validate_headers(scope.get("headers", ()))
        except SessionValidatorError as exc:
            if kind == "websocket":
                await _close_websocket(receive, send, WS_TRY_AGAIN_LATER, _unavailable_message(exc))
            else:
                await self.unavailable_response(scope, exc)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[VALIDATION_KEY] = validation
        state[USER_KEY] = validation.user if validation.valid else None
        if self._admits(validation):
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await _close_websocket(receive, send, WS_UNAUTHORIZED, "unauthorized")
        else:
            await self.unauthorized_response(scope, validation)(scope, receive, send)


async def _close_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    """Complete the handshake, then close with ``code``, so the client sees the code."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})

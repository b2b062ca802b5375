"""HTTP forward-auth: nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``ForwardAuth``, Envoy HTTP ext_authz.

Off unless ``SESSIONVALIDATOR_HTTP_LISTEN`` is set; it then runs on its own
port in the same event loop as the gRPC server. Any method on ``/auth`` or a
path below it (Envoy's HTTP ext_authz appends the original path to its
``path_prefix``) is judged like ``ValidateSession`` and answered as
:mod:`.gateway` decides: 200 with the user headers, 401 without a valid
session, 503 when the store cannot answer (429 when one client sends too
many bad cookies, 500 for a bug). ``GET /healthz`` answers 200 while the
store answers (readiness) and 503 otherwise. ``GET /.well-known/jwks.json``
answers the session tokens' public keys (an empty set while tokens are off). Anything else is 404.

The Cookie header is read byte-exact from the raw request (latin-1, as Node
reads it); several Cookie headers are joined with ``; ``.

Server: aiohttp's low-level ``Server`` (no router, no middleware): a
well-kept asyncio HTTP/1.1 server with a C parser (llhttp) and keep-alive,
that runs inside the loop the gRPC server already uses, so no second thread
or process competes for the GIL.

Slow and idle clients cost this port, never the gRPC one: it holds at most
``SESSIONVALIDATOR_HTTP_MAX_CONNECTIONS`` connections (past that a new one is
answered 503 and closed at once), and a request's head must arrive within
``SESSIONVALIDATOR_HTTP_HEADER_TIMEOUT_S`` of its first byte (or of the
connection, for the first request), else the connection is closed: a
slowloris cannot hold file descriptors that gRPC needs. An idle keep-alive
connection is closed after 75 s, as before.

On shutdown, idle keep-alive connections (nginx and Caddy keep some open) are
closed at once and a request in progress is answered with
``Connection: close``, so shutdown with gateways attached takes as long as
without them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web, web_protocol, web_request, web_server

from sessionvalidator_service.config import HttpLimits
from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.errors import FailureReporter, failure_for, rate_limited
from sessionvalidator_service.gateway import Decision, GatewayPolicy, decide, failed, join_cookie_headers
from sessionvalidator_service.logs import LogBudget
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.ratelimit import Identity, identity_of
from sessionvalidator_service.tokens import NO_KEYS, TokenIssuer
from sessionvalidator_service.tracing import Tracing
from sessionvalidator_service.validator import OverloadedError, Validator

__all__ = ["AUTH_PATH", "HEALTH_PATH", "JWKS_PATH", "HttpAuthServer"]

log = logging.getLogger("sessionvalidator.http")

AUTH_PATH = "/auth"
HEALTH_PATH = "/healthz"
# The JWKS of the session tokens (tokens.py), where verifiers look for it; 404 while tokens are off.
JWKS_PATH = "/.well-known/jwks.json"
# Node refuses more than 16 KiB of headers; keep room so the validator, not the parser, answers (TOO_LARGE).
_MAX_FIELD = 64 * 1024


class _RedactParserErrors(logging.Filter):
    """aiohttp logs a refused request with the offending bytes (a whole Cookie header) and a traceback.

    Its records are rewritten to one line without them, at most one a second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        now = time.monotonic()
        if now - self._last < 1.0:
            return False
        self._last = now
        error = type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1] else ""
        record.msg, record.args, record.exc_info, record.exc_text = "HTTP request refused by the parser", (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.event, record.error = "http_request_refused", error
        return True


_KEEPALIVE_S = 75.0


def _raw_response(decision: Decision) -> bytes:
    """``decision`` as the bytes of a whole HTTP/1.1 response that closes the connection."""
    head = [f"HTTP/1.1 {decision.status} {HTTPStatus(decision.status).phrase}"]
    head += [f"{name}: {value}" for name, value in decision.headers]
    head += ["connection: close", f"content-length: {len(decision.body)}", "", ""]
    return "\r\n".join(head).encode("ascii") + decision.body


class _Connection(web_protocol.RequestHandler):
    """aiohttp's connection handler, within the port's connection limit and with a deadline for request heads."""

    def __init__(self, owner: HttpAuthServer, manager: web_server.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._owner = owner
        self._head_deadline: asyncio.TimerHandle | None = None
        self._counted = False
        # No request is being handled: the next bytes start a request head.
        self.between_requests = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self._owner
        if owner.open_connections >= owner.limits.max_connections or owner.stopping:
            owner.refuse(transport)
            return
        owner.open_connections += 1
        self._counted = True
        super().connection_made(transport)
        self._arm(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return
        self._counted = False
        self._owner.open_connections -= 1
        self.head_received()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.between_requests and self._head_deadline is None and self.transport is not None:
            self._arm(self.transport)
        super().data_received(data)

    def _arm(self, transport: asyncio.BaseTransport) -> None:
        self._head_deadline = self._loop.call_later(self._owner.limits.header_timeout_s, transport.close)

    def head_received(self) -> None:
        """Call off the head deadline: a request's head arrived, or the connection is gone."""
        self.between_requests = False
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


# Instead of aiohttp's own, which names its and Python's versions.
_SERVER = {"server": "sessionvalidator"}
_parser_log = logging.getLogger("sessionvalidator.http.parser")
_parser_log.addFilter(_RedactParserErrors())


class HttpAuthServer:
    """The forward-auth endpoint and ``/healthz`` on one port."""

    def __init__(
        self,
        validator: Validator,
        *,
        metrics: Metrics,
        policy: GatewayPolicy,
        ready: Callable[[], bool],
        peer_header: str | None = None,
        identify: bool = True,
        limits: HttpLimits | None = None,
        tokens: TokenIssuer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tokens = tokens
        self._tracing = tracing
        self.limits = limits or HttpLimits()
        self.open_connections = 0
        self.stopping = False
        self._refusals = LogBudget(log)
        # What a connection over the limit is told before it is closed: the 503 of an overloaded validator.
        self._refused = _raw_response(failed(failure_for(OverloadedError()), policy))
        self._validator = validator
        self._metrics = metrics
        self._reporter = FailureReporter(metrics)
        self._policy = policy
        self._ready = ready
        self._peer_header = peer_header
        self._identify = identify
        self._server: asyncio.Server | None = None
        self._handler: web_server.Server | None = None
        self.port = 0

    async def start(self, listen: str, *, reuse_port: bool = False) -> int:
        """Listen on ``listen`` (host:port, port 0 picks one) and return the bound port."""
        host, _, port = listen.rpartition(":")
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {
            "access_log": None,
            "logger": _parser_log,
            "max_field_size": _MAX_FIELD,
            "max_line_size": _MAX_FIELD,
            "keepalive_timeout": _KEEPALIVE_S,
        }
        handler = self._handler = web_server.Server(self._handle, **options)
        self._server = await loop.create_server(
            lambda: _Connection(self, handler, loop=loop, **options),
            host.strip("[]") or None,
            int(port),
            reuse_port=reuse_port or None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        """Answer a connection over the limit (or during shutdown) with 503 and close it."""
        cast("asyncio.Transport", transport).write(
            self._refused
        )  # uvloop's transports are not WriteTransport subclasses
        transport.close()
        if not self.stopping:
            self._refusals.warning(
                "http_connection_refused",
                "forward-auth connection refused: the port holds its limit",
                max_connections=self.limits.max_connections,
            )

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, close idle keep-alive connections, let requests in progress finish within ``grace_s``."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._handler is not None:
            self._handler.pre_shutdown()  # idle connections end now, busy ones after their response
            await self._handler.shutdown(grace_s)
        if self._server is not None:
            await self._server.wait_closed()

    def _identity(self, request: web_request.BaseRequest) -> Identity | None:
        if not self._identify:
            return None
        forwarded = request.headers.get(self._peer_header) if self._peer_header is not None else None
        return identity_of(f"ipv4:{request.remote or ''}:0", forwarded)

    def _response(self, decision: Decision) -> web.Response:
        self._metrics.gateway_decision("http", decision.kind, decision.label)
        response = web.Response(status=decision.status, body=decision.body or None, headers=_SERVER)
        for name, value in decision.headers:
            response.headers[name] = value
        return response

    async def _handle(self, request: web_request.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        if isinstance(connection, _Connection):
            connection.head_received()
        try:
            response = await self._answer(request)
        finally:
            if isinstance(connection, _Connection):
                connection.between_requests = True
        if self.stopping:
            response.force_close()  # Connection: close, so the gateway does not send the next request here
        return response

    async def _answer(self, request: web_request.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if path == AUTH_PATH or path.startswith(AUTH_PATH + "/"):
            with self._metrics.timed("ForwardAuth"):
                if self._tracing is None:
                    return await self._check(request)
                with self._tracing.http(request.method, request.headers) as span:
                    response = await self._check(request)
                    span.set_attribute("http.response.status_code", response.status)
                    return response
        if path == JWKS_PATH and request.method in {"GET", "HEAD"}:
            return self._jwks()
        if path == HEALTH_PATH and request.method in {"GET", "HEAD"}:
            ready = self._ready()
            return web.Response(
                status=200 if ready else 503, text="ok" if ready else "store unavailable", headers=_SERVER
            )
        return web.Response(status=404, headers=_SERVER)

    def _jwks(self) -> web.Response:
        """Return the public keys that verify session tokens (none while tokens are off).

        Verifiers may cache them for a token's lifetime at most (see the README's key rotation).
        """
        tokens = self._tokens
        body, cache = NO_KEYS, "no-store"
        if tokens is not None:
            body, cache = tokens.keys.jwks, f"public, max-age={tokens.config.jwks_max_age_s}"
        return web.Response(
            body=body, headers={**_SERVER, "content-type": "application/jwk-set+json", "cache-control": cache}
        )

    async def _check(self, request: web_request.BaseRequest) -> web.Response:
        cookies = [value for name, value in request.raw_headers if name.lower() == b"cookie"]
        header = header_from_bytes(join_cookie_headers(cookies)) if cookies else ""
        try:
            outcome = await self._validator.validate(("header", header), self._identity(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a decision (errors.py)
            return self._response(failed(self._reporter.failure(exc), self._policy))
        if outcome.reason is None:
            return self._response(failed(rate_limited(outcome.retry_after_s or 0.0, outcome.scope), self._policy))
        return self._response(decide(outcome, self._policy, self._validator.hasher, self._tokens))

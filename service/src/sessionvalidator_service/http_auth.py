"""HTTP forward-auth: nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``ForwardAuth``, Envoy HTTP ext_authz.

Off unless ``SESSIONVALIDATOR_HTTP_LISTEN`` is set; it then runs on its own
port in the same event loop as the gRPC server. Any method on ``/auth`` or a
path below it (Envoy's HTTP ext_authz appends the original path to its
``path_prefix``) is judged like ``ValidateSession`` and answered as
:mod:`.gateway` decides: 200 with the user headers, 401 without a valid
session, 503 when the store cannot answer (429 when one client sends too
many bad cookies, 500 for a bug). ``GET /healthz`` answers 200 while the
store answers (readiness) and 503 otherwise. Anything else is 404.

The Cookie header is read byte-exact from the raw request (latin-1, as Node
reads it); several Cookie headers are joined with ``; ``.

Server: aiohttp's low-level ``Server`` (no router, no middleware): a
well-kept asyncio HTTP/1.1 server with a C parser (llhttp) and keep-alive,
that runs inside the loop the gRPC server already uses, so no second thread
or process competes for the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web, web_request, web_server

from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.errors import FailureReporter, rate_limited
from sessionvalidator_service.gateway import Decision, GatewayPolicy, decide, failed, join_cookie_headers
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.ratelimit import Identity, identity_of
from sessionvalidator_service.validator import Validator

__all__ = ["AUTH_PATH", "HEALTH_PATH", "HttpAuthServer"]

log = logging.getLogger("sessionvalidator.http")

AUTH_PATH = "/auth"
HEALTH_PATH = "/healthz"
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
    ) -> None:
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
        self._handler = web_server.Server(
            self._handle,
            access_log=None,
            logger=_parser_log,
            max_field_size=_MAX_FIELD,
            max_line_size=_MAX_FIELD,
            keepalive_timeout=75.0,
        )
        self._server = await asyncio.get_running_loop().create_server(
            self._handler, host.strip("[]") or None, int(port), reuse_port=reuse_port or None
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, then let requests in progress finish within ``grace_s``."""
        if self._server is not None:
            self._server.close()
        if self._handler is not None:
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
        path = request.raw_path.partition("?")[0]
        if path == AUTH_PATH or path.startswith(AUTH_PATH + "/"):
            with self._metrics.timed("ForwardAuth"):
                return await self._check(request)
        if path == HEALTH_PATH and request.method in {"GET", "HEAD"}:
            ready = self._ready()
            return web.Response(
                status=200 if ready else 503, text="ok" if ready else "store unavailable", headers=_SERVER
            )
        return web.Response(status=404, headers=_SERVER)

    async def _check(self, request: web_request.BaseRequest) -> web.Response:
        cookies = [value for name, value in request.raw_headers if name.lower() == b"cookie"]
        header = header_from_bytes(join_cookie_headers(cookies)) if cookies else ""
        try:
            outcome = await self._validator.validate(("header", header), self._identity(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a decision (errors.py)
            return self._response(failed(self._reporter.failure(exc), self._policy))
        if outcome.reason is None:
            return self._response(failed(rate_limited(outcome.retry_after_s or 0.0, outcome.scope), self._policy))
        return self._response(decide(outcome, self._policy, self._validator.hasher))

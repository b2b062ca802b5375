"""Envoy external authorization (``envoy.service.auth.v3.Authorization/Check``) on the gRPC port.

An adapter like :mod:`.servicer`: the Cookie header comes out of the
CheckRequest, the :class:`~.validator.Validator` judges it exactly as
``ValidateSession`` would, and :mod:`.gateway` decides what Envoy is told.

The Cookie header is read byte-exact from ``header_map`` raw values when
Envoy sends them (``encode_raw_headers: true``; several Cookie headers are
joined with ``; ``), else from the ``headers`` map. The user reaches the
upstream in request headers set with ``OVERWRITE_IF_EXISTS_OR_ADD``; every
other header name of ours, and every identity lookalike the request carries
(``X_Session_User_Id``: see :mod:`.gateway`), is in ``headers_to_remove``, so a
client cannot send ``x-session-user-id`` itself in any spelling. Envoy sends
only the headers its ``allowed_headers`` names: the example names the Cookie
and the lookalikes. A denial is ``status`` UNAUTHENTICATED
with a 401 ``denied_response``; a store outage is ``status`` UNAVAILABLE
with a 503 ``denied_response`` (not a gRPC error: a gRPC error lets the
request through where ``failure_mode_allow`` is on). A validator that cannot
be reached at all is Envoy's ``status_on_error`` (configure 503).
"""

from __future__ import annotations

from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.type.v3 import http_status_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from sessionvalidator_service.cookies import header_from_bytes
from sessionvalidator_service.errors import FailureReporter, malformed_request, rate_limited
from sessionvalidator_service.gateway import Decision, GatewayPolicy, decide, failed, join_cookie_headers
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.ratelimit import Identity, identity_of
from sessionvalidator_service.tokens import TokenIssuer
from sessionvalidator_service.tracing import Tracing, check_request_headers
from sessionvalidator_service.validator import Validator

__all__ = ["SERVICE_NAME", "AuthorizationServicer", "add_to_server", "cookie_header_of"]

SERVICE_NAME: str = authz.DESCRIPTOR.services_by_name["Authorization"].full_name
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def cookie_header_of(request: Any) -> str:
    """Return the Cookie header of a CheckRequest as latin-1 text ("" when it has none)."""
    http = request.attributes.request.http
    raw = [entry.raw_value for entry in http.header_map.headers if entry.key.lower() == "cookie"]
    if raw:
        return header_from_bytes(join_cookie_headers(raw))
    text: str = http.headers.get("cookie", "")
    return text


def _header_names(request: Any) -> list[str]:
    """Every header name in a CheckRequest, from ``header_map`` and from ``headers``."""
    http = request.attributes.request.http
    return [entry.key for entry in http.header_map.headers] + list(http.headers)


def _read(data: bytes) -> Any:
    """Parse a CheckRequest; ``None`` when the body is not one."""
    try:
        return authz.CheckRequest.FromString(data)
    except DecodeError:
        return None


class AuthorizationServicer:
    """Answers Envoy's ``Check`` from a :class:`Validator`."""

    def __init__(
        self,
        validator: Validator,
        *,
        metrics: Metrics,
        policy: GatewayPolicy,
        peer_header: str | None = None,
        identify: bool = True,
        tokens: TokenIssuer | None = None,
    ) -> None:
        self._validator = validator
        self._tokens = tokens
        self._metrics = metrics
        self._reporter = FailureReporter(metrics)
        self._policy = policy
        self._peer_header = peer_header
        self._identify = identify
        self._names = policy.headers.all
        self._responses: dict[Decision, Any] = {}

    def _identity(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
        """Identify the end client: the trusted header when configured, else Envoy's source address."""
        if not self._identify:
            return None
        forwarded = None
        if self._peer_header is not None:
            forwarded = request.attributes.request.http.headers.get(self._peer_header) or None
        if forwarded is None:
            forwarded = request.attributes.source.address.socket_address.address or None
        return identity_of(context.peer(), forwarded)

    def _response(self, decision: Decision, request: Any) -> Any:
        self._metrics.gateway_decision("ext_authz", decision.kind, decision.label)
        if decision.allowed:
            # Empty values are removed, not set: a client's copy must not survive either way, in any spelling.
            setting = {name for name, value in decision.headers if value}
            sent = self._policy.headers.lookalikes(_header_names(request))
            remove = [name for name in dict.fromkeys((*self._names, *sent)) if name not in setting]
            return authz.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=authz.OkHttpResponse(
                    headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
                        )
                        for name, value in decision.headers
                        if value
                    ],
                    headers_to_remove=remove,
                ),
            )
        cached = self._responses.get(decision)
        if cached is None:
            cached = authz.CheckResponse(
                status=status_pb2.Status(code=_CODES.get(decision.status, code_pb2.INTERNAL)),
                denied_response=authz.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=decision.status),
                    headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
                        )
                        for name, value in decision.headers
                    ],
                    body=decision.body.decode("ascii"),
                ),
            )
            if decision.kind == "deny":  # fixed answers only; failures may carry a retry-after
                self._responses[decision] = cached
        return cached

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:  # noqa: N802
        """Decide one request Envoy holds."""
        with self._metrics.timed("Check"):
            if request is None:  # not a CheckRequest at all
                return self._response(failed(malformed_request(), self._policy), request)
            try:
                outcome = await self._validator.validate(
                    ("header", cookie_header_of(request)), self._identity(request, context)
                )
            except Exception as exc:  # noqa: BLE001 - every failure becomes a decision (errors.py)
                return self._response(failed(self._reporter.failure(exc), self._policy), request)
            if outcome.reason is None:
                failure = rate_limited(outcome.retry_after_s or 0.0, outcome.scope)
                return self._response(failed(failure, self._policy), request)
            return self._response(decide(outcome, self._policy, self._validator.hasher, self._tokens), request)


def add_to_server(servicer: AuthorizationServicer, server: grpc.aio.Server, tracing: Tracing | None = None) -> None:
    """Register ``Check``, with a parser that hands a body that is not a CheckRequest on as ``None``.

    While tracing, ``Check`` runs in a span continuing the context of Envoy's call, else of the request.
    """
    check: Any = servicer.Check
    if tracing is not None:
        check = tracing.grpc(check, SERVICE_NAME, "Check", fallback=check_request_headers)
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=_read, response_serializer=authz.CheckResponse.SerializeToString
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]  # stubs predate it

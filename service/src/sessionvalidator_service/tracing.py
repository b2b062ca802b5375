"""OpenTelemetry traces, when the standard ``OTEL_*`` variables ask for them.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set, or ``OTEL_TRACES_EXPORTER=otlp``; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` keeps it off regardless. While off, nothing of
OpenTelemetry is imported and no call pays for it: the front doors are
registered without a wrapper and every hook is one ``is None`` test.

While on, the official SDK does the rest as the specification says: the OTLP
exporter of ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default,
or ``grpc``), ``OTEL_SERVICE_NAME`` (default ``sessionvalidator``),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and its argument, and
the batch span processor's ``OTEL_BSP_*`` settings.

What a span holds:

* a SERVER span per call of each front door (``ValidateSession``,
  ``ValidateSessions``, ext_authz ``Check``, forward-auth), continuing the
  caller's W3C ``traceparent``/``tracestate`` (gRPC metadata; for ``Check``
  the metadata Envoy's tracing adds, else the request headers in the
  CheckRequest; the forward-auth request's headers), with RPC or HTTP
  semantic-convention attributes, the server kind, the verdict and reason,
  and whether the store's cache answered;
* a CLIENT span per store round trip (``db.system.name`` ``redis`` or
  ``mongodb``, the operation, the batch size); a round trip that coalesced
  concurrent calls is one span, a child of the first call's span, with a
  link to every other call it served.

Never in a span: a cookie, a session id, a secret, a profile field, a store
URL or a key. Exceptions are not recorded (their text could quote input);
a failed call only sets the span's status. Log lines written inside a span
carry its ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sessionvalidator_service.stores import SessionStore, StoredSession, UserRecordData

if TYPE_CHECKING:
    from sessionvalidator_service.validator import Outcome

__all__ = ["TracedStore", "Tracing", "tracing_from_env"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_PREFIX = "sessionvalidator."
_TRACE_HEADERS = ("traceparent", "tracestate")
# The span contexts of the calls a coalesced round trip serves (set by CoalescingStore in that round trip's task).
_SERVED: contextvars.ContextVar[Sequence[Any]] = contextvars.ContextVar("sessionvalidator_served", default=())


def _enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return exporter == "otlp" or any(environ.get(name, "").strip() for name in endpoints)


def tracing_from_env(environ: Mapping[str, str], *, server_kind: str) -> Tracing | None:
    """Return the tracing the ``OTEL_*`` variables configure, or ``None`` (the default: off)."""
    if not _enabled(environ):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    exporter: Any
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        resource = resource.merge(Resource({"service.name": "sessionvalidator"}))
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER(_ARG)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, server_kind)


class _Correlate(logging.Filter):
    """Adds the active span's ``trace_id`` and ``span_id`` to a log record."""

    def __init__(self, current_span: Callable[[], Any]) -> None:
        super().__init__()
        self._current_span = current_span

    def filter(self, record: logging.LogRecord) -> bool:
        context = self._current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        return True


class Tracing:
    """The tracer and everything that makes spans; built only while tracing is on."""

    def __init__(self, provider: Any, server_kind: str) -> None:
        from opentelemetry import propagate, trace

        self._provider = provider
        self._tracer = provider.get_tracer("sessionvalidator_service")
        self._trace = trace
        self._extract = propagate.extract
        self._server = trace.SpanKind.SERVER
        self._client = trace.SpanKind.CLIENT
        self._link = trace.Link
        self._kind = server_kind
        self._correlate = _Correlate(trace.get_current_span)
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._correlate)

    def shutdown(self) -> None:
        """Export what is buffered and stop (the service's shutdown)."""
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._correlate)
        self._provider.shutdown()

    # ------------------------------------------------------------ front doors

    def _server_span(self, name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Any:
        attributes[_PREFIX + "server.kind"] = self._kind
        return self._tracer.start_as_current_span(
            name,
            context=self._extract(carrier),
            kind=self._server,
            attributes=attributes,
            record_exception=False,  # an exception's text may quote input
        )

    def grpc(
        self,
        method: Callable[[_Request, Any], Awaitable[_Response]],
        service: str,
        name: str,
        fallback: Callable[[_Request], Mapping[str, str]] | None = None,
    ) -> Callable[[_Request, Any], Awaitable[_Response]]:
        """Wrap ``method`` (a gRPC handler) in a SERVER span that continues the caller's context.

        The context comes from the call's metadata; ``fallback`` names where
        else to look when the metadata carries none (the CheckRequest's headers).
        """
        span_name = f"{service}/{name}"

        async def traced(request: _Request, context: Any) -> _Response:
            carrier: Mapping[str, str] = _trace_headers(context.invocation_metadata() or ())
            if not carrier and fallback is not None and request is not None:
                carrier = fallback(request)
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
            with self._server_span(span_name, carrier, attributes) as span:
                response = await method(request, context)
                span.set_attribute("rpc.grpc.status_code", 0)
                return response

        return traced

    def http(self, method: str, headers: Mapping[str, str]) -> Any:
        """Open a SERVER span for one forward-auth request (a context manager giving the span)."""
        carrier = {name: value for name in _TRACE_HEADERS if (value := headers.get(name)) is not None}
        attributes = {"http.request.method": method, "http.route": "/auth"}
        return self._server_span(f"{method} /auth", carrier, attributes)

    def judged(self, outcome: Outcome) -> None:
        """Put a call's verdict on its span (the validator calls this for every single judgement)."""
        span = self._trace.get_current_span()
        if not span.is_recording():
            return
        reason = outcome.reason
        if reason is None:
            span.set_attribute(_PREFIX + "verdict", "REFUSED")  # rate limited before it was judged
            return
        span.set_attributes(
            {
                _PREFIX + "verdict": reason.verdict.name,
                _PREFIX + "reason": reason.name,
                _PREFIX + "authenticated": outcome.user is not None,
            }
        )

    def judged_many(self, outcomes: Iterable[Outcome]) -> None:
        """Put a batch's size and count of VALID verdicts on its span."""
        span = self._trace.get_current_span()
        if not span.is_recording():
            return
        judged = [outcome.reason for outcome in outcomes]
        span.set_attributes(
            {
                _PREFIX + "batch.size": len(judged),
                _PREFIX + "batch.valid": sum(1 for r in judged if r is not None and r.verdict.name == "VALID"),
            }
        )

    def cache(self, hit: bool) -> None:
        """Note on the current span whether the store's cache answered."""
        span = self._trace.get_current_span()
        if span.is_recording():
            span.set_attribute(_PREFIX + "cache.hit", hit)

    # ------------------------------------------------------------ the store

    def caller(self) -> Any:
        """Return the current span's context: what a coalesced round trip links to."""
        return self._trace.get_current_span().get_span_context()

    def serving(self, callers: Sequence[Any]) -> None:
        """Tell the store span of this task which calls it serves (CoalescingStore, in its round trip's task)."""
        _SERVED.set(callers)

    def store_span(self, system: str, operation: str, size: int) -> Any:
        """Open a CLIENT span for one store round trip, linked to every other call it serves."""
        first = self._trace.get_current_span().get_span_context()
        links = [self._link(c) for c in _SERVED.get() if c.is_valid and c != first]
        return self._tracer.start_as_current_span(
            f"{operation} {system}",
            kind=self._client,
            links=links,
            attributes={
                "db.system.name": system,
                "db.operation.name": operation,
                "db.operation.batch.size": size,
            },
            record_exception=False,  # a store error's text may name a key
        )


def _trace_headers(metadata: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` of gRPC metadata."""
    return {key: value for key, value in metadata if key in _TRACE_HEADERS and isinstance(value, str)}


def check_request_headers(request: Any) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` among the headers Envoy put in a CheckRequest."""
    headers = request.attributes.request.http.headers
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}


class TracedStore(SessionStore):
    """A store whose round trips are CLIENT spans; everything else passes through."""

    def __init__(self, store: SessionStore, tracing: Tracing, system: str) -> None:
        self._store = store
        self._tracing = tracing
        self._system = system

    @property
    def has_user_records(self) -> bool:
        """Pass through."""
        return self._store.has_user_records

    @property
    def coalescable(self) -> bool:
        """Pass through."""
        return self._store.coalescable

    @property
    def caches(self) -> bool:
        """Pass through."""
        return self._store.caches

    def peek(self, session_id: str) -> StoredSession | None:
        """Pass through, noting on the call's span whether the cache answered."""
        found = self._store.peek(session_id)
        self._tracing.cache(found is not None)
        return found

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """One round trip, one span."""
        with self._tracing.store_span(self._system, "get_sessions", len(session_ids)):
            return await self._store.get_sessions(session_ids)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """One round trip, one span."""
        with self._tracing.store_span(self._system, "get_users", len(user_ids)):
            return await self._store.get_users(user_ids)

    async def ping(self, timeout_s: float | None = None) -> None:
        """Pass through (readiness pings are not traced)."""
        await self._store.ping(timeout_s)

    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Pass through."""
        await self._store.write_session(session_id, session_json, ttl_s=ttl_s)

    async def aclose(self) -> None:
        """Pass through."""
        await self._store.aclose()

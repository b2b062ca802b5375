"""One trace from the browser's request through each real gateway to the validator and Redis.

The browser's span is made here and exported to a real collector (tests/support/otelcol.py); its
``traceparent`` goes to the gateway with the request. Envoy traces (the examples' ``tracing``
block, exporting to the same collector) and its ext_authz call carries its own span's context;
nginx, Caddy and Traefik pass the request's ``traceparent`` on to forward-auth as it came. Either
way the validator's server span and its store span join the browser's trace, each with the right
parent, and the header stripping of the examples is unchanged (the upstream still never sees a
client's ``x-session-*`` header: tests/gateways/test_attacks.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace

from tests.gateways.conftest import Stack, running_stack
from tests.gateways.support import GATEWAYS, Gateway, request
from tests.support.otelcol import Collector, Span, running_collector, trace_context

SERVICE = "sessionvalidator-behind-a-gateway"
SERVER_SPANS = {"envoy.service.auth.v3.Authorization/Check", "GET /auth"}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with running_collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("traced-token-keys") / "signing.pem",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_BSP_SCHEDULE_DELAY="50",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser(collector: Collector) -> Iterator[trace.Tracer]:
    provider = collector.provider("browser")
    yield provider.get_tracer("tests")
    provider.shutdown()


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def traced_gateway(request: pytest.FixtureRequest, traced_stack: Stack, collector: Collector) -> Iterator[Gateway]:
    running = GATEWAYS[request.param](
        grpc_port=traced_stack.validator.port,
        http_port=traced_stack.http_port,
        upstream_port=traced_stack.upstream.port,
        otel_port=collector.grpc_port,
    ).start()
    try:
        yield running
    finally:
        running.close()


def chain(span: Span, spans: dict[str, Span]) -> list[Span]:
    """``span`` and its ancestors among ``spans``, nearest first."""
    found = [span]
    while found[-1].parent_span_id in spans:
        found.append(spans[found[-1].parent_span_id])
    return found


def test_the_browsers_trace_reaches_redis_through_the_gateway(
    traced_gateway: Gateway, traced_stack: Stack, collector: Collector, browser: trace.Tracer
) -> None:
    cookie, _ = traced_stack.valid()
    with browser.start_as_current_span("GET /api/orders", kind=trace.SpanKind.CLIENT) as span:
        headers = trace_context()
        answer = request(traced_gateway.port, "/api/orders", [("Cookie", cookie), *headers.items()])
    assert answer.status == 200
    context = span.get_span_context()
    trace_id, browser_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def arrived(spans: list[Span]) -> bool:
        """The validator's spans, and every span between them and the browser's (Envoy exports every 5 s)."""
        ours = {s.span_id: s for s in spans if s.trace_id == trace_id}
        servers = [s for s in ours.values() if s.name in SERVER_SPANS]
        stored = any(s.name == "get_sessions redis" for s in ours.values())
        return stored and len(servers) == 1 and chain(servers[0], ours)[-1].span_id == browser_id

    spans = {s.span_id: s for s in collector.wait_for(arrived) if s.trace_id == trace_id}
    (server,) = [s for s in spans.values() if s.name in SERVER_SPANS]
    (store,) = [s for s in spans.values() if s.name == "get_sessions redis"]
    assert store.parent_span_id == server.span_id
    assert server.attributes["sessionvalidator.verdict"] == "VALID"
    # The server span descends from the browser's: directly (the gateway passed traceparent on as it came)
    # or through the gateway's own spans (Envoy), each of them in the collector too.
    ancestors = chain(server, spans)
    assert ancestors[-1].span_id == browser_id
    between = {s.service for s in ancestors[1:-1]}
    if traced_gateway.name.startswith("envoy"):
        assert between == {"envoy-ingress"}
    else:
        assert server.parent_span_id == browser_id

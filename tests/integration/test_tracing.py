"""OpenTelemetry traces from the real service to a real collector (tests/support/otelcol.py).

The caller's span is made here with the SDK and exported to the same collector;
its context reaches the service as a real caller's would: gRPC metadata, the
headers Envoy puts in a CheckRequest, the forward-auth request's headers. What
the collector wrote is then read back and checked: one trace, the right parent
links, the verdict on the server span, and none of the planted secrets anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz
from opentelemetry import trace

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.signature import Signer
from tests.integration.conftest import CORPUS
from tests.support.otelcol import Collector, Span, running_collector, trace_context
from tests.support.processes import ROOT, RedisServer, ValidatorProcess, running_validator

SERVICE = "sessionvalidator-under-test"
CASES = {case["name"]: case for case in CORPUS["cases"]}
# One session a test: a session read once is then answered by the store's cache, without a round trip.
VALID = CASES["valid_object_user"]
FOR_CHECK = CASES["valid_scalar_user"]
FOR_HTTP = CASES["valid_user_id_zero"]
CORRUPT = CASES["malformed_corrupt_stored_session"]
TEXT_CASES = [c["request"]["cookie_header_text"] for c in CORPUS["cases"] if "cookie_header_text" in c["request"]]
# What must never appear in a span: session ids, cookies and their signatures, the secrets, profile fields.
PLANTED = [
    *(session["sid"] for session in CORPUS["sessions"]),
    *(c["request"]["cookie_header_text"].split("connect.sid=")[1].split(";")[0] for c in (VALID, FOR_CHECK, FOR_HTTP)),
    *json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"]),
    "ann@example.org",
    "Ann Example",
    "u-100",
    "billing",
]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with running_collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced(collector: Collector, shared_redis: RedisServer) -> Iterator[ValidatorProcess]:
    from tests.harness import seed

    seed(shared_redis, CORPUS)
    env = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_REDIS_URL": shared_redis.url,
        "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with running_validator(env) as validator:
        yield validator


@pytest.fixture(scope="module")
def caller(collector: Collector) -> Iterator[trace.Tracer]:
    """A tracer of the test's own, exporting to the collector: the caller's side of the trace."""
    provider = collector.provider("test-caller")
    yield provider.get_tracer("tests")
    provider.shutdown()


def http_port(validator: ValidatorProcess) -> int:
    assert validator.output is not None
    serving = next(r for r in validator.output.json_lines() if r.get("event") == "serving")
    return int(serving["http_port"])


def trace_of(collector: Collector, trace_id: str, names: set[str]) -> dict[str, Span]:
    """The spans of one trace, by name, once every span in ``names`` has arrived."""
    spans = collector.wait_for(lambda spans: names <= {s.name for s in spans if s.trace_id == trace_id})
    return {s.name: s for s in spans if s.trace_id == trace_id}


VALIDATE_SESSION = "sessionvalidator.v1.SessionValidator/ValidateSession"


def validate_in_span(
    address: str, caller: trace.Tracer, name: str, cookie_header: str
) -> tuple[pb.ValidateSessionResponse, Any]:
    """Call ValidateSession inside a caller's span named ``name``, its context in the metadata; the answer and span."""
    with (
        caller.start_as_current_span(name, kind=trace.SpanKind.CLIENT) as span,
        grpc.insecure_channel(address) as channel,
    ):
        response = pb_grpc.SessionValidatorStub(channel).ValidateSession(
            pb.ValidateSessionRequest(cookie_header_text=cookie_header), metadata=context_metadata(), timeout=5
        )
    return response, span


def context_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as gRPC metadata."""
    return tuple(trace_context().items())


def every_call_arrived(traces: set[str]) -> Callable[[list[Span]], bool]:
    """Whether the server span of every trace in ``traces`` has been exported."""
    return lambda spans: {s.trace_id for s in spans if s.name == VALIDATE_SESSION} >= traces


def hex_ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_validate_session_continues_the_callers_trace_down_to_redis(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer
) -> None:
    response, span = validate_in_span(traced.address, caller, "GET /orders", VALID["request"]["cookie_header_text"])
    assert response.verdict == pb.VERDICT_VALID
    trace_id, caller_id = hex_ids(span)
    server_name = "sessionvalidator.v1.SessionValidator/ValidateSession"
    found = trace_of(collector, trace_id, {"GET /orders", server_name, "get_sessions redis"})
    server, store = found[server_name], found["get_sessions redis"]
    assert found["GET /orders"].service == "test-caller"
    assert server.service == store.service == SERVICE
    assert server.parent_span_id == caller_id
    assert server.kind == "SERVER"
    assert store.parent_span_id == server.span_id
    assert store.kind == "CLIENT"
    assert server.attributes["rpc.system"] == "grpc"
    assert server.attributes["rpc.method"] == "ValidateSession"
    assert server.attributes["sessionvalidator.verdict"] == "VALID"
    assert server.attributes["sessionvalidator.reason"] == "SESSION_ACTIVE"
    assert server.attributes["sessionvalidator.authenticated"] is True
    assert server.attributes["sessionvalidator.server.kind"] in {"grpcio", "native"}
    assert server.attributes["sessionvalidator.cache.hit"] is False
    assert store.attributes["db.system.name"] == "redis"
    assert store.attributes["db.operation.batch.size"] == 1


def test_check_continues_the_context_in_the_checkrequest_headers(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer
) -> None:
    with caller.start_as_current_span("envoy ingress", kind=trace.SpanKind.SERVER) as span:
        headers = trace_context()
    request = authz.CheckRequest()
    http = request.attributes.request.http
    http.headers.update({"cookie": FOR_CHECK["request"]["cookie_header_text"], **headers})
    with grpc.insecure_channel(traced.address) as channel:
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=authz.CheckRequest.SerializeToString,
            response_deserializer=authz.CheckResponse.FromString,
        )
        assert check(request, timeout=5).status.code == 0  # OK: allowed
    trace_id, caller_id = hex_ids(span)
    name = "envoy.service.auth.v3.Authorization/Check"
    found = trace_of(collector, trace_id, {name, "get_sessions redis"})
    assert found[name].parent_span_id == caller_id
    assert found[name].attributes["sessionvalidator.verdict"] == "VALID"
    assert found["get_sessions redis"].parent_span_id == found[name].span_id


def test_forward_auth_continues_the_requests_traceparent(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer
) -> None:
    with caller.start_as_current_span("nginx auth_request", kind=trace.SpanKind.CLIENT) as span:
        headers = trace_context()
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port(traced)}/auth",
        headers={"Cookie": FOR_HTTP["request"]["cookie_header_text"], **headers},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
        assert answer.status == 200
    trace_id, caller_id = hex_ids(span)
    found = trace_of(collector, trace_id, {"GET /auth", "get_sessions redis"})
    assert found["GET /auth"].parent_span_id == caller_id
    assert found["GET /auth"].attributes["http.response.status_code"] == 200
    assert found["GET /auth"].attributes["sessionvalidator.verdict"] == "VALID"
    assert found["get_sessions redis"].parent_span_id == found["GET /auth"].span_id


def test_a_log_line_written_in_a_call_carries_its_trace(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer
) -> None:
    response, span = validate_in_span(
        traced.address, caller, "corrupt caller", CORRUPT["request"]["cookie_header_text"]
    )
    assert response.reason == pb.REASON_CORRUPT_SESSION
    trace_id, _ = hex_ids(span)
    server = trace_of(collector, trace_id, {"sessionvalidator.v1.SessionValidator/ValidateSession"})[
        "sessionvalidator.v1.SessionValidator/ValidateSession"
    ]
    assert traced.output is not None
    line = traced.output.wait_for(lambda line: trace_id in line)
    record = json.loads(line)
    assert record["event"] == "corrupt_session"
    assert record["span_id"] == server.span_id


def test_a_batch_is_one_span_and_no_span_holds_a_secret(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer
) -> None:
    with caller.start_as_current_span("batch caller") as span, grpc.insecure_channel(traced.address) as channel:
        pb_grpc.SessionValidatorStub(channel).ValidateSessions(
            pb.ValidateSessionsRequest(
                requests=[pb.ValidateSessionRequest(cookie_header_text=text) for text in TEXT_CASES[:12]]
            ),
            metadata=context_metadata(),
            timeout=5,
        )
    trace_id, _ = hex_ids(span)
    name = "sessionvalidator.v1.SessionValidator/ValidateSessions"
    found = trace_of(collector, trace_id, {name, "get_sessions redis"})
    assert found[name].attributes["sessionvalidator.batch.size"] == 12
    assert found["get_sessions redis"].attributes["db.operation.batch.size"] > 1
    # Everything the collector received from every test of this module, resource attributes included.
    exported = collector.output.read_text()
    assert SERVICE in exported
    assert "deployment.environment.name" in exported
    for value in PLANTED:
        assert value not in exported, f"a span holds {value!r}"
    assert "cookie" not in {key.lower() for s in collector.spans() for key in s.attributes}


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    """Without OTEL_* variables the service neither imports the SDK nor builds a tracer."""
    code = (
        "import os, sys\n"
        "from sessionvalidator_service import server, tracing\n"
        "assert tracing.tracing_from_env({}, server_kind='grpcio') is None\n"
        "assert tracing.tracing_from_env({'OTEL_SDK_DISABLED': 'true',"
        " 'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:1'}, server_kind='grpcio') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


def test_a_coalesced_round_trip_is_one_span_linked_to_every_call_it_served(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer, shared_redis: RedisServer
) -> None:
    """Concurrent single calls share one store round trip: one span, a child of one call, linked to the others."""
    signer = Signer(tuple(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"])))
    with grpc.insecure_channel(traced.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        for _ in range(10):  # the calls must reach the server within one loop pass; usually the first burst does
            sessions = [mint_session(signer, user={"id": "u-coalesced"}) for _ in range(64)]
            for session in sessions:
                shared_redis.client().set("sess:" + session.session_id, session.stored_json, ex=60)
            prepared, traces = [], set()
            for session in sessions:
                with caller.start_as_current_span("burst caller") as span:
                    metadata = context_metadata()
                prepared.append(
                    (pb.ValidateSessionRequest(cookie_header_text=session.cookie_header("connect.sid")), metadata)
                )
                traces.add(hex_ids(span)[0])
            calls = [stub.ValidateSession.future(request, metadata=sent, timeout=5) for request, sent in prepared]
            assert all(call.result().verdict == pb.VERDICT_VALID for call in calls)
            spans = collector.wait_for(every_call_arrived(traces))
            servers = {s.span_id: s for s in spans if s.name == VALIDATE_SESSION and s.trace_id in traces}
            shared = [
                s
                for s in spans
                if s.name == "get_sessions redis"
                and s.trace_id in traces
                and s.attributes["db.operation.batch.size"] > 1
            ]
            if shared:
                break
        else:
            pytest.fail("no two concurrent calls ever shared a round trip")
    store = shared[0]
    assert store.parent_span_id in servers  # a child of the first call it served
    linked = {span_id for _, span_id in store.links}
    assert len(linked) == store.attributes["db.operation.batch.size"] - 1
    assert linked <= set(servers)  # and linked to each other one
    assert store.parent_span_id not in linked


def test_a_python_app_behind_the_asgi_middleware_is_one_trace_with_the_validator(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer, shared_redis: RedisServer
) -> None:
    """The app traces with the SDK and opentelemetry-instrumentation-grpc; the middleware's call joins its trace."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    from tests.support.asgi_app import serve_traced_app

    signer = Signer(tuple(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"])))
    session = mint_session(signer, user={"id": "u-python-app"})  # a session nobody read yet: not in the cache
    shared_redis.client().set("sess:" + session.session_id, session.stored_json, ex=60)
    cookie = session.cookie_header("connect.sid")
    provider = collector.provider("python-app")
    instrumentor = GrpcAioInstrumentorClient()  # type: ignore[no-untyped-call]  # the package ships no annotations here
    instrumentor.instrument(tracer_provider=provider)
    try:
        with (
            serve_traced_app(traced.address, provider) as port,
            caller.start_as_current_span("browser GET /orders", kind=trace.SpanKind.CLIENT) as span,
        ):
            headers = trace_context()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/orders", headers={"Cookie": cookie, **headers})
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
                assert answer.status == 200
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    trace_id, browser_id = hex_ids(span)
    grpc_client = "/sessionvalidator.v1.SessionValidator/ValidateSession"
    found = trace_of(collector, trace_id, {"GET /orders", grpc_client, VALIDATE_SESSION, "get_sessions redis"})
    app, client = found["GET /orders"], found[grpc_client]
    assert app.service == client.service == "python-app"
    assert app.parent_span_id == browser_id
    assert app.attributes["sessionvalidator.verdict"] == "VERDICT_VALID"  # set by the middleware
    assert client.parent_span_id == app.span_id
    assert client.kind == "CLIENT"
    assert found[VALIDATE_SESSION].parent_span_id == client.span_id
    assert found["get_sessions redis"].parent_span_id == found[VALIDATE_SESSION].span_id


def test_a_go_app_behind_the_middleware_with_otelgrpc_is_one_trace_with_the_validator(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer, shared_redis: RedisServer
) -> None:
    """tests/tracing/goapp: the Go client's middleware, the SDK and the otelgrpc stats handler as a Go app has them."""
    app_trace_reaches_redis(
        [go_app_binary()], "go-app", traced=traced, collector=collector, caller=caller, shared_redis=shared_redis
    )


def test_a_node_app_behind_the_middleware_with_instrumentation_grpc_is_one_trace_with_the_validator(
    traced: ValidatorProcess, collector: Collector, caller: trace.Tracer, shared_redis: RedisServer
) -> None:
    """tests/tracing/nodeapp: the Node client's Express middleware, the SDK and @opentelemetry/instrumentation-grpc."""
    app = ROOT / "tests" / "tracing" / "nodeapp"
    if not (app / "node_modules").exists() or not (ROOT / "clients" / "node" / "dist").exists():
        pytest.skip("run `make tracing-deps`: the Node app's and the Node client's packages are not installed")
    app_trace_reaches_redis(
        ["node", str(app / "app.js")],
        "node-app",
        traced=traced,
        collector=collector,
        caller=caller,
        shared_redis=shared_redis,
    )


def app_trace_reaches_redis(
    command: list[str],
    service: str,
    *,
    traced: ValidatorProcess,
    collector: Collector,
    caller: trace.Tracer,
    shared_redis: RedisServer,
) -> None:
    """Run an app behind a client's middleware; one request makes one trace: browser, app, gRPC client, ours."""
    signer = Signer(tuple(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"])))
    session = mint_session(signer, user={"id": "u-" + service})  # a session nobody read yet: not in the cache
    shared_redis.client().set("sess:" + session.session_id, session.stored_json, ex=60)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SESSIONVALIDATOR_ADDR": traced.address,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_SERVICE_NAME": service,
    }
    app = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert line.startswith("listening "), line
        with caller.start_as_current_span("browser GET /orders", kind=trace.SpanKind.CLIENT) as span:
            request = urllib.request.Request(
                f"http://{line.split()[1]}/orders",
                headers={"Cookie": session.cookie_header("connect.sid"), **trace_context()},
            )
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
                assert answer.status == 200
    finally:
        app.terminate()
        app.wait(10)
    trace_id, browser_id = hex_ids(span)
    found = [s for s in collector.wait_for(five_spans_of(trace_id)) if s.trace_id == trace_id]
    (app_span,) = [s for s in found if s.service == service and s.kind == "SERVER"]
    (client,) = [s for s in found if s.service == service and s.kind == "CLIENT"]
    (server,) = [s for s in found if s.service == SERVICE and s.name == VALIDATE_SESSION]
    (store,) = [s for s in found if s.name == "get_sessions redis"]
    assert app_span.parent_span_id == browser_id
    assert client.parent_span_id == app_span.span_id
    assert "ValidateSession" in client.name
    assert server.parent_span_id == client.span_id
    assert store.parent_span_id == server.span_id


def five_spans_of(trace_id: str) -> Callable[[list[Span]], bool]:
    """Whether the browser's span, the app's two and the validator's two of ``trace_id`` have been exported."""
    return lambda spans: sum(1 for s in spans if s.trace_id == trace_id) >= 5


def go_app_binary() -> str:
    """tests/tracing/goapp built into .tmp/bin (pinned modules from the Go module proxy; go caches the build)."""
    out = ROOT / ".tmp" / "bin" / "tracing-goapp"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["go", "build", "-o", str(out), "."],
        cwd=ROOT / "tests" / "tracing" / "goapp",
        check=True,
        timeout=900,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return str(out)

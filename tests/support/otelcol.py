"""A real OpenTelemetry Collector for the tracing tests: OTLP in (gRPC and HTTP), JSON lines out.

The collector is the pinned build of scripts/build-otelcol.sh (the OTLP receiver
and the file exporter of one release). Spans sent to it are written by its file
exporter, one OTLP/JSON ``ExportTraceServiceRequest`` a line, which
:meth:`Collector.spans` reads back flattened.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.support.processes import ROOT, free_port


def otelcol_binary() -> str:
    """The pinned collector, built on first use (scripts/build-otelcol.sh)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-otelcol.sh")], check=True, capture_output=True, text=True, timeout=1800
    )
    return done.stdout.strip().splitlines()[-1]


# OTLP/JSON writes SpanKind as its number.
_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(attribute: dict[str, Any]) -> Any:
    value = attribute.get("value", {})
    for kind in ("stringValue", "boolValue", "intValue", "doubleValue"):
        if kind in value:
            return int(value[kind]) if kind == "intValue" else value[kind]
    return value


@dataclass(frozen=True)
class Span:
    """One exported span, as the collector wrote it."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    raw: str  # the span's own JSON, for scans for values that must never be there


def _spans(line: str) -> Iterator[Span]:
    """The spans of one line of the file exporter's output (an OTLP/JSON ExportTraceServiceRequest)."""
    for resource_spans in json.loads(line).get("resourceSpans", []):
        resource = {a["key"]: _value(a) for a in resource_spans.get("resource", {}).get("attributes", [])}
        for scope in resource_spans.get("scopeSpans", []):
            for span in scope.get("spans", []):
                yield Span(
                    service=str(resource.get("service.name", "")),
                    name=span["name"],
                    kind=_KINDS.get(span.get("kind", 0), str(span.get("kind"))),
                    trace_id=span["traceId"],
                    span_id=span["spanId"],
                    parent_span_id=span.get("parentSpanId", ""),
                    attributes={a["key"]: _value(a) for a in span.get("attributes", [])},
                    links=[(link["traceId"], link["spanId"]) for link in span.get("links", [])],
                    raw=json.dumps(span),
                )


class Collector:
    """The collector on two free loopback ports; its exported spans in a file of its own."""

    def __init__(self) -> None:
        self.binary = otelcol_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="sv-otelcol-"))
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.output = self.dir / "traces.jsonl"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC, for OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=grpc."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP (http/protobuf), the specification's default protocol."""
        return f"http://127.0.0.1:{self.http_port}"

    def provider(self, service: str) -> TracerProvider:
        """A tracer provider of the test's own (the caller's side of a trace), exporting each span here at once."""
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=self.http_endpoint + "/v1/traces")))
        return provider

    def start(self) -> Collector:
        config = self.dir / "config.yaml"
        config.write_text(
            f"""receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{self.grpc_port}
      http:
        endpoint: 127.0.0.1:{self.http_port}
exporters:
  file:
    path: {self.output}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""
        )
        log = (self.dir / "otelcol.log").open("ab")
        self._process = subprocess.Popen([self.binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._listening():
            if self._process.poll() is not None or time.monotonic() > deadline:
                text = (self.dir / "otelcol.log").read_text(errors="replace")[-3000:]
                self.close()
                msg = f"the collector did not start:\n{text}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        for port in (self.grpc_port, self.http_port):
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def spans(self) -> list[Span]:
        """Every span exported so far."""
        if not self.output.exists():
            return []
        # The last line may be one the collector is still writing: only whole lines are read.
        lines = self.output.read_text().split("\n")[:-1]
        return [span for line in lines if line.strip() for span in _spans(line)]

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 20.0) -> list[Span]:
        """Wait until the exported spans satisfy ``predicate``; return them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = [(s.service, s.name, s.trace_id[:8]) for s in spans]
                msg = f"the collector's output never satisfied the test; it holds {names}"
                raise AssertionError(msg)
            time.sleep(0.1)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def trace_context() -> dict[str, str]:
    """The current trace context as headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def running_collector() -> Iterator[Collector]:
    """A started collector, closed afterwards."""
    collector = Collector().start()
    try:
        yield collector
    finally:
        collector.close()

"""A small ASGI app protected by the Python client's middleware, traced as an instrumented app would be."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from opentelemetry import context, propagate, trace

from sessionvalidator import AsyncClient, SessionValidatorMiddleware
from sessionvalidator._asgi import Receive, Scope, Send


async def _orders(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001 - ASGI signature
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"orders"})


class _Traced:
    """A SERVER span per request, continuing its traceparent (as opentelemetry-instrumentation-asgi would)."""

    def __init__(self, app: Any, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        token = context.attach(propagate.extract(carrier))
        try:
            with self.tracer.start_as_current_span(f"{scope['method']} {scope['path']}", kind=trace.SpanKind.SERVER):
                await self.app(scope, receive, send)
        finally:
            context.detach(token)


@contextlib.contextmanager
def serve_traced_app(validator: str, provider: Any) -> Iterator[int]:
    """Serve the app under uvicorn on a free loopback port; yield the port."""
    app = _Traced(SessionValidatorMiddleware(_orders, AsyncClient(validator)), provider.get_tracer("app"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "uvicorn did not start"
            raise RuntimeError(msg)
        time.sleep(0.01)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

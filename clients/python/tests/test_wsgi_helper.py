"""validate_environ: a real WSGI server (wsgiref) hands the header over as latin-1 text."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from sessionvalidator import Client, validate_environ

pytestmark = pytest.mark.integration


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def wsgi_site(addr: str) -> Iterator[str]:
    client = Client(addr)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        validation = validate_environ(client, environ)
        body = {"verdict": validation.verdict, "user": validation.user.id if validation.user else None}
        start_response("200 OK" if validation.valid else "401 Unauthorized", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def get(hostport: str, cookie: bytes | None) -> tuple[int, dict[str, Any]]:
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", "/")
        if cookie is not None:
            conn.putheader("Cookie", cookie)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_wsgi_valid_and_missing(wsgi_site: str, valid_cookie: bytes) -> None:
    assert get(wsgi_site, valid_cookie) == (200, {"verdict": "VERDICT_VALID", "user": "u-100"})
    assert get(wsgi_site, None) == (401, {"verdict": "VERDICT_MISSING", "user": None})


def test_wsgi_latin1_bytes_survive(wsgi_site: str, latin1_cookie: bytes) -> None:
    assert get(wsgi_site, latin1_cookie) == (200, {"verdict": "VERDICT_VALID", "user": "latin"})


def test_environ_without_server(addr: str, tampered_cookie: bytes) -> None:
    with Client(addr) as client:
        assert validate_environ(client, {}).reason == "REASON_NO_COOKIE"
        environ = {"HTTP_COOKIE": tampered_cookie.decode("latin-1")}
        assert validate_environ(client, environ).verdict == "VERDICT_BAD_SIGNATURE"
        with pytest.raises(TypeError, match="HTTP_COOKIE"):
            validate_environ(client, {"HTTP_COOKIE": 42})

"""SessionValidatorMiddleware over real HTTP and websockets: uvicorn on loopback, the live validator behind it."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.util
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from sessionvalidator import AsyncClient, SessionValidatorError, SessionValidatorMiddleware, Validation
from sessionvalidator._asgi import Message, Scope

pytestmark = pytest.mark.integration

# ---------------------------------------------------------------- serving and calling


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn (its default loop and protocols) on 127.0.0.1:0; yield host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def get(hostport: str, path: str, headers: Sequence[tuple[str, bytes]] = ()) -> tuple[int, dict[str, str], Any]:
    """GET ``path`` with exactly these headers (repeats allowed, values as raw bytes)."""
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        content_type = response.getheader("content-type", "")
        parsed = json.loads(body) if content_type.startswith("application/json") else body.decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def cookie(value: bytes) -> list[tuple[str, bytes]]:
    return [("Cookie", value)]


# ---------------------------------------------------------------- the Starlette app under test


async def whoami(request: Request) -> JSONResponse:
    validation: Validation = request.state.session_validation
    user = request.state.session_user
    return JSONResponse(
        {
            "verdict": validation.verdict,
            "authenticated": validation.authenticated,
            "user": None if user is None else {"id": user.id, "username": user.username, "roles": list(user.roles)},
            "lifespan_state": getattr(request.state, "started_by_lifespan", None),
        }
    )


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("validated" if hasattr(request.state, "session_validation") else "not validated")


async def ws_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    user = websocket.state.session_user
    await websocket.send_text(user.id if user is not None else "anonymous")
    await websocket.close()


def starlette_app(
    target: str, events: list[str] | None = None, *, client_timeout: float | None = None, **options: Any
) -> Starlette:
    """The shape a real app has: the client built at import time, closed by the lifespan."""
    client = AsyncClient(target) if client_timeout is None else AsyncClient(target, timeout=client_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if events is not None:
            events.append("startup")
        yield {"started_by_lifespan": True}
        await client.aclose()
        if events is not None:
            events.append("shutdown")

    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/healthz", healthz),
            Route("/static/{name}", healthz),
            Route("/healthzz", healthz),
            WebSocketRoute("/ws", ws_whoami),
        ],
        middleware=[
            Middleware(SessionValidatorMiddleware, client=client, exclude_paths=("/healthz", "/static/"), **options)
        ],
        lifespan=lifespan,
    )


@pytest.fixture(scope="module")
def site(addr: str) -> Iterator[str]:
    with serving(starlette_app(addr, expose_verdict=True)) as hostport:
        yield hostport


# ---------------------------------------------------------------- HTTP


def test_valid_session_reaches_the_app_with_the_user(site: str, valid_cookie: bytes) -> None:
    status, _, body = get(site, "/whoami", cookie(valid_cookie))
    assert status == 200
    assert body == {
        "verdict": "VERDICT_VALID",
        "authenticated": True,
        "user": {"id": "u-100", "username": "ann", "roles": ["admin", "billing"]},
        "lifespan_state": True,
    }


def test_no_cookie_is_401(site: str, addr: str) -> None:
    status, headers, body = get(site, "/whoami")
    assert status == 401
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert body == {"error": "unauthorized", "verdict": "VERDICT_MISSING", "reason": "REASON_NO_COOKIE"}
    # Without expose_verdict the body names no verdict.
    with serving(starlette_app(addr)) as hostport:
        assert get(hostport, "/whoami")[2] == {"error": "unauthorized"}


def test_bad_signature_is_401(site: str, tampered_cookie: bytes) -> None:
    status, _, body = get(site, "/whoami", cookie(tampered_cookie))
    assert status == 401
    assert body == {"error": "unauthorized", "verdict": "VERDICT_BAD_SIGNATURE", "reason": "REASON_SIGNATURE_MISMATCH"}


def test_raw_latin1_header_bytes_arrive_intact(site: str, latin1_cookie: bytes) -> None:
    """Byte 0xE9 in the Cookie header travels client -> uvicorn -> middleware -> validator unchanged."""
    status, _, body = get(site, "/whoami", cookie(latin1_cookie))
    assert status == 200
    assert body["user"]["id"] == "latin"


def test_several_cookie_headers(site: str, valid_cookie: bytes) -> None:
    status, _, body = get(site, "/whoami", [("Cookie", b"theme=dark"), ("Cookie", valid_cookie)])
    assert status == 200
    assert body["user"]["id"] == "u-100"
    status, _, body = get(site, "/whoami", [("Cookie", b"connect.sid=garbage"), ("Cookie", valid_cookie)])
    assert status == 401
    assert body["verdict"] == "VERDICT_MALFORMED"


def test_excluded_paths_are_not_validated(site: str) -> None:
    status, _, body = get(site, "/healthz")
    assert (status, body) == (200, "not validated")
    status, _, body = get(site, "/static/app.js")
    assert (status, body) == (200, "not validated")
    # Exact entries do not match longer paths.
    status, _, _ = get(site, "/healthzz")
    assert status == 401


def test_store_down_is_503(down_addr: str, valid_cookie: bytes) -> None:
    with serving(starlette_app(down_addr)) as hostport:
        status, headers, body = get(hostport, "/whoami", cookie(valid_cookie))
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "1"
    assert body == {"error": "unavailable"}


def test_validator_timeout_is_503(silent_addr: str, valid_cookie: bytes) -> None:
    with serving(starlette_app(silent_addr)) as hostport:
        started = time.monotonic()
        status, _, body = get(hostport, "/whoami", cookie(valid_cookie))
    assert time.monotonic() - started < 2.0
    assert status == 503
    assert body == {"error": "unavailable"}


def test_unreachable_validator_is_503(closed_addr: str, valid_cookie: bytes) -> None:
    with serving(starlette_app(closed_addr, allow_anonymous=True, expose_verdict=True)) as hostport:
        status, _, body = get(hostport, "/whoami", cookie(valid_cookie))
    assert (status, body) == (503, {"error": "unavailable", "reason": "VALIDATOR_UNREACHABLE"})


def test_allow_anonymous(addr: str, down_addr: str, tampered_cookie: bytes, valid_cookie: bytes) -> None:
    with serving(starlette_app(addr, allow_anonymous=True)) as hostport:
        status, _, body = get(hostport, "/whoami")
        assert (status, body["verdict"], body["user"]) == (200, "VERDICT_MISSING", None)
        status, _, body = get(hostport, "/whoami", cookie(tampered_cookie))
        assert (status, body["verdict"], body["user"]) == (200, "VERDICT_BAD_SIGNATURE", None)
        status, _, body = get(hostport, "/whoami", cookie(valid_cookie))
        assert (status, body["user"]["id"]) == (200, "u-100")
    # An outage is never an anonymous visitor.
    with serving(starlette_app(down_addr, allow_anonymous=True)) as hostport:
        status, _, body = get(hostport, "/whoami", cookie(valid_cookie))
    assert (status, body) == (503, {"error": "unavailable"})


def test_anonymous_sessions(addr: str, anonymous_cookie: bytes, valid_cookie: bytes) -> None:
    with serving(starlette_app(addr, expose_verdict=True)) as hostport:
        status, _, body = get(hostport, "/whoami", cookie(anonymous_cookie))
        assert status == 401
        assert body == {"error": "unauthorized", "verdict": "VERDICT_VALID", "reason": "REASON_SESSION_ACTIVE"}
        status, _, body = get(hostport, "/whoami", cookie(valid_cookie))
        assert (status, body["user"]["id"]) == (200, "u-100")
    for options in ({"allow_anonymous_sessions": True}, {"require_authenticated": False}):
        with serving(starlette_app(addr, **options)) as hostport:
            status, _, body = get(hostport, "/whoami", cookie(anonymous_cookie))
            assert (status, body["verdict"], body["user"]) == (200, "VERDICT_VALID", None)


def test_response_hooks(addr: str, down_addr: str, tampered_cookie: bytes, valid_cookie: bytes) -> None:
    seen: list[str] = []

    def to_login(scope: Scope, validation: Validation) -> Response:
        seen.append(f"{scope['path']} {validation.reason}")
        return RedirectResponse("/login", status_code=303)

    def maintenance(scope: Scope, error: SessionValidatorError) -> Response:
        return PlainTextResponse(f"try again ({error.reason})", status_code=503, headers={"retry-after": "1"})

    with serving(starlette_app(addr, unauthorized_response=to_login)) as hostport:
        status, headers, _ = get(hostport, "/whoami")
    assert (status, headers["location"]) == (303, "/login")
    assert seen == ["/whoami REASON_NO_COOKIE"]
    # A deadline well above the default: on a loaded machine the store outage must be what the hook sees, not a
    # deadline that ran out first.
    with serving(starlette_app(down_addr, client_timeout=5.0, unavailable_response=maintenance)) as hostport:
        status, headers, body = get(hostport, "/whoami", cookie(valid_cookie))
        assert (status, headers["retry-after"], body) == (503, "1", "try again (STORE_UNAVAILABLE)")
        # A bad signature needs no store: with the store down it is still a verdict, still a 401.
        assert get(hostport, "/whoami", cookie(tampered_cookie))[0] == 401


def test_lifespan_passes_through(addr: str) -> None:
    events: list[str] = []
    with serving(starlette_app(addr, events=events)):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


# ---------------------------------------------------------------- websockets over HTTP


def ws_url(hostport: str) -> str:
    return f"ws://{hostport}/ws"


def test_websocket_valid_session(site: str, valid_cookie: bytes) -> None:
    with ws_connect(ws_url(site), additional_headers={"Cookie": valid_cookie.decode("latin-1")}) as ws:
        assert ws.recv(timeout=5) == "u-100"


def test_websocket_invalid_session_is_closed_4401(site: str, tampered_cookie: bytes) -> None:
    with (
        ws_connect(ws_url(site), additional_headers={"Cookie": tampered_cookie.decode("latin-1")}) as ws,
        pytest.raises(ConnectionClosed) as caught,
    ):
        ws.recv(timeout=5)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4401, "unauthorized")


def test_websocket_store_down_is_closed_1013(down_addr: str, valid_cookie: bytes) -> None:
    with (
        serving(starlette_app(down_addr)) as hostport,
        ws_connect(ws_url(hostport), additional_headers={"Cookie": valid_cookie.decode("latin-1")}) as ws,
    ):
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=5)
        assert caught.value.rcvd is not None
        assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1013, "unavailable")


# ---------------------------------------------------------------- plain ASGI, no framework


async def plain_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    user = scope["state"]["session_user"]
    body = json.dumps({"user": user.id if user else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def test_plain_asgi_app(addr: str, valid_cookie: bytes) -> None:
    with serving(SessionValidatorMiddleware(plain_app, AsyncClient(addr))) as hostport:
        assert get(hostport, "/anything", cookie(valid_cookie))[::2] == (200, {"user": "u-100"})
        assert get(hostport, "/anything")[0] == 401


# ---------------------------------------------------------------- the ASGI protocol, called directly


class Recorder:
    """An inner app that records what reached it."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scopes.append(scope)


def run_asgi(app: SessionValidatorMiddleware, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Drive one ASGI call in a fresh event loop; return what the middleware sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)
        await client.aclose()

    client = app.client
    asyncio.run(main())
    return sent


def test_direct_lifespan_scope_is_passed_through(addr: str) -> None:
    inner = Recorder()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    assert run_asgi(SessionValidatorMiddleware(inner, AsyncClient(addr)), scope, []) == []
    assert inner.scopes == [scope]
    assert "state" not in scope


def test_direct_websocket_rejections(addr: str, down_addr: str, tampered_cookie: bytes, valid_cookie: bytes) -> None:
    def ws_scope(value: bytes) -> Scope:
        return {"type": "websocket", "path": "/ws", "headers": [(b"cookie", value)]}

    inner = Recorder()
    connect = [{"type": "websocket.connect"}]
    sent = run_asgi(SessionValidatorMiddleware(inner, AsyncClient(addr)), ws_scope(tampered_cookie), list(connect))
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 4401, "reason": "unauthorized"}]
    sent = run_asgi(SessionValidatorMiddleware(inner, AsyncClient(down_addr)), ws_scope(valid_cookie), list(connect))
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1013, "reason": "unavailable"},
    ]
    # The client went away before the handshake: nothing to send.
    assert run_asgi(SessionValidatorMiddleware(inner, AsyncClient(addr)), ws_scope(tampered_cookie), []) == []
    assert inner.scopes == []
    scope = ws_scope(valid_cookie)
    assert run_asgi(SessionValidatorMiddleware(inner, AsyncClient(addr)), scope, list(connect)) == []
    assert inner.scopes == [scope]
    assert scope["state"]["session_user"].id == "u-100"


def test_state_dict_already_present_is_kept(addr: str, valid_cookie: bytes) -> None:
    inner = Recorder()
    state = {"request_id": "r-1"}
    scope: Scope = {"type": "http", "path": "/", "headers": [(b"cookie", valid_cookie)], "state": state}
    run_asgi(SessionValidatorMiddleware(inner, AsyncClient(addr)), scope, [])
    assert scope["state"] is state
    assert state["request_id"] == "r-1"
    assert state["session_validation"].valid


# ---------------------------------------------------------------- the shipped example


def test_example_app(addr: str, monkeypatch: pytest.MonkeyPatch, valid_cookie: bytes, anonymous_cookie: bytes) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "starlette_app.py"
    monkeypatch.setenv("SESSIONVALIDATOR_ADDR", addr)
    spec = importlib.util.spec_from_file_location("sessionvalidator_example_starlette_app", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with serving(example.app) as hostport:
        status, _, body = get(hostport, "/me", cookie(valid_cookie))
        assert status == 200
        assert body["id"] == "u-100"
        assert body["email"] == "ann@example.org"
        assert body["session_expires"] is not None
        assert get(hostport, "/me", cookie(anonymous_cookie))[0] == 401
        assert get(hostport, "/healthz")[::2] == (200, "ok")

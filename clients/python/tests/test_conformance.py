"""tests/vectors/client_conformance.json: what every client (Go, Node, Python) does the same way."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import header_bytes, required_env
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_asgi_middleware import get, serving

from sessionvalidator import DEFAULT_TIMEOUT, AsyncClient, Client, SessionValidatorMiddleware
from sessionvalidator._channel import (
    KEEPALIVE_TIME_MS,
    KEEPALIVE_TIMEOUT_MS,
    SERVICE_CONFIG,
    authority_for,
    channel_options,
)
from sessionvalidator._channel import check_target as check

CONFORMANCE = "SESSIONVALIDATOR_TEST_CONFORMANCE"
SERVERS = {
    "live": "SESSIONVALIDATOR_TEST_ADDR",
    "down": "SESSIONVALIDATOR_TEST_DOWN_ADDR",
    "limited": "SESSIONVALIDATOR_TEST_LIMITED_ADDR",
    "unreachable": "SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR",
}
OPTIONS = {"anonymous_sessions": {"allow_anonymous_sessions": True}, "expose_verdict": {"expose_verdict": True}}


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(required_env(CONFORMANCE)).read_text(encoding="utf-8"))
    return data


def _middleware_cases() -> list[str]:
    path = os.environ.get(CONFORMANCE)
    if not path:
        return ["conformance-not-set"]
    return [case["name"] for case in json.loads(Path(path).read_text(encoding="utf-8"))["middleware"]["cases"]]


def test_defaults() -> None:
    c = _load()
    assert c["service_config"] == SERVICE_CONFIG
    assert json.loads(dict(channel_options())["grpc.service_config"]) == c["service_config"]
    assert round(DEFAULT_TIMEOUT * 1000) == c["default_timeout_ms"]
    assert (c["keepalive"]["time_ms"], c["keepalive"]["timeout_ms"]) == (KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS)


def test_authority() -> None:
    for case in _load()["authority"]["cases"]:
        assert authority_for(case["target"]) == case["authority"], case
        options = dict(channel_options(target=case["target"]))
        assert options.get("grpc.default_authority") == case["authority"], case
        assert (
            dict(channel_options([("grpc.default_authority", "mine")], target=case["target"]))["grpc.default_authority"]
            == "mine"
        )


def test_targets() -> None:
    c = _load()
    for target in c["targets"]["accepted"]:
        assert check(target) == target
    for target in [*c["targets"]["refused"], None]:
        with pytest.raises(ValueError, match=re.escape(repr(target))):
            Client(target)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="bad target"):
            AsyncClient(target)  # type: ignore[arg-type]


def test_header_text(addr: str, cases_by_name: dict[str, dict[str, Any]]) -> None:
    with Client(addr, timeout=5.0) as client:
        for case in _load()["header_text"]["cases"]:
            text = header_bytes(cases_by_name[case["vector"]]).decode("latin-1") if "vector" in case else case["text"]
            if case.get("refused"):
                with pytest.raises(ValueError, match="U\\+00FF"):
                    client.validate_cookie_header(text)
            else:
                assert client.validate_cookie_header(text).verdict == case["verdict"], case["name"]


def _app(target: str, **options: Any) -> Starlette:
    # A long deadline: a cold channel on a loaded machine must not turn a verdict into a 503.
    client = AsyncClient(target, timeout=5.0)

    async def me(request: Request) -> JSONResponse:
        user = request.state.session_user
        return JSONResponse({"user": None if user is None else user.id})

    return Starlette(
        routes=[Route("/", me)],
        middleware=[Middleware(SessionValidatorMiddleware, client=client, **options)],
    )


@pytest.mark.parametrize("name", _middleware_cases())
def test_middleware(name: str, cases_by_name: dict[str, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    c = _load()
    (case,) = [case for case in c["middleware"]["cases"] if case["name"] == name]
    options: dict[str, Any] = {}
    for option in case.get("options", []):
        options.update(OPTIONS[option])
    cookie = None if case["vector"] is None else header_bytes(cases_by_name[case["vector"]])
    headers = [] if cookie is None else [("Cookie", cookie)]
    caplog.set_level(logging.WARNING, logger="sessionvalidator")
    with serving(_app(required_env(SERVERS[case["server"]]), **options)) as hostport:
        for _ in range(case.get("repeat", 1)):
            status, got_headers, body = get(hostport, "/", headers)
    assert status == case["status"], body
    if status == 200:
        assert body == {"user": case["user"]}
        return
    assert body == case["body"]
    if not case.get("options"):
        assert body == c["middleware"]["bodies"][str(status)]
    assert got_headers["cache-control"] == "no-store"
    assert got_headers["content-type"].startswith("application/json")
    if case.get("retry_after"):
        assert re.fullmatch(r"[1-9]\d*", got_headers.get("retry-after", "")), got_headers
    else:
        assert "retry-after" not in got_headers
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessionvalidator" and r.levelno == logging.WARNING]
    if "log" in case:
        assert len(warnings) == 1, warnings
        assert case["log"] in warnings[0]
    if cookie is not None:
        assert not any(cookie.decode("latin-1") in w for w in warnings)

"""Parity: for cookies a real Express app issued, the validator decides what the app decides.

The app (tests/parity/app.js) is Express 5 + express-session 1.19 +
connect-redis 9 + Passport 0.7 from npm; both it and the validator share one
real redis-server. For each scenario the app's own /whoami answer is the
expected result.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.jsemu import js_string
from tests.support.processes import ExpressApp, RedisServer, running_validator

pytestmark = pytest.mark.parity

OLD = "parity: previous secret, thirty-two bytes or more"
NEW = "parity: current secret, also thirty-two bytes long"


@contextmanager
def express(redis_server: RedisServer, secrets: list[str], **kwargs: str) -> Iterator[ExpressApp]:
    app = ExpressApp(redis_server.url, secrets, **kwargs).start()
    try:
        yield app
    finally:
        app.close()


@contextmanager
def validator(
    redis_server: RedisServer, secrets: list[str], cookie_name: str = "connect.sid"
) -> Iterator[pb_grpc.SessionValidatorStub]:
    env = {
        "SESSIONVALIDATOR_SECRETS": json.dumps(secrets),
        "SESSIONVALIDATOR_REDIS_URL": redis_server.url,
        "SESSIONVALIDATOR_COOKIE_NAME": cookie_name,
    }
    with running_validator(env) as process, grpc.insecure_channel(process.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)


def call(
    app: ExpressApp, method: str, path: str, *, cookies: list[str] | None = None, body: Any = None
) -> tuple[int, Any, str | None]:
    """One real HTTP request; returns (status, JSON body, the cookie pair from Set-Cookie)."""
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        connection.putrequest(method, path)
        for header in cookies or []:
            connection.putheader("Cookie", header)  # several headers stay several headers
        payload = b"" if body is None else json.dumps(body).encode()
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        data = json.loads(response.read() or b"null")
        set_cookie = response.getheader("Set-Cookie")
        return response.status, data, set_cookie.split(";", 1)[0] if set_cookie else None
    finally:
        connection.close()


def assert_agree(app: ExpressApp, stub: pb_grpc.SessionValidatorStub, cookies: list[str]) -> pb.ValidateSessionResponse:
    """The validator's answer for these Cookie headers matches the app's own decision."""
    response = stub.ValidateSession(
        pb.ValidateSessionRequest(cookie_header="; ".join(cookies).encode("latin-1")), timeout=5
    )
    status, whoami, _ = call(app, "GET", "/whoami", cookies=cookies)
    if status == 500:
        assert (response.verdict, response.reason) == (pb.VERDICT_MALFORMED, pb.REASON_CORRUPT_SESSION)
        return response
    assert status == 200
    assert (response.verdict == pb.VERDICT_VALID) is whoami["loaded"], (whoami, response)
    if whoami["loaded"]:
        assert response.session_id == whoami["sessionID"]
        assert response.authenticated is whoami["authenticated"]
        user = whoami["user"]
        if user is None:
            assert not response.HasField("user")
        elif isinstance(user, dict):
            assert response.user.id == js_string(user.get("id", user.get("_id")))
        else:
            assert response.user.id == js_string(user)
    return response


@pytest.fixture
def app_and_validator(redis_server: RedisServer) -> Iterator[tuple[ExpressApp, pb_grpc.SessionValidatorStub]]:
    with express(redis_server, [NEW]) as app, validator(redis_server, [NEW]) as stub:
        yield app, stub


@pytest.mark.parametrize(
    "user",
    [
        "42",
        42,
        0,
        "6512bd43d9caa6e02c990b0a",
        {"id": "u1", "username": "ann", "displayName": "Ann", "roles": ["admin"]},
        "\u00e9\u00e8",
    ],
    ids=["string_id", "number_id", "zero_id", "object_id_hex", "object_user", "non_ascii_id"],
)
def test_login(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub], user: Any) -> None:
    app, stub = app_and_validator
    status, _, cookie = call(app, "POST", "/login", body={"user": user})
    assert status == 200
    assert cookie is not None
    response = assert_agree(app, stub, [cookie])
    assert response.verdict == pb.VERDICT_VALID
    assert response.authenticated
    if isinstance(user, dict):
        assert response.user.username == "ann"
        assert response.user.display_name == "Ann"
        assert list(response.user.roles) == ["admin"]


def test_anonymous_session(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]) -> None:
    app, stub = app_and_validator
    _, _, cookie = call(app, "POST", "/anon")
    assert cookie is not None
    response = assert_agree(app, stub, [cookie])
    assert response.verdict == pb.VERDICT_VALID
    assert not response.authenticated


def test_logout(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]) -> None:
    app, stub = app_and_validator
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    _, _, after = call(app, "POST", "/logout", cookies=[cookie])
    old = assert_agree(app, stub, [cookie])
    assert (old.verdict, old.reason) == (pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND)
    assert after is not None  # Passport 0.7 regenerates: a new, anonymous session
    new = assert_agree(app, stub, [after])
    assert new.verdict == pb.VERDICT_VALID
    assert not new.authenticated


def test_destroyed_session(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]) -> None:
    app, stub = app_and_validator
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    call(app, "POST", "/destroy", cookies=[cookie])
    assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_MISSING


def test_tampered_signature(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]) -> None:
    app, stub = app_and_validator
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    last = cookie[-1]
    tampered = cookie[:-1] + ("A" if last != "A" else "B")
    assert assert_agree(app, stub, [tampered]).verdict == pb.VERDICT_BAD_SIGNATURE


def test_duplicate_cookies_first_wins(app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]) -> None:
    app, stub = app_and_validator
    _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    garbage = "connect.sid=garbage"
    assert assert_agree(app, stub, [f"{garbage}; {cookie}"]).verdict == pb.VERDICT_MALFORMED
    assert assert_agree(app, stub, [garbage, cookie]).verdict == pb.VERDICT_MALFORMED  # two Cookie headers
    assert assert_agree(app, stub, [f"{cookie}; {garbage}"]).verdict == pb.VERDICT_VALID
    assert assert_agree(app, stub, [cookie, garbage]).verdict == pb.VERDICT_VALID


def test_corrupt_stored_session(
    redis_server: RedisServer, app_and_validator: tuple[ExpressApp, pb_grpc.SessionValidatorStub]
) -> None:
    app, stub = app_and_validator
    status, body, cookie = call(app, "POST", "/login", body={"user": "42"})
    assert status == 200
    assert cookie is not None
    redis_server.client().set("sess:" + body["sessionID"], "{broken")
    response = assert_agree(app, stub, [cookie])
    assert response.reason == pb.REASON_CORRUPT_SESSION


def test_secret_rotation(redis_server: RedisServer) -> None:
    with express(redis_server, [OLD]) as old_app:
        _, _, cookie = call(old_app, "POST", "/login", body={"user": "42"})
    assert cookie is not None
    # Rotated: sign with NEW, still accept OLD.
    with express(redis_server, [NEW, OLD]) as app, validator(redis_server, [NEW, OLD]) as stub:
        response = assert_agree(app, stub, [cookie])
        assert response.verdict == pb.VERDICT_VALID
        assert response.secret_index == 1
        _, _, fresh = call(app, "POST", "/login", body={"user": "43"})
        assert fresh is not None
        assert assert_agree(app, stub, [fresh]).secret_index == 0
    # OLD removed: its cookies stop working at once.
    with express(redis_server, [NEW]) as app, validator(redis_server, [NEW]) as stub:
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_BAD_SIGNATURE


def test_custom_cookie_name(redis_server: RedisServer) -> None:
    with express(redis_server, [NEW], cookie_name="app.sid") as app, validator(redis_server, [NEW], "app.sid") as stub:
        _, _, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        assert cookie.startswith("app.sid=")
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_VALID
        renamed = "connect.sid=" + cookie.split("=", 1)[1]
        assert assert_agree(app, stub, [renamed]).reason == pb.REASON_COOKIE_NOT_FOUND


def test_rolling_session_keeps_validating_after_stored_expiry_goes_stale(redis_server: RedisServer) -> None:
    with express(redis_server, [NEW], PARITY_ROLLING="1") as app, validator(redis_server, [NEW]) as stub:
        _, body, cookie = call(app, "POST", "/login", body={"user": "42"})
        assert cookie is not None
        key = "sess:" + body["sessionID"]
        raw = redis_server.client().get(key)
        assert raw is not None
        stored = json.loads(raw)
        stored["cookie"]["expires"] = "2000-01-01T00:00:00.000Z"  # what rolling leaves behind, taken to the extreme
        redis_server.client().set(key, json.dumps(stored), keepttl=True)
        assert assert_agree(app, stub, [cookie]).verdict == pb.VERDICT_VALID

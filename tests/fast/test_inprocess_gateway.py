"""The gateway decision table in-process: Envoy ext_authz ``Check`` and HTTP forward-auth.

Every shared vector that carries a Cookie header goes through both front ends
(and through ext_authz in both of Envoy's header encodings) and must get the
decision its verdict calls for; store failures are 503, never 401 or 200.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.ext_authz import SERVICE_NAME
from sessionvalidator_service.gateway import DEFAULT_HEADER_PREFIX, HeaderNames, header_value
from sessionvalidator_service.stores import StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.stores.memory import MemoryStore
from tests.fast.conftest import CORPUS, InProcess, LoopThread, start
from tests.support.vectors import request_of, seed_memory

# The defaults' names (pinned by tests/unit/test_gateway_decisions.py).
NAMES = HeaderNames.with_prefix(DEFAULT_HEADER_PREFIX).all
HEADER_CASES = [
    c
    for c in CORPUS["cases"]
    if "cookie_header_b64" in c["request"] or "cookie_header" in c["request"] or "cookie_header_text" in c["request"]
]
VALID_HEADER = next(c for c in CORPUS["cases"] if c["name"] == "valid_object_user")["request"]["cookie_header_text"]
ANONYMOUS_HEADER = next(c for c in CORPUS["cases"] if c["name"] == "valid_anonymous_session")["request"][
    "cookie_header_text"
]


def cookie_bytes(case: dict[str, Any]) -> bytes:
    spec = case["request"]
    if "cookie_header_b64" in spec:
        return base64.b64decode(spec["cookie_header_b64"])
    text = spec.get("cookie_header_text", spec.get("cookie_header", ""))
    return str(text).encode("latin-1")


@pytest.fixture
def running(loop_thread: LoopThread, request: pytest.FixtureRequest) -> Iterator[InProcess]:
    env = getattr(request, "param", {})
    store = MemoryStore(user_records=True)
    seed_memory(store, CORPUS)
    # Verdicts exposed, so every body can be compared with ValidateSession's (the default bodies: tests/unit).
    settings = {
        **CORPUS["settings"],
        "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
        "SESSIONVALIDATOR_GATEWAY_EXPOSE_VERDICT": "true",
    }
    service = start(loop_thread, {**settings, **env}, store)
    yield service
    store.failure = None
    loop_thread.run(service.service.stop())


def check(running: InProcess, request: authz.CheckRequest) -> authz.CheckResponse:
    with grpc.insecure_channel(running.address) as channel:
        response: authz.CheckResponse = authz_grpc.AuthorizationStub(channel).Check(request, timeout=5)
        return response


def raw_request(*cookies: bytes, extra: tuple[tuple[str, str], ...] = ()) -> authz.CheckRequest:
    """A CheckRequest as Envoy sends it with ``encode_raw_headers: true``."""
    request = authz.CheckRequest()
    headers = request.attributes.request.http.header_map.headers
    headers.append(base_pb2.HeaderValue(key=":path", raw_value=b"/private"))
    for cookie in cookies:
        headers.append(base_pb2.HeaderValue(key="cookie", raw_value=cookie))
    for key, value in extra:
        headers.append(base_pb2.HeaderValue(key=key, raw_value=value.encode()))
    return request


def map_request(cookie: str | None) -> authz.CheckRequest:
    """A CheckRequest as Envoy sends it by default (the ``headers`` map)."""
    request = authz.CheckRequest()
    if cookie is not None:
        request.attributes.request.http.headers["cookie"] = cookie
    request.attributes.request.http.headers[":path"] = "/private"
    return request


def forward_auth(running: InProcess, *cookies: bytes, path: str = "/auth") -> tuple[int, dict[str, str], bytes]:
    assert running.service.http is not None
    connection = http.client.HTTPConnection("127.0.0.1", running.service.http.port, timeout=5)
    try:
        connection.putrequest("GET", path)
        for cookie in cookies:
            connection.putheader("Cookie", cookie)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def assert_user_headers(got: dict[str, str], user: pb.UserProfile) -> None:
    """The headers a user gets: exactly the fields ``ValidateSession`` returns, made header-safe."""
    wanted = {
        "x-session-user-id": header_value(user.id),
        "x-session-username": header_value(user.username),
        "x-session-email": header_value(user.email),
        "x-session-roles": ",".join(header_value(r) for r in user.roles),
    }
    assert got == {k: v for k, v in wanted.items() if v}


def ok_headers(response: authz.CheckResponse) -> dict[str, str]:
    assert response.status.code == code_pb2.OK
    assert response.HasField("ok_response")
    options = response.ok_response.headers
    assert all(o.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD for o in options)
    return {o.header.key: o.header.value for o in options}


def unauthorized(verdict: str, reason: str) -> dict[str, str]:
    """A 401 body with the verdict exposed, as the middlewares' expose_verdict option writes it."""
    return {"error": "unauthorized", "verdict": f"VERDICT_{verdict}", "reason": f"REASON_{reason}"}


def assert_denied(response: authz.CheckResponse, status: int, body: dict[str, Any]) -> None:
    assert response.status.code != code_pb2.OK
    assert response.HasField("denied_response")
    assert response.denied_response.status.code == status
    assert json.loads(response.denied_response.body) == body
    headers = {o.header.key: o.header.value for o in response.denied_response.headers}
    assert headers["cache-control"] == "no-store"
    assert "www-authenticate" not in headers


@pytest.mark.parametrize("case", HEADER_CASES, ids=[c["name"] for c in HEADER_CASES])
def test_every_vector_gets_the_decision_its_verdict_calls_for(running: InProcess, case: dict[str, Any]) -> None:
    with grpc.insecure_channel(running.address) as channel:
        oracle = pb_grpc.SessionValidatorStub(channel).ValidateSession(request_of(case), timeout=5)
    verdict = pb.Verdict.Name(oracle.verdict).removeprefix("VERDICT_")
    assert verdict == case["expect"]["verdict"].removeprefix("VERDICT_")
    raw = cookie_bytes(case)
    answers = [check(running, raw_request(raw) if raw else raw_request())]
    if raw.isascii():
        answers.append(check(running, map_request(raw.decode("ascii") if raw else None)))
    status, headers, body = forward_auth(running, *([raw] if raw else []))
    for response in answers:
        if verdict == "VALID" and oracle.authenticated:
            got = ok_headers(response)
            tag = got.pop("x-session-sid-tag")
            assert re.fullmatch(r"[0-9a-f]{12}", tag)
            assert_user_headers(got, oracle.user)
            assert set(response.ok_response.headers_to_remove) == set(NAMES) - set(got) - {"x-session-sid-tag"}
        elif verdict == "VALID":
            assert_denied(response, 401, unauthorized("VALID", "SESSION_ACTIVE"))
        else:
            assert_denied(response, 401, unauthorized(verdict, case["expect"]["reason"].removeprefix("REASON_")))
    if verdict == "VALID" and oracle.authenticated:
        assert status == 200
        assert {k for k in headers if k.startswith("x-session-")} == set(NAMES)  # empty ones included
        sent = {k: v for k, v in headers.items() if k.startswith("x-session-") and k != "x-session-sid-tag" and v}
        assert_user_headers(sent, oracle.user)
        assert re.fullmatch(r"[0-9a-f]{12}", headers["x-session-sid-tag"])
    else:
        assert status == 401
        assert headers["cache-control"] == "no-store"
        assert "www-authenticate" not in headers
        assert json.loads(body)["verdict"] == f"VERDICT_{verdict}"
        assert not any(k.startswith("x-session-") for k in headers)


def test_the_session_id_never_leaves(running: InProcess) -> None:
    sid = next(c for c in CORPUS["cases"] if c["name"] == "valid_object_user")["expect"]["session_id"]
    response = check(running, raw_request(VALID_HEADER.encode()))
    assert sid not in str(response)
    _, headers, body = forward_auth(running, VALID_HEADER.encode())
    assert sid not in str(headers)
    assert sid.encode() not in body


def test_several_cookie_headers_are_joined(running: InProcess) -> None:
    valid = VALID_HEADER.encode()
    alone = ok_headers(check(running, raw_request(valid)))
    got = ok_headers(check(running, raw_request(b"theme=dark; lang=en", valid, b"other=1")))
    assert got == alone
    status, headers, _ = forward_auth(running, b"theme=dark; lang=en", valid, b"other=1")
    assert status == 200
    assert headers["x-session-user-id"] == got["x-session-user-id"]


def test_client_copies_of_user_headers_are_overwritten_or_removed(running: InProcess) -> None:
    response = check(running, raw_request(VALID_HEADER.encode(), extra=(("x-session-user-id", "admin"),)))
    got = ok_headers(response)
    assert got["x-session-user-id"] != "admin"
    # Every name of ours is either set by the validator or removed.
    assert set(got) | set(response.ok_response.headers_to_remove) == set(NAMES)


def test_every_client_sent_lookalike_of_a_user_header_is_removed(running: InProcess) -> None:
    """Defence in depth behind Envoy's underscore drop: any spelling a WSGI upstream would read as ours goes."""
    sent = ("x_session_user_id", "x-session_roles", "x_session-email", "x-session-extra", "X_SESSION_USERNAME")
    in_header_map = raw_request(VALID_HEADER.encode(), extra=tuple((name, "admin") for name in sent))
    in_headers = map_request(VALID_HEADER)
    for name in sent:
        in_headers.attributes.request.http.headers[name] = "admin"
    for request in (in_header_map, in_headers):
        response = check(running, request)
        removed = set(response.ok_response.headers_to_remove)
        assert set(sent) <= removed, removed
        assert not removed & set(ok_headers(response)), "a header the validator sets is never removed"
    # Unrelated headers stay.
    response = check(running, raw_request(VALID_HEADER.encode(), extra=(("x-sessions", "1"), ("session-id", "2"))))
    assert set(response.ok_response.headers_to_remove) <= set(NAMES)


@pytest.mark.parametrize("running", [{"SESSIONVALIDATOR_GATEWAY_ANONYMOUS": "allow"}], indirect=True)
def test_anonymous_sessions_can_be_allowed_without_user_headers(running: InProcess) -> None:
    response = check(running, raw_request(ANONYMOUS_HEADER.encode(), extra=(("x-session-user-id", "admin"),)))
    assert ok_headers(response) == {}
    assert set(response.ok_response.headers_to_remove) == set(NAMES)
    status, headers, _ = forward_auth(running, ANONYMOUS_HEADER.encode())
    assert status == 200
    assert {k: v for k, v in headers.items() if k.startswith("x-session-")} == dict.fromkeys(NAMES, "")
    # Other verdicts are still denied.
    assert_denied(
        check(running, raw_request(b"connect.sid=s%3Ax.y")), 401, unauthorized("BAD_SIGNATURE", "SIGNATURE_MISMATCH")
    )


@pytest.mark.parametrize("running", [{"SESSIONVALIDATOR_GATEWAY_HEADER_PREFIX": "X-Auth-"}], indirect=True)
def test_header_names_are_configurable(running: InProcess) -> None:
    response = check(running, raw_request(VALID_HEADER.encode()))
    assert set(ok_headers(response)) >= {"x-auth-user-id", "x-auth-sid-tag"}
    assert not any(name.startswith("x-session-") for name in ok_headers(response))
    status, headers, _ = forward_auth(running, VALID_HEADER.encode())
    assert status == 200
    assert "x-auth-user-id" in headers


@pytest.mark.parametrize("failure", [StoreUnavailableError("down"), StoreTimeoutError("slow")])
def test_a_store_failure_is_503_never_401_or_200(running: InProcess, failure: Exception) -> None:
    running.loop.call(lambda: setattr(running.store, "failure", failure))
    reason = "STORE_TIMEOUT" if isinstance(failure, StoreTimeoutError) else "STORE_UNAVAILABLE"
    response = check(running, raw_request(VALID_HEADER.encode()))
    assert response.status.code == code_pb2.UNAVAILABLE
    assert_denied(response, 503, {"error": "unavailable", "reason": reason})
    status, headers, body = forward_auth(running, VALID_HEADER.encode())
    assert (status, json.loads(body)) == (503, {"error": "unavailable", "reason": reason})
    assert (headers["cache-control"], headers["retry-after"]) == ("no-store", "1")
    # What needs no store is still decided.
    assert_denied(
        check(running, raw_request(b"connect.sid=s%3Ax.y")), 401, unauthorized("BAD_SIGNATURE", "SIGNATURE_MISMATCH")
    )
    assert forward_auth(running, b"connect.sid=s%3Ax.y")[0] == 401


def test_a_bug_is_500_never_401_or_200(running: InProcess) -> None:
    running.loop.call(lambda: setattr(running.store, "failure", RuntimeError("a bug")))
    assert_denied(
        check(running, raw_request(VALID_HEADER.encode())), 500, {"error": "internal", "reason": "INTERNAL_ERROR"}
    )
    assert forward_auth(running, VALID_HEADER.encode())[0] == 500


@pytest.mark.parametrize(
    "running", [{"SESSIONVALIDATOR_RATE_LIMIT": "1/s", "SESSIONVALIDATOR_RATE_LIMIT_BURST": "2"}], indirect=True
)
def test_a_client_sending_bad_cookies_is_rate_limited_by_its_own_address(running: InProcess) -> None:
    def from_client(address: str) -> authz.CheckRequest:
        request = raw_request(b"connect.sid=s%3Ax.y")
        request.attributes.source.address.socket_address.address = address
        return request

    statuses = [check(running, from_client("192.0.2.1")).denied_response.status.code for _ in range(4)]
    assert statuses[:2] == [401, 401]
    assert statuses[-1] == 429
    limited = check(running, from_client("192.0.2.1"))
    assert any(o.header.key == "retry-after" for o in limited.denied_response.headers)
    # Another client behind the same Envoy is not punished.
    assert check(running, from_client("192.0.2.2")).denied_response.status.code == 401


def test_a_body_that_is_not_a_check_request_is_answered(running: InProcess) -> None:
    with grpc.insecure_channel(running.address) as channel:
        call = channel.unary_unary(
            f"/{SERVICE_NAME}/Check",
            request_serializer=lambda b: b,
            response_deserializer=authz.CheckResponse.FromString,
        )
        response = call(b"\xff\xff\xff", timeout=5)
    assert_denied(response, 400, {"error": "bad_request", "reason": "MALFORMED_REQUEST"})


def test_health_and_reflection_list_the_authorization_service(running: InProcess) -> None:
    with grpc.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(100):
            statuses = health.List(health_pb2.HealthListRequest(), timeout=2).statuses
            if statuses[SERVICE_NAME].status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.02)
        assert statuses[SERVICE_NAME].status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for answer in answers for s in answer.list_services_response.service}
        assert SERVICE_NAME in names
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)])
        )
        assert all(not a.HasField("error_response") for a in answers)
    status, _, body = forward_auth(running, path="/healthz")
    assert (status, body) == (200, b"ok")
    assert "aiohttp" not in str(forward_auth(running, path="/healthz")[1])
    assert forward_auth(running, path="/elsewhere")[0] == 404


def test_health_over_http_follows_the_store(running: InProcess) -> None:
    running.loop.call(lambda: setattr(running.store, "failure", StoreUnavailableError("down")))
    for _ in range(200):
        if forward_auth(running, path="/healthz")[0] == 503:
            break
        time.sleep(0.02)
    assert forward_auth(running, path="/healthz")[0] == 503


def test_decisions_are_counted(running: InProcess) -> None:
    check(running, raw_request(VALID_HEADER.encode()))
    forward_auth(running, b"connect.sid=s%3Ax.y")
    running.metrics.flush()  # counted as plain numbers, added to the metrics when they are read
    registry = running.metrics._gateway
    assert registry.labels("ext_authz", "allow", "VALID")._value.get() == 1
    assert registry.labels("http", "deny", "BAD_SIGNATURE")._value.get() == 1


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("ann", "ann"),
        ("Zoë", "Zo%C3%AB"),
        ("a\r\nx-session-user-id: admin", "a%0D%0Ax-session-user-id: admin"),
        ("100%", "100%25"),
        ("a,b", "a%2Cb"),
    ],
)
def test_header_values_cannot_split_or_forge_headers(text: str, sent: str) -> None:
    assert header_value(text) == sent


@pytest.mark.parametrize("running", [{"SESSIONVALIDATOR_SERVER": "native"}], indirect=True)
def test_the_native_server_kind_serves_check_too(running: InProcess) -> None:
    assert ok_headers(check(running, raw_request(VALID_HEADER.encode())))["x-session-user-id"]
    assert_denied(
        check(running, raw_request(b"connect.sid=s%3Ax.y")), 401, unauthorized("BAD_SIGNATURE", "SIGNATURE_MISMATCH")
    )


def test_oversized_and_hostile_requests_get_an_answer(running: InProcess) -> None:
    big = b"connect.sid=s%3A" + b"a" * 20_000 + b".sig"
    status, _, body = forward_auth(running, big)
    assert (status, json.loads(body)) == (401, unauthorized("MALFORMED", "TOO_LARGE"))  # TOO_LARGE, as Node refuses it
    assert_denied(check(running, raw_request(big)), 401, unauthorized("MALFORMED", "TOO_LARGE"))
    # Past what the HTTP parser accepts: refused by it, still an answer.
    assert forward_auth(running, b"x=" + b"a" * 100_000)[0] in {400, 431}
    # Raw bytes (obs-text) are judged; a DEL byte is refused by the parser, as Node's refuses it.
    assert forward_auth(running, bytes(range(0x80, 0x100)) + b"; connect.sid=s%3A\xff.x")[0] == 401
    assert forward_auth(running, b"connect.sid=\x7f")[0] == 400
    # The service still answers afterwards.
    assert forward_auth(running, VALID_HEADER.encode())[0] == 200


def test_a_refused_request_is_logged_without_its_bytes(running: InProcess, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert forward_auth(running, b"connect.sid=s%3Asecret-session-id\x7f.sig")[0] == 400
        time.sleep(0.1)
    assert "secret-session-id" not in caplog.text
    assert all(not r.exc_info for r in caplog.records)

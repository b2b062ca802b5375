"""Real Envoy, nginx and Caddy, running the deploy/gateways examples, in front of an echoing upstream.

For each gateway: a valid cookie reaches the upstream with the user headers;
anonymous, forged, tampered, malformed, expired, destroyed or absent cookies
get 401 and the upstream is never called; a client's own ``x-session-*``
headers never reach the upstream; Redis down is 503 (never 401, never 200);
public paths bypass the check; several cookies and several Cookie headers work.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.signature import Signer
from tests.gateways.conftest import SIGNER, USER, Stack
from tests.gateways.support import GATEWAYS, Gateway, Response, protected, request


def upstream_headers(response: Response) -> dict[str, list[str]]:
    """The headers the upstream received, as it echoed them (lower-case names)."""
    assert response.status == 200, (response.status, response.body[:300])
    echoed: dict[str, list[str]] = {}
    for name, value in json.loads(response.body)["headers"]:
        echoed.setdefault(name.lower(), []).append(value)
    return echoed


def test_a_valid_cookie_reaches_the_upstream_with_the_user_headers(gateway: Gateway, stack: Stack) -> None:
    cookie, session = stack.valid()
    path = protected()
    echoed = upstream_headers(request(gateway.port, path, [("Cookie", cookie)]))
    assert echoed["x-session-user-id"] == ["u-7"]
    assert echoed["x-session-username"] == ["ann"]
    assert echoed["x-session-email"] == ["ann@example.com"]
    assert echoed["x-session-roles"] == ["admin,dev"]
    (tag,) = echoed["x-session-sid-tag"]
    assert re.fullmatch(r"[0-9a-f]{12}", tag)
    # The session id travels only inside the client's own cookie, never in a header of ours.
    assert not any(session.session_id in v for k, values in echoed.items() if k != "cookie" for v in values)
    assert len(stack.upstream.calls_to(path)) == 1


def test_the_upstream_gets_a_verifiable_token_and_never_a_clients(gateway: Gateway, stack: Stack) -> None:
    forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiJ9."  # alg none, sub admin
    cookie, session = stack.valid()
    sent = [("X-Session-Token", forged), ("x-session-token", forged), ("Cookie", cookie)]
    echoed = upstream_headers(request(gateway.port, protected(), sent))
    (token,) = echoed["x-session-token"]
    assert token != forged
    claims = stack.verify_token(token)
    assert claims["sub"] == "u-7"
    assert claims["preferred_username"] == "ann"
    assert claims["sid_tag"] == echoed["x-session-sid-tag"][0]
    assert session.session_id not in token
    # Refused without a session; on a public path the client's copy is stripped.
    path = protected()
    assert request(gateway.port, path, sent[:2]).status == 401
    assert stack.upstream.calls_to(path) == []
    echoed = upstream_headers(request(gateway.port, "/public/token", sent))
    assert "x-session-token" not in echoed


def denied_cookies(stack: Stack) -> dict[str, list[tuple[str, str]]]:
    anonymous, _ = stack.valid(user=None)
    anonymous_session = mint_session(SIGNER)  # no Passport user at all
    forged = mint_session(Signer(("not the validator's secret, but long enough to pass",)), user=USER)
    stack.store(forged)  # even stored, a forged signature is refused
    good, _ = stack.valid()
    tampered = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    expired = mint_session(
        SIGNER, user=USER, max_age_s=60, now=datetime.now(UTC) - timedelta(hours=2), disable_ttl=True
    )
    destroyed_cookie, destroyed = stack.valid()
    stack.redis.client().delete("sess:" + destroyed.session_id)
    return {
        "anonymous": [("Cookie", anonymous)],
        "anonymous_no_passport": [("Cookie", stack.store(anonymous_session))],
        "forged": [("Cookie", forged.cookie_header("connect.sid"))],
        "tampered": [("Cookie", tampered)],
        "malformed": [("Cookie", "connect.sid=not-a-signed-value")],
        "expired": [("Cookie", stack.store(expired))],
        "destroyed": [("Cookie", destroyed_cookie)],
        "absent": [],
        "other_cookies_only": [("Cookie", "theme=dark; lang=en")],
    }


def test_no_valid_session_is_401_and_the_upstream_is_never_called(gateway: Gateway, stack: Stack) -> None:
    for name, headers in denied_cookies(stack).items():
        path = protected()
        response = request(gateway.port, path, headers)
        assert response.status == 401, (name, response.status, response.body[:200])
        assert stack.upstream.calls_to(path) == [], name
        assert response.header("www-authenticate") is None


def test_public_paths_bypass_the_check(gateway: Gateway, stack: Stack) -> None:
    path = f"/public/{uuid.uuid4().hex}"
    assert request(gateway.port, path).status == 200
    assert len(stack.upstream.calls_to(path)) == 1


def test_a_cookie_among_others_and_several_cookie_headers_work(gateway: Gateway, stack: Stack) -> None:
    cookie, _ = stack.valid()
    echoed = upstream_headers(request(gateway.port, protected(), [("Cookie", f"theme=dark; {cookie}; lang=en")]))
    assert echoed["x-session-user-id"] == ["u-7"]
    for headers, joined_with_comma in (
        ([("Cookie", "theme=dark"), ("Cookie", cookie), ("Cookie", "lang=en")], 401),
        ([("Cookie", "a=1; b=2"), ("Cookie", f"c=3; {cookie}")], 200),
        ([("Cookie", cookie), ("Cookie", "z=1")], 401),
    ):
        response = request(gateway.port, protected(), headers)
        if gateway.name == "envoy-http":
            # Envoy's HTTP ext_authz joins several Cookie headers with "," (its gRPC ext_authz with
            # encode_raw_headers keeps them apart), and express-session's parser does not split on
            # ",": the cookie is refused, never taken for another. Browsers send one Cookie header
            # over HTTP/1.1, and Envoy joins HTTP/2 cookie crumbs with "; ".
            assert response.status == joined_with_comma, headers
            continue
        assert upstream_headers(response)["x-session-user-id"] == ["u-7"], headers


def test_redis_down_is_503_never_401_or_200(gateway: Gateway, stack: Stack) -> None:
    cookie, _ = stack.valid()
    anonymous, _ = stack.valid(user=None)
    stack.redis.stop()
    try:
        for headers in ([("Cookie", cookie)], [("Cookie", anonymous)]):
            path = protected()
            response = request(gateway.port, path, headers)
            assert response.status == 503, (response.status, response.body[:200])
            assert stack.upstream.calls_to(path) == []
        # A cookie that needs no store is still refused with 401.
        assert request(gateway.port, protected(), [("Cookie", "connect.sid=s%3Aforged.sig")]).status == 401
    finally:
        stack.redis.start()
    cookie, _ = stack.valid()
    assert request(gateway.port, protected(), [("Cookie", cookie)]).status == 200


def test_nginx_sends_browsers_to_the_login_page_and_apis_get_401(stack: Stack) -> None:
    gateway = GATEWAYS["nginx"](
        grpc_port=stack.validator.port, http_port=stack.http_port, upstream_port=stack.upstream.port
    ).start()
    try:
        page = f"/account/{uuid.uuid4().hex}"
        response = request(gateway.port, page)
        assert response.status == 302
        assert response.header("location") is not None
        assert str(response.header("location")).endswith("/login")
        assert stack.upstream.calls_to(page) == []
        assert request(gateway.port, protected()).status == 401
        cookie, _ = stack.valid()
        assert upstream_headers(request(gateway.port, page, [("Cookie", cookie)]))["x-session-user-id"] == ["u-7"]
    finally:
        gateway.close()


def test_envoy_passes_the_validators_denial_to_the_client(stack: Stack) -> None:
    gateway = GATEWAYS["envoy"](
        grpc_port=stack.validator.port, http_port=stack.http_port, upstream_port=stack.upstream.port
    ).start()
    try:
        response = request(gateway.port, protected(), [("Cookie", "connect.sid=s%3Aforged.sig")])
        assert (response.status, json.loads(response.body)) == (401, {"error": "unauthorized"})
        assert response.header("cache-control") == "no-store"
        assert response.header("www-authenticate") is None
    finally:
        gateway.close()

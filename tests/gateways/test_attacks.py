"""The gateway examples attacked as an adversary would, through the real Envoy, nginx and Caddy.

Identity spoofing (every client-sent form of every user header: case, underscores, duplicates, hop-by-hop
``Connection`` nomination), path tricks that would skip the check on a public route (dot segments, encoded dots and
slashes, doubled slashes), and the one answer table every gateway gives: 401, 429 and 503 as JSON with
``cache-control: no-store``, the bodies the client middlewares send (tests/vectors/client_conformance.json), and a
``retry-after`` on 429 and 503.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import pytest

from sessionvalidator_service.gateway import DEFAULT_HEADER_PREFIX, HeaderNames
from tests.gateways.conftest import SECRET, Stack, mint_forged
from tests.gateways.support import GATEWAYS, Gateway, Response, protected, request
from tests.support.processes import ROOT, RedisServer, running_validator

NAMES = HeaderNames.with_prefix(DEFAULT_HEADER_PREFIX).all
# What a WSGI or CGI upstream reads as one of our headers: any case, '-' and '_' alike.
IDENTITY_LIKE = re.compile(r"x[-_]session[-_]", re.IGNORECASE)
CONFORMANCE = json.loads((ROOT / "tests" / "vectors" / "client_conformance.json").read_text())
BODIES = {int(status): body for status, body in CONFORMANCE["middleware"]["bodies"].items()}


def spellings(name: str) -> list[str]:
    """Every form a client may send ``name`` in, beside the canonical one (which the caller adds)."""
    parts = name.split("-")
    mixed = parts[0] + "-" + parts[1] + "_" + "-".join(parts[2:])
    return [name.upper(), name.title(), name.replace("-", "_"), name.replace("-", "_").upper(), mixed]


def spoofs() -> list[tuple[str, str]]:
    """Client-sent copies of every user header: each spelling, and the canonical name twice."""
    headers = []
    for name in NAMES:
        headers += [(name, "spoof-1"), (name, "spoof-2")]
        headers += [(form, f"spoof-{form}") for form in spellings(name)]
    return headers


def identity_headers(response: Response) -> dict[str, list[str]]:
    """The identity-looking headers the upstream received, by name as a WSGI server reads it, empty ones left out."""
    assert response.status == 200, (response.status, response.body[:300])
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(response.body)["headers"]:
        if IDENTITY_LIKE.match(name) and value != "":
            seen.setdefault(name.lower().replace("_", "-"), []).append(value)
    return seen


def expect_user(seen: dict[str, list[str]]) -> None:
    """Exactly the validator's values for the test user, one of each, and nothing the client sent."""
    tag = seen.pop("x-session-sid-tag", [])
    assert len(tag) == 1, tag
    assert re.fullmatch(r"[0-9a-f]{12}", tag[0]), tag
    token = seen.pop("x-session-token", [])
    assert len(token) == 1, token
    assert not token[0].startswith("spoof"), token
    assert seen == {
        "x-session-user-id": ["u-7"],
        "x-session-username": ["ann"],
        "x-session-email": ["ann@example.com"],
        "x-session-roles": ["admin,dev"],
    }


def test_no_spelling_of_a_user_header_reaches_the_upstream(gateway: Gateway, stack: Stack) -> None:
    cookie, _ = stack.valid()
    expect_user(identity_headers(request(gateway.port, protected(), [*spoofs(), ("Cookie", cookie)])))
    # A user without username, email or roles: the client's copies of those are gone too.
    bare, _ = stack.valid(user="u-8")
    seen = identity_headers(request(gateway.port, protected(), [*spoofs(), ("Cookie", bare)]))
    assert seen.pop("x-session-user-id") == ["u-8"]
    assert len(seen.pop("x-session-sid-tag")) == 1
    assert len(seen.pop("x-session-token")) == 1
    assert seen == {}
    # Public paths: no check, and no user header in any spelling.
    for headers in (spoofs(), [*spoofs(), ("Cookie", cookie)]):
        assert identity_headers(request(gateway.port, "/public/spoof", headers)) == {}
    # Without a cookie the protected path is refused and the upstream never sees it.
    path = protected()
    assert request(gateway.port, path, spoofs()).status == 401
    assert stack.upstream.calls_to(path) == []


@pytest.mark.parametrize("connection", ["close", "keep-alive", "upgrade"])
def test_connection_nomination_cannot_drop_the_real_user_headers(
    gateway: Gateway, stack: Stack, connection: str
) -> None:
    """``Connection: close, X-Session-User-Id`` asks a proxy to drop that header as hop-by-hop after the check."""
    cookie, _ = stack.valid()
    nominated = ", ".join([connection, *(name.title() for name in NAMES)])
    expect_user(
        identity_headers(request(gateway.port, protected(), [("Connection", nominated), *spoofs(), ("Cookie", cookie)]))
    )
    # Nominating Cookie itself may at most cost the user a 401: never a pass without a check, never another user.
    path = protected()
    response = request(gateway.port, path, [("Connection", nominated + ", Cookie"), *spoofs(), ("Cookie", cookie)])
    if response.status == 200:
        expect_user(identity_headers(response))
    else:
        assert response.status == 401, (response.status, response.body[:200])
        assert stack.upstream.calls_to(path) == []


def test_caddy_still_passes_websocket_upgrades_on(stack: Stack) -> None:
    """Defusing the nomination must not cost Caddy's WebSocket support (Envoy and nginx need their own config)."""
    gateway = GATEWAYS["caddy"](
        grpc_port=stack.validator.port, http_port=stack.http_port, upstream_port=stack.upstream.port
    ).start()
    try:
        cookie, _ = stack.valid()
        upgrade = [("Connection", "Upgrade, X-Session-User-Id"), ("Upgrade", "websocket")]
        response = request(gateway.port, protected(), [*upgrade, ("Cookie", cookie)])
        expect_user(identity_headers(response))
        echoed = {name.lower(): value for name, value in json.loads(response.body)["headers"]}
        assert (echoed.get("connection"), echoed.get("upgrade")) == ("Upgrade", "websocket")
    finally:
        gateway.close()


def resolved(path: str) -> str:
    """The path an upstream that decodes everything and resolves dot segments would serve."""
    for _ in range(3):
        path = unquote(path)
    path = path.replace("\\", "/").partition("?")[0]
    return posixpath.normpath("/" + path.lstrip("/")) + ("/" if path.endswith("/") else "")


BYPASSES = [
    "/public/../api/t",
    "/public/./../api/t",
    "/public/%2e%2e/api/t",
    "/public/%2E%2E/api/t",
    "/public/.%2e/api/t",
    "/public/..%2fapi/t",
    "/public/..%2Fapi/t",
    "/public%2f..%2fapi/t",
    "//public/../api/t",
    "/public//../api/t",
    "/public/..\\api/t",
    "/public/%2e%2e%5capi/t",
    "/public/../api/t?x=/public/",
]


@pytest.mark.parametrize("path", BYPASSES)
def test_no_path_trick_reaches_a_protected_path_unchecked(gateway: Gateway, stack: Stack, path: str) -> None:
    response = request(gateway.port, path, [("x-session-user-id", "spoof")])
    if response.status == 401 or 300 <= response.status < 500:
        # Checked and refused, refused as a bad request, or redirected to a path that is checked in turn.
        assert not any(resolved(seen.path).startswith("/api/") for seen in stack.upstream.seen if seen.path == path)
        return
    assert response.status == 200, (response.status, response.body[:200])
    received = json.loads(response.body)["path"]
    # It went through unchecked: it must be a public path however the upstream reads it.
    assert resolved(received).startswith("/public/"), (path, received)


def denial(response: Response, status: int) -> None:
    """The one answer table: JSON, no-store, the middlewares' body; retry-after on 429 and 503."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.header("cache-control") == "no-store", response.headers
    assert (response.header("content-type") or "").startswith("application/json"), response.headers
    assert json.loads(response.body) == BODIES[status]
    retry_after = response.header("retry-after")
    if status == 401:
        assert retry_after is None
        assert response.header("www-authenticate") is None
    else:
        assert retry_after is not None, response.headers
        assert re.fullmatch(r"[1-9][0-9]*", retry_after), retry_after


def test_every_gateway_answers_401_as_the_middlewares_do(gateway: Gateway, stack: Stack) -> None:
    for headers in ([], [("Cookie", mint_forged())], [("Cookie", "connect.sid=s%3Anot-signed")]):
        path = protected()
        denial(request(gateway.port, path, headers), 401)
        assert stack.upstream.calls_to(path) == []


def test_every_gateway_answers_an_outage_with_503_and_retry_after(gateway: Gateway, stack: Stack) -> None:
    cookie, _ = stack.valid()
    stack.redis.stop()
    try:
        # nginx's page locations too: their own error_page must not cancel the mapping to 503.
        for path in (protected(), f"/account/{uuid.uuid4().hex}"):
            denial(request(gateway.port, path, [("Cookie", cookie)]), 503)
            assert stack.upstream.calls_to(path) == []
    finally:
        stack.redis.start()


@pytest.mark.parametrize("name", sorted(GATEWAYS))
def test_an_unreachable_validator_is_503_with_retry_after(name: str, stack: Stack, closed_port: int) -> None:
    gateway = GATEWAYS[name](grpc_port=closed_port, http_port=closed_port, upstream_port=stack.upstream.port).start()
    try:
        cookie, _ = stack.valid()
        for path in (protected(), f"/account/{uuid.uuid4().hex}"):
            response = request(gateway.port, path, [("Cookie", cookie)])
            if name == "traefik":
                # Traefik's forwardAuth answers an empty 500 when it cannot reach the validator, and has no setting
                # to change that (README "Gateways"): never a pass, never a 401.
                assert response.status == 500, response.status
            else:
                denial(response, 503)
            assert stack.upstream.calls_to(path) == []
    finally:
        gateway.close()


# The header each example sets to the end client's address, replacing any copy the client sent. Traefik cannot set
# a header to the client's address; it replaces a client's X-Forwarded-For unless its entry point trusts it.
PEER_HEADERS = {"traefik": "x-forwarded-for"}


@pytest.fixture(scope="module")
def limited() -> Iterator[Callable[[str], tuple[int, int]]]:
    """Validators with a tiny bad-attempt budget, trusting a gateway's client-address header: one per header name."""
    redis = RedisServer().start()
    running: dict[str, tuple[int, int]] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(redis.close)

        def start(header: str) -> tuple[int, int]:
            if header not in running:
                env = {
                    "SESSIONVALIDATOR_SECRETS": SECRET,
                    "SESSIONVALIDATOR_REDIS_URL": redis.url,
                    "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
                    "SESSIONVALIDATOR_RATE_LIMIT": "1/m",
                    "SESSIONVALIDATOR_RATE_LIMIT_BURST": "2",
                    "SESSIONVALIDATOR_RATE_LIMIT_PEER_HEADER": header,
                }
                validator = stack.enter_context(running_validator(env))
                assert validator.output is not None
                serving = next(r for r in validator.output.json_lines() if r.get("event") == "serving")
                running[header] = (validator.port, int(serving["http_port"]))
            return running[header]

        yield start


@pytest.mark.parametrize("name", sorted(GATEWAYS))
def test_the_rate_limit_names_the_end_client_not_the_gateway(
    name: str, stack: Stack, limited: Callable[[str], tuple[int, int]]
) -> None:
    """One client's flood of forged cookies is 429 for that client only, with retry-after, at every gateway."""
    header = PEER_HEADERS.get(name, "x-client-ip")
    grpc_port, http_port = limited(header)
    gateway = GATEWAYS[name](grpc_port=grpc_port, http_port=http_port, upstream_port=stack.upstream.port).start()
    try:
        # Each gateway's clients have their own addresses: the validators are shared.
        subnet = sorted(GATEWAYS).index(name) + 1
        flooder, bystander = f"127.0.{subnet}.2", f"127.0.{subnet}.3"

        def forged(named: str) -> list[tuple[str, str]]:
            return [("Cookie", mint_forged()), (header, named)]  # a client naming someone else is not believed

        answers = [request(gateway.port, protected(), forged(bystander), source=flooder).status for _ in range(4)]
        assert answers[:2] == [401, 401], answers
        assert answers[-1] == 429, answers
        # Naming yet another client does not get the flooder a fresh budget.
        denial(request(gateway.port, protected(), forged(f"198.51.100.{subnet}"), source=flooder), 429)
        # Another client behind the same gateway still gets its own verdict, also when it names itself.
        denial(request(gateway.port, protected(), [("Cookie", mint_forged())], source=bystander), 401)
        denial(request(gateway.port, protected(), forged(bystander), source=bystander), 401)
    finally:
        gateway.close()

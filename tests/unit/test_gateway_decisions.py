"""The gateway decision table and its configuration, as pure functions."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from sessionvalidator_service.config import ConfigError, Settings
from sessionvalidator_service.domain import Credential, Reason, UserRecord
from sessionvalidator_service.errors import failure_for, malformed_request, rate_limited
from sessionvalidator_service.gateway import GatewayPolicy, HeaderNames, decide, failed
from sessionvalidator_service.profile import Profile
from sessionvalidator_service.stores import StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.tokens import TokenConfig, TokenIssuer, load_keys, new_private_key_pem
from sessionvalidator_service.validator import Outcome, OverloadedError

BASE = {"SESSIONVALIDATOR_SECRETS": "a-secret-that-is-long-enough-000000"}
NAMES = HeaderNames.with_prefix("x-session-")


def tag(session_id: str) -> str:
    return "t" + str(len(session_id))


def outcome(reason: Reason, *, user: bool = True, profile: Profile | None = None) -> Outcome:
    return Outcome(
        reason,
        Credential(None, "sid-1", 0),
        user=UserRecord("7", None) if user else None,
        profile=profile,
    )


def test_defaults_keep_forward_auth_off_and_deny_anonymous_sessions() -> None:
    settings = Settings.from_env(BASE)
    assert settings.http_listen is None
    assert settings.gateway == GatewayPolicy()
    assert settings.gateway.allow_anonymous is False
    assert settings.gateway.headers.all == (
        "x-session-user-id",
        "x-session-username",
        "x-session-email",
        "x-session-roles",
        "x-session-sid-tag",
        "x-session-token",
    )


def test_gateway_variables() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:8081",
            "SESSIONVALIDATOR_GATEWAY_ANONYMOUS": "allow",
            "SESSIONVALIDATOR_GATEWAY_HEADER_PREFIX": "X-Auth-",
        }
    )
    assert settings.http_listen == "127.0.0.1:8081"
    assert settings.gateway.allow_anonymous is True
    assert settings.gateway.headers.user_id == "x-auth-user-id"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_LISTEN", "8081"),
        ("HTTP_LISTEN", "host:port"),
        ("GATEWAY_ANONYMOUS", "maybe"),
        ("GATEWAY_HEADER_PREFIX", "x session "),
        ("GATEWAY_HEADER_PREFIX", "x-séssion-"),
        ("GATEWAY_HEADER_PREFIX", "x-\r\nsession-"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "SESSIONVALIDATOR_" + variable: value})
    assert caught.value.variable == "SESSIONVALIDATOR_" + variable


def test_workers_need_a_fixed_http_port() -> None:
    env = {**BASE, "SESSIONVALIDATOR_LISTEN": "127.0.0.1:50051", "SESSIONVALIDATOR_WORKERS": "2"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**env, "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0"})
    assert caught.value.variable == "SESSIONVALIDATOR_HTTP_LISTEN"
    assert Settings.from_env({**env, "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:8081"}).workers == 2


def test_a_user_gets_every_header_name_and_never_the_session_id() -> None:
    profile = Profile(id="7", username="ann", email="", roles=("admin", "a,b"))
    decision = decide(outcome(Reason.SESSION_ACTIVE, profile=profile), GatewayPolicy(), tag)
    assert decision.allowed
    assert decision.status == 200
    assert dict(decision.headers) == {
        "x-session-user-id": "7",
        "x-session-username": "ann",
        "x-session-email": "",
        "x-session-roles": "admin,a%2Cb",
        "x-session-sid-tag": "t5",
        "x-session-token": "",
    }
    assert "sid-1" not in str(decision)


@pytest.mark.parametrize("gateway", [True, False])
def test_the_token_header_carries_a_token_only_when_configured_for_gateways(tmp_path: Path, gateway: bool) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(new_private_key_pem("ES256"))
    config = TokenConfig(str(key), "https://sv.test", "svc", gateway=gateway)
    tokens = TokenIssuer(config, load_keys(config))
    profile = Profile(id="7", username="ann")
    decision = decide(outcome(Reason.SESSION_ACTIVE, profile=profile), GatewayPolicy(), tag, tokens)
    token = dict(decision.headers)["x-session-token"]
    if not gateway:
        assert token == ""
        return
    jwks = jwt.PyJWKSet.from_json(tokens.keys.jwks.decode())
    claims = jwt.decode(
        token, jwks[tokens.keys.current.kid], algorithms=["ES256"], audience="svc", issuer="https://sv.test"
    )
    assert (claims["sub"], claims["preferred_username"], claims["sid_tag"]) == ("7", "ann", "t5")
    # An anonymous session allowed through gets no token.
    anonymous = decide(outcome(Reason.SESSION_ACTIVE, user=False), GatewayPolicy(allow_anonymous=True), tag, tokens)
    assert dict(anonymous.headers)["x-session-token"] == ""


def test_a_user_without_a_profile_still_has_its_id() -> None:
    decision = decide(outcome(Reason.SESSION_ACTIVE), GatewayPolicy(), tag)
    assert dict(decision.headers)["x-session-user-id"] == "7"


def test_anonymous_sessions_are_denied_unless_allowed() -> None:
    anonymous = outcome(Reason.SESSION_ACTIVE, user=False)
    denied = decide(anonymous, GatewayPolicy(), tag)
    assert (denied.kind, denied.status, denied.label) == ("deny", 401, "anonymous")
    assert json.loads(denied.body) == {"error": "unauthorized"}
    exposed = decide(anonymous, GatewayPolicy(expose_verdict=True), tag)
    assert json.loads(exposed.body) == {
        "error": "unauthorized",
        "verdict": "VERDICT_VALID",
        "reason": "REASON_SESSION_ACTIVE",
    }
    allowed = decide(anonymous, GatewayPolicy(allow_anonymous=True), tag)
    assert allowed.allowed
    assert dict(allowed.headers) == dict.fromkeys(NAMES.all, "")


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.SESSION_ACTIVE])
def test_every_other_verdict_is_401_as_the_middlewares_answer(reason: Reason) -> None:
    decision = decide(outcome(reason, user=False), GatewayPolicy(), tag)
    assert (decision.kind, decision.status, decision.label) == ("deny", 401, reason.verdict.value)
    assert json.loads(decision.body) == {"error": "unauthorized"}
    exposed = decide(outcome(reason, user=False), GatewayPolicy(expose_verdict=True), tag)
    assert json.loads(exposed.body) == {
        "error": "unauthorized",
        "verdict": f"VERDICT_{reason.verdict.value}",
        "reason": f"REASON_{reason.name}",
    }
    assert ("cache-control", "no-store") in decision.headers
    assert not any(name == "www-authenticate" for name, _ in decision.headers)


@pytest.mark.parametrize(
    ("failure", "status", "kind", "error", "reason"),
    [
        (failure_for(StoreUnavailableError("x")), 503, "unavailable", "unavailable", "STORE_UNAVAILABLE"),
        (failure_for(StoreTimeoutError("x")), 503, "unavailable", "unavailable", "STORE_TIMEOUT"),
        (failure_for(OverloadedError()), 503, "unavailable", "unavailable", "OVERLOADED"),
        (failure_for(RuntimeError("bug")), 500, "error", "internal", "INTERNAL_ERROR"),
        (malformed_request(), 400, "error", "bad_request", "MALFORMED_REQUEST"),
        (rate_limited(0.2, "peer"), 429, "rate_limited", "rate_limited", "RATE_LIMITED"),
    ],
)
def test_failures_are_never_401_or_200(failure: object, status: int, kind: str, error: str, reason: str) -> None:
    decision = failed(failure, GatewayPolicy())  # type: ignore[arg-type]
    assert (decision.status, decision.kind, decision.allowed, decision.label) == (status, kind, False, reason)
    assert json.loads(decision.body) == {"error": error}
    assert ("cache-control", "no-store") in decision.headers
    exposed = failed(failure, GatewayPolicy(expose_verdict=True))  # type: ignore[arg-type]
    assert json.loads(exposed.body) == {"error": error, "reason": reason}
    # 429 and 503 tell the client when to try again (an outage: 1 s, as the middlewares say).
    retry_after = dict(decision.headers).get("retry-after")
    assert retry_after == ("1" if status in {429, 503} else None)

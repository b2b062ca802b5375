"""Session tokens: one the live service issues verifies offline with the JWKS over HTTP; forged ones never do."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import required_env

from sessionvalidator import AsyncClient, Client
from sessionvalidator.tokens import InvalidTokenError, TokenKeysUnavailableError, TokenVerifier
from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc

REFUSED = (
    "alg_none",
    "hs256_with_the_public_key",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "unknown_kid",
    "retired_and_removed_key",
    "tampered_claims",
    "no_subject",
)


@pytest.fixture(scope="session")
def tokens() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(Path(required_env("SESSIONVALIDATOR_TEST_TOKENS")).read_text(encoding="utf-8"))
    return found


@pytest.fixture(scope="session")
def verifier(tokens: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier(tokens["jwks_url"], issuer=tokens["issuer"], audience=tokens["audience"])


def issued(addr: str, cookie: bytes) -> pb.ValidateSessionResponse:
    with grpc.insecure_channel(addr) as channel:
        response: pb.ValidateSessionResponse = pb_grpc.SessionValidatorStub(channel).ValidateSession(
            pb.ValidateSessionRequest(cookie_header=cookie, issue_token=True), timeout=5
        )
        return response


def test_a_token_the_service_issued_verifies(addr: str, valid_cookie: bytes, verifier: TokenVerifier) -> None:
    response = issued(addr, valid_cookie)
    assert response.token
    claims = verifier.verify(response.token)
    assert claims["sub"] == response.user.id
    assert claims["exp"] <= response.expire_time.seconds
    assert response.session_id not in response.token


def test_no_token_for_an_anonymous_session(addr: str, anonymous_cookie: bytes) -> None:
    assert issued(addr, anonymous_cookie).token == ""


def test_the_clients_ask_for_a_token_only_when_told(addr: str, valid_cookie: bytes, verifier: TokenVerifier) -> None:
    with Client(addr) as client:
        validation = client.validate_cookie_header(valid_cookie, issue_token=True)
        assert validation.user is not None
        assert verifier.verify(validation.token)["sub"] == validation.user.id
        assert client.validate_cookie_header(valid_cookie).token == ""

    async def asynchronous() -> tuple[str, str]:
        async with AsyncClient(addr) as client:
            asked = await client.validate_cookie_header(valid_cookie, issue_token=True)
            plain = await client.validate_cookie_header(valid_cookie)
            return asked.token, plain.token

    asked, plain = asyncio.run(asynchronous())
    assert verifier.verify(asked)["sub"]
    assert plain == ""


@pytest.mark.parametrize("name", REFUSED)
def test_forged_and_stale_tokens_are_refused(name: str, tokens: dict[str, Any], verifier: TokenVerifier) -> None:
    assert sorted(tokens["refused"]) == sorted(REFUSED)
    with pytest.raises(InvalidTokenError):
        verifier.verify(tokens["refused"][name])


def test_garbage_is_refused(verifier: TokenVerifier) -> None:
    for garbage in ("", "a.b", "a.b.c", "not a token"):
        with pytest.raises(InvalidTokenError):
            verifier.verify(garbage)


def test_no_keys_is_not_a_verdict(tokens: dict[str, Any], addr: str, valid_cookie: bytes) -> None:
    unreachable = required_env("SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR")
    verifier = TokenVerifier(
        f"http://{unreachable}/.well-known/jwks.json", issuer=tokens["issuer"], audience=tokens["audience"]
    )
    with pytest.raises(TokenKeysUnavailableError):
        verifier.verify(issued(addr, valid_cookie).token)
    not_found = tokens["jwks_url"].replace("/.well-known/jwks.json", "/no-such-path")
    verifier = TokenVerifier(not_found, issuer=tokens["issuer"], audience=tokens["audience"])
    with pytest.raises(TokenKeysUnavailableError):
        verifier.verify(issued(addr, valid_cookie).token)

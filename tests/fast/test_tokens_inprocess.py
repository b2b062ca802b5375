"""Session tokens through the real service in-process: gRPC, the JWKS on both ports, the gateways, a key reload."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from sessionvalidator.tokens import InvalidTokenError, TokenVerifier
from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.stores.memory import MemoryStore
from sessionvalidator_service.tokens import new_private_key_pem
from tests.fast.conftest import CORPUS, InProcess, LoopThread, start
from tests.fast.test_inprocess_gateway import VALID_HEADER, check, forward_auth, ok_headers, raw_request
from tests.support.vectors import seed_memory

ISSUER = "https://sessionvalidator.test"
AUDIENCE = "internal-services"
ANONYMOUS_HEADER = next(c for c in CORPUS["cases"] if c["name"] == "valid_anonymous_session")["request"][
    "cookie_header_text"
]
VALID = next(c for c in CORPUS["cases"] if c["name"] == "valid_object_user")


def key_file(directory: Path, name: str, algorithm: str = "EdDSA") -> str:
    path = directory / name
    path.write_bytes(new_private_key_pem(algorithm))
    return str(path)


def token_env(directory: Path, **extra: str) -> dict[str, str]:
    return {
        "SESSIONVALIDATOR_JWT_KEY_FILE": key_file(directory, "current.pem"),
        "SESSIONVALIDATOR_JWT_ISSUER": ISSUER,
        "SESSIONVALIDATOR_JWT_AUDIENCE": AUDIENCE,
        **extra,
    }


def launch(loop_thread: LoopThread, env: dict[str, str]) -> InProcess:
    store = MemoryStore(user_records=True)
    seed_memory(store, CORPUS)
    return start(loop_thread, {**CORPUS["settings"], "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0", **env}, store)


@pytest.fixture
def with_tokens(loop_thread: LoopThread, tmp_path: Path) -> Iterator[InProcess]:
    running = launch(loop_thread, token_env(tmp_path, SESSIONVALIDATOR_JWT_GATEWAY="1"))
    yield running
    loop_thread.run(running.service.stop())


def validate(running: InProcess, header: str, *, issue_token: bool = True) -> pb.ValidateSessionResponse:
    with grpc.insecure_channel(running.address) as channel:
        return pb_grpc.SessionValidatorStub(channel).ValidateSession(
            pb.ValidateSessionRequest(cookie_header_text=header, issue_token=issue_token), timeout=5
        )


def grpc_jwks(running: InProcess) -> pb.GetJwksResponse:
    with grpc.insecure_channel(running.address) as channel:
        return pb_grpc.SessionValidatorStub(channel).GetJwks(pb.GetJwksRequest(), timeout=5)


def http_jwks(running: InProcess) -> tuple[int, dict[str, str], bytes]:
    assert running.service.http is not None
    connection = http.client.HTTPConnection("127.0.0.1", running.service.http.port, timeout=5)
    try:
        connection.request("GET", "/.well-known/jwks.json")
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def verify(token: str, jwks_json: str | bytes) -> dict[str, Any]:
    keys = jwt.PyJWKSet.from_json(jwks_json if isinstance(jwks_json, str) else jwks_json.decode())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key, algorithms=["EdDSA", "ES256", "RS256"], audience=AUDIENCE, issuer=ISSUER)


def test_a_valid_session_gets_a_token_that_the_published_keys_verify(with_tokens: InProcess) -> None:
    response = validate(with_tokens, VALID_HEADER)
    assert response.verdict == pb.VERDICT_VALID
    assert response.token
    status, headers, body = http_jwks(with_tokens)
    assert status == 200
    assert headers["content-type"] == "application/jwk-set+json"
    assert headers["cache-control"] == "public, max-age=300"
    assert json.loads(body) == json.loads(grpc_jwks(with_tokens).jwks)
    assert grpc_jwks(with_tokens).max_age.seconds == 300
    claims = verify(response.token, body)
    assert claims["sub"] == response.user.id
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["exp"] <= response.expire_time.seconds
    assert response.session_id not in response.token
    # The rest of the response is what it is without a token.
    without = validate(with_tokens, VALID_HEADER, issue_token=False)
    assert without.token == ""
    response.ClearField("token")
    without.ClearField("expire_time")
    response.ClearField("expire_time")
    assert response == without


def test_no_token_without_a_user_or_a_valid_session(with_tokens: InProcess) -> None:
    for header in (ANONYMOUS_HEADER, "connect.sid=s%3Aabc.def", "", "connect.sid=plain"):
        assert validate(with_tokens, header).token == ""


def test_each_batch_item_gets_its_own_token_when_it_asks(with_tokens: InProcess) -> None:
    requests = [
        pb.ValidateSessionRequest(cookie_header_text=VALID_HEADER, issue_token=True),
        pb.ValidateSessionRequest(cookie_header_text=VALID_HEADER),
        pb.ValidateSessionRequest(cookie_header_text=ANONYMOUS_HEADER, issue_token=True),
        pb.ValidateSessionRequest(cookie_header_text="connect.sid=s%3Aabc.def", issue_token=True),
    ]
    with grpc.insecure_channel(with_tokens.address) as channel:
        batch = pb_grpc.SessionValidatorStub(channel).ValidateSessions(
            pb.ValidateSessionsRequest(requests=requests), timeout=5
        )
    tokens = [item.token for item in batch.responses]
    assert tokens[0]
    assert tokens[1:] == ["", "", ""]
    assert verify(tokens[0], grpc_jwks(with_tokens).jwks)["sub"] == batch.responses[0].user.id


def test_the_gateways_send_a_token_and_overwrite_a_client_copy(with_tokens: InProcess) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    response = check(with_tokens, raw_request(VALID_HEADER.encode(), extra=(("x-session-token", forged),)))
    token = ok_headers(response)["x-session-token"]
    assert token != forged
    jwks = grpc_jwks(with_tokens).jwks
    assert verify(token, jwks)["sub"] == VALID["expect"]["user"]["id"]
    status, headers, _ = forward_auth(with_tokens, VALID_HEADER.encode())
    assert status == 200
    assert verify(headers["x-session-token"], jwks)["sub"] == VALID["expect"]["user"]["id"]
    # An anonymous or refused session gives the upstream no token, and removes a client's.
    denied = check(with_tokens, raw_request(b"connect.sid=s%3Aabc.def", extra=(("x-session-token", forged),)))
    assert not denied.HasField("ok_response")


def test_tokens_off_publish_an_empty_key_set_and_ignore_the_request_field(loop_thread: LoopThread) -> None:
    running = launch(loop_thread, {})
    try:
        assert validate(running, VALID_HEADER).token == ""
        assert json.loads(grpc_jwks(running).jwks) == {"keys": []}
        status, headers, body = http_jwks(running)
        assert (status, json.loads(body), headers["cache-control"]) == (200, {"keys": []}, "no-store")
        assert ok_headers(check(running, raw_request(VALID_HEADER.encode()))).get("x-session-token") is None
    finally:
        loop_thread.run(running.service.stop())


def test_a_key_reload_signs_with_the_new_key_and_still_publishes_the_retired_one(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    env = token_env(tmp_path)
    running = launch(loop_thread, env)
    try:
        before = validate(running, VALID_HEADER).token
        old_kid = jwt.get_unverified_header(before)["kid"]
        assert validate(running, VALID_HEADER).token == before  # cached
        rotated = {
            **CORPUS["settings"],
            **env,
            "SESSIONVALIDATOR_JWT_KEY_FILE": key_file(tmp_path, "next.pem", "ES256"),
            "SESSIONVALIDATOR_JWT_RETIRED_KEY_FILES": env["SESSIONVALIDATOR_JWT_KEY_FILE"],
        }
        assert running.service.reload_secrets(rotated)
        after = validate(running, VALID_HEADER).token
        assert after != before
        header = jwt.get_unverified_header(after)
        assert header["kid"] != old_kid
        assert header["alg"] == "ES256"
        _, _, body = http_jwks(running)
        assert [key["kid"] for key in json.loads(body)["keys"]] == [header["kid"], old_kid]
        assert verify(before, body)["sub"] == verify(after, body)["sub"]
        # A key file that does not load leaves the current keys in use.
        broken = {**rotated, "SESSIONVALIDATOR_JWT_KEY_FILE": str(tmp_path / "absent.pem")}
        assert not running.service.reload_secrets(broken)
        assert jwt.get_unverified_header(validate(running, VALID_HEADER).token)["kid"] == header["kid"]
    finally:
        loop_thread.run(running.service.stop())


def test_a_rotation_fails_no_verifier_for_a_live_session(loop_thread: LoopThread, tmp_path: Path) -> None:
    """New key in as the signing key, old one kept as retired: every token of a live session still verifies.

    Verifiers hold the key set they fetched before the rotation; a token naming the new key makes them fetch it
    again (unknown kid). Once the retired key is removed, its tokens are refused.
    """
    env = token_env(tmp_path)
    old_key = env["SESSIONVALIDATOR_JWT_KEY_FILE"]
    running = launch(loop_thread, env)
    try:
        assert running.service.http is not None
        url = f"http://127.0.0.1:{running.service.http.port}/.well-known/jwks.json"
        verifiers = [TokenVerifier(url, issuer=ISSUER, audience=AUDIENCE, cache_s=3600) for _ in range(3)]
        before = validate(running, VALID_HEADER).token
        for verifier in verifiers:
            assert verifier.verify(before)["sub"] == VALID["expect"]["user"]["id"]
        rotated = {
            **CORPUS["settings"],
            **env,
            "SESSIONVALIDATOR_JWT_KEY_FILE": key_file(tmp_path, "next.pem"),
            "SESSIONVALIDATOR_JWT_RETIRED_KEY_FILES": old_key,
        }
        assert running.service.reload_secrets(rotated)
        after = validate(running, VALID_HEADER).token
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        late = TokenVerifier(url, issuer=ISSUER, audience=AUDIENCE)  # first fetch after the rotation
        for verifier in [*verifiers, late]:
            for token in (before, after, before):
                assert verifier.verify(token)["sub"] == VALID["expect"]["user"]["id"]
        # The retired key's tokens have expired: it is removed, and a token it signed is refused.
        assert running.service.reload_secrets({**rotated, "SESSIONVALIDATOR_JWT_RETIRED_KEY_FILES": ""})
        fresh = TokenVerifier(url, issuer=ISSUER, audience=AUDIENCE)
        assert fresh.verify(after)["sub"] == VALID["expect"]["user"]["id"]
        with pytest.raises(InvalidTokenError):
            fresh.verify(before)
    finally:
        loop_thread.run(running.service.stop())


def test_no_token_or_key_material_is_logged(
    loop_thread: LoopThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = token_env(tmp_path, SESSIONVALIDATOR_JWT_GATEWAY="1", SESSIONVALIDATOR_LOG_LEVEL="DEBUG")
    running = launch(loop_thread, env)
    try:
        token = validate(running, VALID_HEADER).token
        gateway_token = ok_headers(check(running, raw_request(VALID_HEADER.encode())))["x-session-token"]
        forward_auth(running, VALID_HEADER.encode())
        broken = {**CORPUS["settings"], **env, "SESSIONVALIDATOR_JWT_KEY_FILE": str(tmp_path / "absent.pem")}
        assert not running.service.reload_secrets(broken)
        assert running.service.reload_secrets({**CORPUS["settings"], **env})
    finally:
        loop_thread.run(running.service.stop())
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "token keys reloaded" in logged  # the records were captured
    pem = Path(env["SESSIONVALIDATOR_JWT_KEY_FILE"]).read_text()
    for secret in (token, gateway_token, *token.split("."), pem.splitlines()[1], VALID["expect"]["session_id"]):
        assert secret not in logged

"""Gateway fixtures: a real redis-server, the real service (gRPC and HTTP forward-auth), an echoing upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from sessionvalidator_service.mint import MintedSession, mint_session
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.tokens import new_private_key_pem
from tests.gateways.support import GATEWAYS, EchoUpstream, Gateway
from tests.support.processes import RedisServer, ValidatorProcess, free_port

SECRET = "gateway tests: a signing secret comfortably over 32 bytes"  # noqa: S105 - a test secret
SIGNER = Signer((SECRET,))
USER = {"id": "u-7", "username": "ann", "email": "ann@example.com", "roles": ["admin", "dev"]}
# Session tokens are on for the whole tier (SESSIONVALIDATOR_JWT_GATEWAY): every allow carries one.
JWT_ISSUER = "https://sessionvalidator.gateway-tests"
JWT_AUDIENCE = "gateway-tests"


def mint_forged() -> str:
    """A Cookie header pair signed with another secret: refused before any store lookup."""
    forged = mint_session(Signer(("not the validator's secret, but long enough to pass",)), user=USER)
    return forged.cookie_header("connect.sid")


@dataclass
class Stack:
    """Everything behind the gateway."""

    redis: RedisServer
    validator: ValidatorProcess
    http_port: int
    upstream: EchoUpstream

    def store(self, session: MintedSession) -> str:
        """Write ``session`` as connect-redis would; return its Cookie header pair."""
        self.redis.client().set("sess:" + session.session_id, session.stored_json, ex=session.ttl_s)
        return session.cookie_header("connect.sid")

    def verify_token(self, token: str) -> dict[str, object]:
        """The claims of a session token, verified with the JWKS fetched from the service's HTTP port."""
        keys = jwt.PyJWKClient(f"http://127.0.0.1:{self.http_port}/.well-known/jwks.json", cache_keys=False)
        return jwt.decode(
            token,
            keys.get_signing_key_from_jwt(token),
            algorithms=["EdDSA"],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
        )

    def valid(self, user: object = USER) -> tuple[str, MintedSession]:
        session = mint_session(SIGNER, user=user)
        return self.store(session), session


@contextlib.contextmanager
def running_stack(key: Path, **env: str) -> Iterator[Stack]:
    """redis-server, the service (gRPC and forward-auth, session tokens on, ``env`` added) and the upstream."""
    key.write_bytes(new_private_key_pem("EdDSA"))
    redis = RedisServer().start()
    upstream = EchoUpstream().start()
    validator = ValidatorProcess(
        {
            "SESSIONVALIDATOR_SECRETS": SECRET,
            "SESSIONVALIDATOR_REDIS_URL": redis.url,
            "SESSIONVALIDATOR_HTTP_LISTEN": "127.0.0.1:0",
            "SESSIONVALIDATOR_JWT_KEY_FILE": str(key),
            "SESSIONVALIDATOR_JWT_ISSUER": JWT_ISSUER,
            "SESSIONVALIDATOR_JWT_AUDIENCE": JWT_AUDIENCE,
            "SESSIONVALIDATOR_JWT_GATEWAY": "1",
            **env,
        }
    )
    try:
        validator.start()
        validator.wait_ready()
        assert validator.output is not None
        serving = next(r for r in validator.output.json_lines() if r.get("event") == "serving")
        yield Stack(redis, validator, int(serving["http_port"]), upstream)
    finally:
        validator.close()
        upstream.close()
        redis.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("token-keys") / "signing.pem") as running:
        yield running


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: a validator that cannot be reached."""
    return free_port()


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def gateway(request: pytest.FixtureRequest, stack: Stack) -> Iterator[Gateway]:
    running = GATEWAYS[request.param](
        grpc_port=stack.validator.port, http_port=stack.http_port, upstream_port=stack.upstream.port
    ).start()
    try:
        yield running
    finally:
        running.close()

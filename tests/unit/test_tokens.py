"""Session tokens: claims, expiry capped by the session, the per-session cache, keys, configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from sessionvalidator_service.config import ConfigError, Settings
from sessionvalidator_service.profile import Profile
from sessionvalidator_service.tokens import (
    TokenConfig,
    TokenError,
    TokenIssuer,
    load_keys,
    new_private_key_pem,
)

BASE = {"SESSIONVALIDATOR_SECRETS": "a-secret-that-is-long-enough-000000"}
PROFILE = Profile(id="42", username="ada", display_name="Ada L", email="ada@example.test", roles=("admin", "ops"))
SID = "abcdefghijklmnopqrstuvwxyz012345"


def tag(session_id: str) -> str:
    return "t" + str(len(session_id))


def write_key(tmp_path: Path, name: str, algorithm: str = "EdDSA") -> str:
    path = tmp_path / name
    path.write_bytes(new_private_key_pem(algorithm))
    return str(path)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def issuer(tmp_path: Path, *, algorithm: str = "EdDSA", lifetime: int = 300, now: float = 1_000_000.0) -> TokenIssuer:
    config = TokenConfig(
        key_file=write_key(tmp_path, f"{algorithm}.pem", algorithm),
        issuer="https://sv.test",
        audience="svc",
        lifetime_s=lifetime,
    )
    return TokenIssuer(config, load_keys(config), clock=Clock(now))


def verify(token: str, minted: TokenIssuer, **options: object) -> dict[str, object]:
    jwks = jwt.PyJWKSet.from_json(minted.keys.jwks.decode())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key,
        algorithms=[minted.keys.current.algorithm],
        audience="svc",
        issuer="https://sv.test",
        options={"verify_iat": False, "verify_nbf": False, "verify_exp": False},
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_claims_verify_with_the_published_key(tmp_path: Path, algorithm: str) -> None:
    minted = issuer(tmp_path, algorithm=algorithm)
    token = minted.token(SID, PROFILE, None, tag)
    assert token is not None
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    assert header["kid"] == minted.keys.current.kid
    claims = verify(token, minted)
    assert claims["sub"] == "42"
    assert claims["preferred_username"] == "ada"
    assert claims["name"] == "Ada L"
    assert claims["email"] == "ada@example.test"
    assert claims["roles"] == ["admin", "ops"]
    assert claims["iat"] == claims["nbf"] == 1_000_000
    assert claims["exp"] == 1_000_300
    assert claims["sid_tag"] == tag(SID)
    assert SID not in token
    assert "attributes" not in claims
    assert len(str(claims["jti"])) >= 20


def test_exp_is_capped_by_the_session_expiry(tmp_path: Path) -> None:
    minted = issuer(tmp_path)
    token = minted.token(SID, PROFILE, datetime.fromtimestamp(1_000_060.9, UTC), tag)
    assert token is not None
    assert verify(token, minted)["exp"] == 1_000_060
    # A session ending within the second gets no token at all.
    assert minted.token("other", PROFILE, datetime.fromtimestamp(1_000_000.5, UTC), tag) is None


def test_cache_reuses_for_less_than_the_lifetime(tmp_path: Path) -> None:
    minted = issuer(tmp_path, lifetime=300)
    clock = minted._clock
    assert isinstance(clock, Clock)
    first = minted.token(SID, PROFILE, None, tag)
    assert minted.token(SID, PROFILE, None, tag) == first
    clock.now += 149
    assert minted.token(SID, PROFILE, None, tag) == first
    clock.now += 1  # half the lifetime: a fresh token
    second = minted.token(SID, PROFILE, None, tag)
    assert second != first
    # An equal profile read afresh (a user record looked up on each call) shares it.
    assert minted.token(SID, Profile(**{f: getattr(PROFILE, f) for f in PROFILE.__slots__}), None, tag) == second
    assert minted.signed == 2
    # Another session, or another profile for the same session, never shares a token.
    assert minted.token("other-session", PROFILE, None, tag) != second
    changed = minted.token(SID, Profile(id="42"), None, tag)
    assert changed != second
    assert changed is not None
    assert "preferred_username" not in verify(changed, minted)


def test_cache_never_outlives_a_shortened_session(tmp_path: Path) -> None:
    minted = issuer(tmp_path)
    first = minted.token(SID, PROFILE, None, tag)
    shorter = minted.token(SID, PROFILE, datetime.fromtimestamp(1_000_100, UTC), tag)
    assert shorter != first
    assert shorter is not None
    assert verify(shorter, minted)["exp"] == 1_000_100


def test_no_cached_token_survives_a_key_change(tmp_path: Path) -> None:
    minted = issuer(tmp_path)
    old_kid = minted.keys.current.kid
    first = minted.token(SID, PROFILE, None, tag)
    assert first is not None
    config = TokenConfig(
        key_file=write_key(tmp_path, "next.pem"),
        issuer="https://sv.test",
        audience="svc",
        retired_key_files=(minted.config.key_file,),
    )
    minted.use_keys(load_keys(config))
    second = minted.token(SID, PROFILE, None, tag)
    assert second is not None
    assert jwt.get_unverified_header(second)["kid"] == minted.keys.current.kid != old_kid
    # The retired key is still published, so the first token still verifies.
    assert [key.key_id for key in jwt.PyJWKSet.from_json(minted.keys.jwks.decode()).keys] == [
        minted.keys.current.kid,
        old_kid,
    ]
    assert verify(first, minted)["sub"] == "42"


def test_jwks_holds_no_private_member(tmp_path: Path) -> None:
    for algorithm in ("EdDSA", "ES256", "RS256"):
        minted = issuer(tmp_path, algorithm=algorithm)
        assert b'"d"' not in minted.keys.jwks
        assert b'"p"' not in minted.keys.jwks


def test_keys_that_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    cases = {
        "p384.pem": pem(ec.generate_private_key(ec.SECP384R1())),
        "rsa1024.pem": pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - refusing it is the point
        "garbage.pem": b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        "secret.txt": b"a shared secret is not a key",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        config = TokenConfig(key_file=str(tmp_path / name), issuer="i", audience="a")
        with pytest.raises(TokenError) as caught:
            load_keys(config)
        assert name in str(caught.value)
        assert "not a key" not in str(caught.value)
    public_only = tmp_path / "public.pem"
    signing = load_keys(TokenConfig(write_key(tmp_path, "k.pem"), "i", "a")).current.private
    assert signing is not None
    public_only.write_bytes(
        signing.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(TokenError, match="no private key"):
        load_keys(TokenConfig(str(public_only), "i", "a"))
    # A public key is fine as a retired one.
    keys = load_keys(TokenConfig(write_key(tmp_path, "k2.pem"), "i", "a", retired_key_files=(str(public_only),)))
    assert len(keys.retired) == 1


def test_config(tmp_path: Path) -> None:
    assert Settings.from_env(BASE).tokens is None
    key = write_key(tmp_path, "k.pem")
    env = {
        **BASE,
        "SESSIONVALIDATOR_JWT_KEY_FILE": key,
        "SESSIONVALIDATOR_JWT_ISSUER": "https://sv.test",
        "SESSIONVALIDATOR_JWT_AUDIENCE": "svc",
    }
    tokens = Settings.from_env(env).tokens
    assert tokens is not None
    assert (tokens.lifetime_s, tokens.gateway, tokens.attributes) == (300, False, False)
    assert "PRIVATE" not in repr(Settings.from_env(env))
    tokens = Settings.from_env(
        {
            **env,
            "SESSIONVALIDATOR_JWT_LIFETIME_S": "60",
            "SESSIONVALIDATOR_JWT_GATEWAY": "1",
            "SESSIONVALIDATOR_PROFILE_ATTRIBUTES": "team",
        }
    ).tokens
    assert tokens is not None
    assert (tokens.lifetime_s, tokens.gateway, tokens.attributes) == (60, True, True)
    mistakes = {
        "SESSIONVALIDATOR_JWT_ISSUER": {**env, "SESSIONVALIDATOR_JWT_ISSUER": ""},
        "SESSIONVALIDATOR_JWT_AUDIENCE": {**env, "SESSIONVALIDATOR_JWT_AUDIENCE": " "},
        "SESSIONVALIDATOR_JWT_LIFETIME_S": {**env, "SESSIONVALIDATOR_JWT_LIFETIME_S": "0"},
        "SESSIONVALIDATOR_JWT_KEY_FILE": {**env, "SESSIONVALIDATOR_JWT_KEY_FILE": str(tmp_path / "absent.pem")},
        "SESSIONVALIDATOR_JWT_GATEWAY": {**BASE, "SESSIONVALIDATOR_JWT_GATEWAY": "1"},
    }
    for variable, bad in mistakes.items():
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(bad)
        assert caught.value.variable == variable


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_mint_key_writes_an_owner_only_key_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    from sessionvalidator_service.cli import main
    from sessionvalidator_service.tokens import kid_of_pem

    path = tmp_path / "signing.pem"
    assert main(["mint-key", str(path), "--alg", algorithm], env={}) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    printed = capsys.readouterr().out.strip()
    assert printed == kid_of_pem(str(path))
    assert "PRIVATE" not in printed
    keys = load_keys(TokenConfig(str(path), "i", "a"))
    assert keys.current.algorithm == algorithm
    before = path.read_bytes()
    assert main(["mint-key", str(path)], env={}) == 1
    assert path.read_bytes() == before

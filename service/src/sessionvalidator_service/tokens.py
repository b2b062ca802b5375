"""Session tokens: a VALID session exchanged for a short-lived signed JWT, and the JWKS that verifies it.

A service behind the first one learns who the user is from the token, without
ever seeing the cookie. The keys come from PEM files
(``SESSIONVALIDATOR_JWT_KEY_FILE``: the signing key; ``_JWT_RETIRED_KEY_FILES``:
keys no longer used to sign whose tokens may still be live, published so they
still verify) and are read again on SIGHUP. Only asymmetric keys: Ed25519
(EdDSA, the default of ``mint-key``), P-256 (ES256), RSA of 2048 bits or more
(RS256, for old verifiers). A key's ``kid`` is its RFC 7638 thumbprint.

Claims: ``iss``, ``aud`` (configured), ``sub`` (the Passport user id), ``iat``
= ``nbf`` = now, ``exp`` = the earlier of now + the lifetime (default 300 s)
and the session's own expiry, ``jti``, ``sid_tag`` (the 12-hex keyed hash of
the session id the gateways already send; never the id), and the profile:
``preferred_username``, ``name``, ``email``, ``roles`` when set, and
``attributes`` only when ``SESSIONVALIDATOR_PROFILE_ATTRIBUTES`` names the keys
(the default, "every key but secrets", would put whole user records in headers).

Signing costs tens of microseconds, so a token is reused for the same session
and an equal profile while it has at least half its lifetime left and does not
outlive the session; the cache is emptied by every key (re)load (SIGHUP), so a
reloaded key set never hands out a token signed by the key it replaced.

Library: PyJWT with ``cryptography`` (the most used JOSE library in Python,
kept up to date, EdDSA/ES256/RS256 and JWKs built in; the Python client's
verifier uses the same one). Nothing here logs a token or key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from sessionvalidator_service.profile import Profile

__all__ = [
    "ALGORITHMS",
    "DEFAULT_LIFETIME_S",
    "NO_KEYS",
    "KeySet",
    "SigningKey",
    "TokenConfig",
    "TokenError",
    "TokenIssuer",
    "load_keys",
    "new_private_key_pem",
]

DEFAULT_LIFETIME_S = 300
# The key set served while tokens are off: verifiers refuse every token.
NO_KEYS = b'{"keys":[]}'
ALGORITHMS = ("EdDSA", "ES256", "RS256")
MIN_RSA_BITS = 2048
# Tokens kept at once; past that the cache starts afresh (the servicer's caches do the same).
_CACHED_TOKENS = 8192

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class TokenError(ValueError):
    """A key file that cannot be used (the message names the file, never its content)."""


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """``SESSIONVALIDATOR_JWT_*``: where the keys are and what tokens say."""

    key_file: str
    issuer: str
    audience: str
    retired_key_files: tuple[str, ...] = ()
    lifetime_s: int = DEFAULT_LIFETIME_S
    # Put the token in the gateways' ``<prefix>token`` header on every allow.
    gateway: bool = False
    # The profile attributes a token carries: the keys of an explicit allowlist, else none.
    attributes: bool = False

    @property
    def jwks_max_age_s(self) -> int:
        """How long a verifier may cache the JWKS: never longer than a token lives (see the README's rotation)."""
        return self.lifetime_s


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the set: its id, algorithm and public JWK (the private half only for the signing key)."""

    kid: str
    algorithm: str
    public_jwk: Mapping[str, str] = field(repr=False)
    private: PrivateKey | None = field(default=None, repr=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            msg = f"an EC key must be on P-256 (ES256), not {key.curve.name}"
            raise TokenError(msg)
        return "ES256"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            msg = f"an RSA key must have at least {MIN_RSA_BITS} bits, not {key.key_size}"
            raise TokenError(msg)
        return "RS256"
    msg = "not an Ed25519, P-256 or RSA key: tokens are signed with asymmetric keys only"
    raise TokenError(msg)


def _public_jwk(key: PublicKey, algorithm: str) -> dict[str, str]:
    """Return the public JWK, with ``kid`` its RFC 7638 thumbprint, ``alg`` and ``use``."""
    raw: dict[str, Any]
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = OKPAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        raw = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        raw = RSAAlgorithm.to_jwk(key, as_dict=True)
    members = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[raw["kty"]]
    required = {name: raw[name] for name in members}
    thumbprint = _b64(hashlib.sha256(json.dumps(required, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**required, "kid": thumbprint, "alg": algorithm, "use": "sig"}


def _read_key(path: str, *, private: bool) -> SigningKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read {path!r}: {exc.__class__.__name__}"
        raise TokenError(msg) from None
    is_private = b"PRIVATE KEY" in pem
    if private and not is_private:
        msg = f"{path!r} holds no private key: the signing key must be one (PEM, PKCS#8)"
        raise TokenError(msg)
    private_key: Any = None
    try:
        if is_private:
            private_key = serialization.load_pem_private_key(pem, password=None)
            public_key: Any = private_key.public_key()
        else:
            public_key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        msg = f"{path!r} is not a PEM key without a passphrase"
        raise TokenError(msg) from None
    try:
        algorithm = _algorithm_of(public_key)
    except TokenError as exc:
        msg = f"{path!r}: {exc}"
        raise TokenError(msg) from None
    jwk = _public_jwk(public_key, algorithm)
    return SigningKey(jwk["kid"], algorithm, jwk, private_key if private else None)


@dataclass(frozen=True, slots=True)
class KeySet:
    """The signing key, the retired keys still published, and their JWKS as served."""

    current: SigningKey
    retired: tuple[SigningKey, ...] = ()

    @property
    def jwks(self) -> bytes:
        """``{"keys": [...]}``: the signing key first, then the retired ones."""
        return orjson.dumps({"keys": [dict(key.public_jwk) for key in (self.current, *self.retired)]})


def load_keys(config: TokenConfig) -> KeySet:
    """Read the key files; a retired key with the signing key's ``kid`` is published once."""
    current = _read_key(config.key_file, private=True)
    retired: dict[str, SigningKey] = {}
    for path in config.retired_key_files:
        key = _read_key(path, private=False)
        if key.kid != current.kid:
            retired.setdefault(key.kid, key)
    return KeySet(current, tuple(retired.values()))


def new_private_key_pem(algorithm: str) -> bytes:
    """Generate a private key for ``algorithm`` (EdDSA, ES256 or RS256), PKCS#8 PEM, unencrypted."""
    key: PrivateKey
    if algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        msg = f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}"
        raise TokenError(msg)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def kid_of_pem(pem_path: str) -> str:
    """Return the ``kid`` a key file's tokens carry (``mint-key`` prints it)."""
    return _read_key(pem_path, private=False).kid


def _profile_claims(profile: Profile, *, attributes: bool) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": profile.id}
    if profile.username:
        claims["preferred_username"] = profile.username
    if profile.display_name:
        claims["name"] = profile.display_name
    if profile.email:
        claims["email"] = profile.email
    if profile.roles:
        claims["roles"] = list(profile.roles)
    if attributes and profile.attributes:
        claims["attributes"] = dict(profile.attributes)
    return claims


class TokenIssuer:
    """Mints tokens with one key set, reusing each session's token while it is young enough."""

    def __init__(self, config: TokenConfig, keys: KeySet, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        # Tokens signed so far (cache misses), for the benchmark and tests.
        self.signed = 0
        self.use_keys(keys)

    def use_keys(self, keys: KeySet) -> None:
        """Sign with ``keys`` from now on; no token signed before is handed out again."""
        self.keys = keys
        self._headers = {"kid": keys.current.kid, "typ": "JWT"}
        # session id -> (token, exp, reuse until, the profile it was signed for)
        self._cache: dict[str, tuple[str, int, float, Profile]] = {}

    def token(
        self,
        session_id: str,
        profile: Profile,
        expire_time: datetime | None,
        tag: Callable[[str], str],
    ) -> str | None:
        """Return the token for a VALID authenticated session, or ``None`` when the session ends within a second."""
        now = self._clock()
        session_end = int(expire_time.timestamp()) if expire_time is not None else None
        cached = self._cache.get(session_id)
        if (
            cached is not None
            # The validator hands out the same profile object while the session is unchanged; a user record read
            # afresh on each call (SESSIONVALIDATOR_USER_KEY) is an equal one.
            and (cached[3] is profile or cached[3] == profile)
            and now < cached[2]
            and (session_end is None or cached[1] <= session_end)
        ):
            return cached[0]
        issued = int(now)
        lifetime = self.config.lifetime_s
        expires = issued + lifetime if session_end is None else min(issued + lifetime, session_end)
        if expires <= issued:
            return None
        claims = _profile_claims(profile, attributes=self.config.attributes)
        claims |= {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": _b64(os.urandom(16)),
            "sid_tag": tag(session_id),
        }
        signing = self.keys.current
        if signing.private is None:  # load_keys reads the signing key's private half
            msg = "the signing key has no private half"
            raise TokenError(msg)
        self.signed += 1
        token = jwt.encode(claims, signing.private, algorithm=signing.algorithm, headers=self._headers)
        if len(self._cache) >= _CACHED_TOKENS:
            self._cache.clear()
        # Reused while at least half its lifetime is left (so never for its whole lifetime).
        self._cache[session_id] = (token, expires, issued + (expires - issued) / 2, profile)
        return token

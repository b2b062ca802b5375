"""Verify SessionValidator session tokens offline: PyJWT and the service's JWKS.

A service that is called on a user's behalf receives a session token (a JWT
the validator signed, sent by a gateway in ``x-session-token`` or passed on by
the first service) and checks it here without asking the validator::

    from sessionvalidator.tokens import TokenVerifier

    verifier = TokenVerifier(
        "http://sessionvalidator:8081/.well-known/jwks.json",
        issuer="https://sessionvalidator.example",
        audience="internal-services",
    )
    claims = verifier.verify(token)  # raises InvalidTokenError
    user_id = claims["sub"]

The key set is cached (``cache_s``, keep it at or below the JWKS's
``Cache-Control`` max-age) and fetched again at once when a token names a key
the cached set lacks, so a rotation never fails a live session. The algorithm
is the one the key itself names: ``alg: none``, HMAC with the public key as
secret and any mismatch are refused. A token stays valid until its ``exp``
even if the session was logged out sooner: keep the lifetime short.

Needs the ``tokens`` extra (``pip install 'sessionvalidator[tokens]'``).
"""

from __future__ import annotations

from typing import Any

import jwt

__all__ = ["ALGORITHMS", "InvalidTokenError", "TokenKeysUnavailableError", "TokenVerifier"]

# What the validator signs with; anything else (none, HS*) is refused before the signature is looked at.
ALGORITHMS = ("EdDSA", "ES256", "RS256")
_REQUIRED = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti")


class InvalidTokenError(Exception):
    """The token is not a live session token of this issuer for this audience (the reason is in the message)."""


class TokenKeysUnavailableError(Exception):
    """The JWKS could not be fetched: nothing was decided about the token."""


class TokenVerifier:
    """Verify session tokens with the keys at ``jwks_url``.

    A token naming a key the cached set lacks fetches the set again at once. Where tokens with made-up
    ``kid`` values could make that too frequent, ``refresh_cooldown_s`` spaces such fetches; then publish
    each new key (as a retired one) for that long before it signs, as the README's rotation steps do.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        cache_s: float = 300.0,
        leeway_s: float = 0.0,
        timeout_s: float = 2.0,
        refresh_cooldown_s: float = 0.0,
    ) -> None:
        # PyJWKClient's default cooldown (30 s after any fetch before an unknown kid may fetch again) would
        # refuse a new signing key's tokens for up to 30 s after a rotation; see the class docstring.
        self._keys = jwt.PyJWKClient(
            jwks_url, cache_keys=False, lifespan=cache_s, timeout=timeout_s, cooldown_duration=refresh_cooldown_s
        )
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token; raise :class:`InvalidTokenError` for any other."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            msg = f"not a JWT: {exc}"
            raise InvalidTokenError(msg) from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            msg = f"algorithm {algorithm!r} is not one the validator signs with"
            raise InvalidTokenError(msg)
        try:
            # An unknown kid fetches the set again once (PyJWKClient), then fails.
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenKeysUnavailableError(str(exc)) from None
        except jwt.PyJWTError as exc:
            msg = f"no published key verifies it: {exc}"
            raise InvalidTokenError(msg) from None
        if key.algorithm_name != algorithm:
            msg = f"the key {key.key_id!r} is for {key.algorithm_name}, not {algorithm}"
            raise InvalidTokenError(msg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(_REQUIRED)},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(str(exc)) from None
        return claims

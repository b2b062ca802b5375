"""Session tokens every client's verifier must refuse, made with the live service's own signing key.

tests/harness.py writes them (with the JWKS address, issuer and audience) to
the file named by ``SESSIONVALIDATOR_TEST_TOKENS``; the Python, Go and Node
client tests verify a token the service issued and refuse each of these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from sessionvalidator_service.tokens import TokenConfig, load_keys, new_private_key_pem

__all__ = ["AUDIENCE", "ISSUER", "refused_tokens", "write_key"]

ISSUER = "https://sessionvalidator.client-tests"
AUDIENCE = "client-tests"


def write_key(path: Path, algorithm: str = "EdDSA") -> str:
    """Write a new private key to ``path`` and return the path as text."""
    path.write_bytes(new_private_key_pem(algorithm))
    return str(path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def refused_tokens(key_file: str, spare_key_file: str) -> dict[str, str]:
    """Tokens that must fail verification, by what is wrong with them.

    ``spare_key_file`` is a key the service never published (one retired and since removed).
    """
    signing = load_keys(TokenConfig(key_file, ISSUER, AUDIENCE)).current
    spare = load_keys(TokenConfig(spare_key_file, ISSUER, AUDIENCE)).current
    assert signing.private is not None
    assert spare.private is not None
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "42", "iat": now, "nbf": now, "exp": now + 300, "jti": "x"}
    headers = {"kid": signing.kid, "typ": "JWT"}

    def signed(changes: dict[str, Any], *, key: Any = signing.private, kid: str = signing.kid) -> str:
        return jwt.encode({**claims, **changes}, key, algorithm=signing.algorithm, headers={**headers, "kid": kid})

    public_pem = signing.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = _unsigned({"alg": "HS256", "kid": signing.kid, "typ": "JWT"}, claims)
    hs_signature = _b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    valid = signed({})
    head, _, signature = valid.split(".")
    tampered_body = _b64(json.dumps({**claims, "sub": "admin"}).encode())
    return {
        "alg_none": _unsigned({"alg": "none", "kid": signing.kid, "typ": "JWT"}, claims) + ".",
        "hs256_with_the_public_key": hs_input + "." + hs_signature,
        "expired": signed({"iat": now - 900, "nbf": now - 900, "exp": now - 600}),
        "not_yet_valid": signed({"nbf": now + 600, "exp": now + 900}),
        "wrong_audience": signed({"aud": "another-service"}),
        "wrong_issuer": signed({"iss": "https://someone-else.example"}),
        "unknown_kid": signed({}, kid="no-such-key"),
        "retired_and_removed_key": signed({}, key=spare.private, kid=spare.kid),
        "tampered_claims": f"{head}.{tampered_body}.{signature}",
        "no_subject": jwt.encode(
            {k: v for k, v in claims.items() if k != "sub"},
            signing.private,
            algorithm=signing.algorithm,
            headers=headers,
        ),
    }

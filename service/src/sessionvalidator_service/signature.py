"""Signing and verification with parity with npm ``cookie-signature`` 1.0.7.

``sign(val, secret) = val + "." + base64(HMAC-SHA256(secret, val))`` with the
standard alphabet and the ``=`` padding removed; the secret and the value are
both encoded as UTF-8. ``unsign`` splits at the *last* ``.`` and accepts only
an exact match (1.0.7 compares SHA-1 digests of both strings, which is exact
equality; we compare in constant time instead).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Signer", "Unsigned"]

_SIGNATURE_LENGTH = 43  # base64 of a 32-byte digest, padding removed


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A value whose signature verified."""

    value: str
    secret_index: int


class Signer:
    """Signs with the first secret and verifies with every secret, in order.

    This is express-session's rotation rule: new cookies are signed with
    ``secrets[0]``; a cookie signed by any listed secret still verifies.
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str | bytes]) -> None:
        if not secrets:
            msg = "at least one secret is required"
            raise ValueError(msg)
        self._keys = tuple(s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in secrets)

    def __len__(self) -> int:
        return len(self._keys)

    def _mac(self, index: int, value: bytes) -> bytes:
        # hmac.digest is OpenSSL's one-shot HMAC: cheaper than copying a keyed object.
        return base64.b64encode(hmac.digest(self._keys[index], value, "sha256"))[:_SIGNATURE_LENGTH]

    def sign(self, value: str, secret_index: int = 0) -> str:
        """Return ``value.<signature>`` as ``cookie-signature``'s ``sign``."""
        return value + "." + self._mac(secret_index, value.encode("utf-8")).decode("ascii")

    def unsign(self, signed: str) -> Unsigned | None:
        """Return the value under the first secret that verifies ``signed``.

        Every secret is tried (rotation); each comparison is constant time.
        """
        dot = signed.rfind(".")
        if dot == -1:
            # cookie-signature then compares sign(signed[:-1]), which always
            # contains a '.', against a string without one: never equal.
            return None
        value = signed[:dot]
        given = signed[dot + 1 :].encode("utf-8")
        message = value.encode("utf-8")
        for index in range(len(self._keys)):
            if hmac.compare_digest(self._mac(index, message), given):
                return Unsigned(value, index)
        return None

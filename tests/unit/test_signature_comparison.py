"""The signature comparison is constant time by construction: ``hmac.compare_digest`` alone decides.

Deterministic, so it runs in ``make test``; the statistical check of the
timing itself (dudect, tests/timing) needs a quiet machine and is ``make
timing``. Here the comparison functions the code may use (``hmac.compare_digest``
or ``secrets.compare_digest``, the same function) are replaced by a recording
one whose answer the test chooses. If ``Signer.unsign`` decides with ``==``
(which stops at the first differing byte), or with anything beside the
constant-time comparison, the answer it gives no longer follows the recorded
one and the test fails.
"""

from __future__ import annotations

import hmac
import secrets

import pytest

from sessionvalidator_service import signature
from sessionvalidator_service.signature import Signer

SECRETS = ["the current secret, comfortably over 32 bytes", "the previous secret, still accepted"]


_REAL_COMPARE = hmac.compare_digest


class Comparisons:
    """Stands in for compare_digest: records each call, answers as told (``None``: as the real one)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.answer: bool | None = None

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return _REAL_COMPARE(a, b) if self.answer is None else self.answer


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> Comparisons:
    recorder = Comparisons()
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    monkeypatch.setattr(secrets, "compare_digest", recorder)
    if hasattr(signature, "compare_digest"):  # imported by name
        monkeypatch.setattr(signature, "compare_digest", recorder)
    return recorder


def test_a_good_signature_is_accepted_through_the_constant_time_comparison(comparisons: Comparisons) -> None:
    signer = Signer(SECRETS)
    signed = signer.sign("session-id")
    assert signer.unsign(signed) is not None
    assert comparisons.calls, "the signature was compared without compare_digest"
    computed, given = comparisons.calls[-1]
    assert isinstance(computed, bytes)
    assert isinstance(given, bytes)
    assert signed.endswith("." + given.decode("ascii"))


def test_the_constant_time_comparison_alone_refuses(comparisons: Comparisons) -> None:
    """Told 'different' for every secret, a correctly signed value must be refused: nothing else decided."""
    signer = Signer(SECRETS)
    comparisons.answer = False
    assert signer.unsign(signer.sign("session-id")) is None
    assert signer.unsign(Signer(SECRETS[1:]).sign("session-id")) is None
    # Every secret was tried, each through the comparison (rotation).
    assert len(comparisons.calls) == 2 * len(SECRETS)


def test_the_constant_time_comparison_alone_accepts(comparisons: Comparisons) -> None:
    """Told 'equal', a forged signature is accepted: no ``==`` or other check stood beside the comparison."""
    signer = Signer(SECRETS)
    comparisons.answer = True
    forged = signer.sign("session-id")[:-5] + "AAAAA"
    unsigned = signer.unsign(forged)
    assert unsigned is not None
    assert (unsigned.value, unsigned.secret_index) == ("session-id", 0)


def test_without_the_stand_in_a_forged_signature_is_refused() -> None:
    """The real comparison, for contrast: the tests above changed only what compare_digest answers."""
    signer = Signer(SECRETS)
    assert signer.unsign(signer.sign("session-id")[:-5] + "AAAAA") is None
    assert signer.unsign("session-id.") is None

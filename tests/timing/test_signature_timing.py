"""Signature verification must not leak, through timing, how much of a forged signature is right.

dudect-style (tests/timing/dudect.py): ``Signer.unsign`` on near-miss
signatures (the first ``k`` of 43 characters right) against random ones,
randomly interleaved, Welch's t-test on raw, cropped and second-order
timings; ``|t| > 10`` fails. A control shows the test has teeth: a
byte-by-byte early-exit comparison must be caught. (``==`` on bytes stops at
the first differing byte, a few ns on ~1.7 us; whether 200,000 measurements
resolve that depends on the machine's noise, so it is no test here: measure it
with ``python tests/timing/dudect.py --comparator equals``.)

Not part of ``make test`` (tests/conftest.py leaves the ``timing`` tier out of
a bare ``pytest``): run with ``make timing`` on a quiet machine. What ``make
test`` checks instead, deterministically, is that the comparison the code makes
is ``hmac.compare_digest`` and nothing beside it (tests/unit/test_signature_comparison.py):
``==`` in ``signature.py`` fails there on every run. ``test_the_comparison_alone_is_constant_time``
below times the standard library's comparison itself, as a check of this machine's
``compare_digest``; the project's use of it is what the unit test covers.
``TIMING_MEASUREMENTS`` overrides the 200,000 measurements per test.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.timing import dudect

MEASUREMENTS = int(os.environ.get("TIMING_MEASUREMENTS", "200000"))


@pytest.mark.parametrize("k", [42, 32])
def test_unsign_takes_as_long_for_a_near_miss_as_for_a_random_signature(
    k: int, record_property: Callable[[str, object], None]
) -> None:
    result = dudect.run("real", k=k, measurements=MEASUREMENTS)
    print(result.report())
    record_property("max_t", round(result.max_t, 2))
    assert not result.leaks, result.report()


def test_the_comparison_alone_is_constant_time(record_property: Callable[[str, object], None]) -> None:
    result = dudect.run("real", level="compare", measurements=MEASUREMENTS)
    print(result.report())
    record_property("max_t", round(result.max_t, 2))
    assert not result.leaks, result.report()


def test_an_early_exit_comparison_is_caught(record_property: Callable[[str, object], None]) -> None:
    result = dudect.run("early-exit", k=42, measurements=MEASUREMENTS)
    print(result.report())
    record_property("max_t", round(result.max_t, 2))
    assert result.leaks, f"the test failed to see a deliberate leak: {result.report()}"

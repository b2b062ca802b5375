"""A dudect-style constant-time test for signature checks (Reparaz, Balasch, Verbauwhede, 2017).

Two classes of inputs go to the same function, randomly interleaved, and each
call is timed with ``time.perf_counter_ns``:

* class 0 (*near miss*): the correct signature with only its characters from
  position ``k`` on replaced (``k = 42`` of 43: only the last one differs);
* class 1 (*random*): a random signature of the same length and alphabet.

A comparison that stops at the first differing byte takes longer on class 0.
Welch's t-test compares the two timing distributions, as dudect does: on the
raw times, on the times cropped below 100 percentiles (dudect's thresholds
``1 - 0.5 ** (10 * (i + 1) / 100)``, which cut the long tail that scheduling
noise adds), and a second-order test on centered squares. The statistic
reported is the largest ``|t|`` among tests with at least 10,000
measurements; ``|t| > 10`` means a leak (dudect's and RustCrypto's hard
threshold), ``|t| > 500`` a blatant one.

    .venv/bin/python tests/timing/dudect.py --comparator all --measurements 200000
    .venv/bin/python tests/timing/dudect.py --comparator early-exit --level compare --k 32

``--level unsign`` (the default) times ``Signer.unsign`` as the service calls
it, HMAC included; ``--level compare`` times the comparison alone, which is
far more sensitive (it shows whether ``==`` on bytes leaks at all).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import gc
import hmac
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sessionvalidator_service.signature import Signer, Unsigned  # noqa: E402

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SIGNATURE_LENGTH = 43
THRESHOLD = 10.0  # |t| above this: not constant time (dudect, RustCrypto)
BLATANT = 500.0
ENOUGH_MEASUREMENTS = 10_000  # dudect ignores tests with fewer
PERCENTILES = 100
WARMUP = 5_000

T = TypeVar("T")
# A sample as (count, sum, sum of squares).
Moments = tuple[int, float, float]

SECRET = "timing: a signing secret comfortably over 32 bytes long"  # noqa: S105 - a test secret
SESSION_ID = "Zq3v9wXbT1kE6mNcR4yHuLp0sJ8aFdGi"  # 32 characters, as uid-safe(24) makes


# ---------------------------------------------------------------- comparators


class EqualsSigner(Signer):
    """``unsign`` with ``==`` on the signature bytes (memcmp: stops at the first difference)."""

    def unsign(self, signed: str) -> Unsigned | None:
        dot = signed.rfind(".")
        if dot == -1:
            return None
        value = signed[:dot]
        given = signed[dot + 1 :].encode("utf-8")
        message = value.encode("utf-8")
        for index in range(len(self)):
            if self._mac(index, message) == given:
                return Unsigned(value, index)
        return None


class EarlyExitSigner(Signer):
    """``unsign`` with a byte-by-byte loop that returns at the first difference: a deliberate leak."""

    def unsign(self, signed: str) -> Unsigned | None:
        dot = signed.rfind(".")
        if dot == -1:
            return None
        value = signed[:dot]
        given = signed[dot + 1 :].encode("utf-8")
        message = value.encode("utf-8")
        for index in range(len(self)):
            if early_exit_equal(self._mac(index, message), given):
                return Unsigned(value, index)
        return None


def early_exit_equal(expected: bytes, given: bytes) -> bool:
    """Compare byte by byte, stopping at the first difference."""
    if len(expected) != len(given):
        return False
    for left, right in zip(expected, given, strict=True):  # noqa: SIM110 - the explicit early exit is the point
        if left != right:
            return False
    return True


def plain_equal(expected: bytes, given: bytes) -> bool:
    return expected == given


SIGNERS: dict[str, type[Signer]] = {"real": Signer, "equals": EqualsSigner, "early-exit": EarlyExitSigner}
COMPARES: dict[str, Callable[[bytes, bytes], bool]] = {
    "real": hmac.compare_digest,
    "equals": plain_equal,
    "early-exit": early_exit_equal,
}


# ---------------------------------------------------------------- inputs


def correct_signature() -> str:
    return Signer([SECRET]).sign(SESSION_ID).rpartition(".")[2]


def near_miss(correct: str, k: int, rng: random.Random) -> str:
    """``correct[:k]`` followed by characters that all differ from the correct ones."""
    tail = "".join(rng.choice(ALPHABET.replace(c, "")) for c in correct[k:])
    return correct[:k] + tail


def random_signature(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(SIGNATURE_LENGTH))


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class TTest:
    name: str
    n: int
    t: float


@dataclass(frozen=True)
class Result:
    comparator: str
    level: str
    k: int
    measurements: int
    tests: list[TTest] = field(repr=False)
    medians_ns: tuple[float, float]

    @property
    def worst(self) -> TTest:
        eligible = [test for test in self.tests if test.n >= ENOUGH_MEASUREMENTS] or self.tests
        return max(eligible, key=lambda test: abs(test.t))

    @property
    def max_t(self) -> float:
        return abs(self.worst.t)

    @property
    def leaks(self) -> bool:
        return self.max_t > THRESHOLD

    def report(self) -> str:
        worst = self.worst
        raw = next(test for test in self.tests if test.name == "raw")
        second = next(test for test in self.tests if test.name == "second-order")
        verdict = (
            "definitely not constant time"
            if self.max_t > BLATANT
            else "probably not constant time"
            if self.max_t > THRESHOLD
            else "maybe constant time"
        )
        tau = worst.t / math.sqrt(worst.n)
        return (
            f"{self.comparator:10} level={self.level:7} k={self.k:2} n={self.measurements}: "
            f"max |t| = {self.max_t:8.2f} ({worst.name}, n={worst.n}, tau={tau:+.4f}); "
            f"raw t = {raw.t:+.2f}, second-order t = {second.t:+.2f}; "
            f"medians near-miss/random = {self.medians_ns[0]:.0f}/{self.medians_ns[1]:.0f} ns: {verdict}"
        )


@dataclass(frozen=True)
class _Class:
    """One class's sorted times with prefix sums, for t-tests on any crop in O(log n)."""

    times: list[int]
    sums: list[int]
    squares: list[int]

    @classmethod
    def of(cls, times: Sequence[int]) -> _Class:
        ordered = sorted(times)
        sums = [0]
        squares = [0]
        for value in ordered:
            sums.append(sums[-1] + value)
            squares.append(squares[-1] + value * value)
        return cls(ordered, sums, squares)

    def below(self, threshold: float) -> Moments:
        """(count, sum, sum of squares) of the times strictly below ``threshold``."""
        count = bisect.bisect_left(self.times, threshold)
        return count, self.sums[count], self.squares[count]


def welch_t(a: Moments, b: Moments) -> float:
    """Welch's t for two samples given as (n, sum, sum of squares); integer times stay exact until here."""
    (n0, s0, q0), (n1, s1, q1) = a, b
    if n0 < 2 or n1 < 2:  # a variance needs two samples
        return 0.0
    var0 = (n0 * q0 - s0 * s0) / (n0 * (n0 - 1))
    var1 = (n1 * q1 - s1 * s1) / (n1 * (n1 - 1))
    denominator = math.sqrt(var0 / n0 + var1 / n1)
    if denominator == 0:
        return 0.0
    return (s0 / n0 - s1 / n1) / denominator


def _second_order(times: Sequence[int]) -> Moments:
    """Moments of the centered squares (dudect's second-order pre-processing)."""
    mean = sum(times) / len(times)
    centered = [(t - mean) ** 2 for t in times]
    return len(centered), math.fsum(centered), math.fsum(c * c for c in centered)


def analyse(classes: Sequence[int], times: Sequence[int]) -> tuple[list[TTest], tuple[float, float]]:
    """dudect's battery: raw, 100 cropped, and second-order t-tests."""
    per_class: list[list[int]] = [[], []]
    for cls, value in zip(classes, times, strict=True):
        per_class[cls].append(value)
    near, rand = _Class.of(per_class[0]), _Class.of(per_class[1])
    ordered = sorted(times)
    tests = [TTest("raw", len(times), welch_t(near.below(math.inf), rand.below(math.inf)))]
    for index in range(PERCENTILES):
        fraction = 1 - 0.5 ** (10 * (index + 1) / PERCENTILES)
        threshold = ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]
        a, b = near.below(threshold), rand.below(threshold)
        tests.append(TTest(f"crop p{100 * fraction:.4g}", a[0] + b[0], welch_t(a, b)))
    a2, b2 = _second_order(per_class[0]), _second_order(per_class[1])
    tests.append(TTest("second-order", a2[0] + b2[0], welch_t(a2, b2)))
    medians = (near.times[len(near.times) // 2], rand.times[len(rand.times) // 2])
    return tests, (float(medians[0]), float(medians[1]))


# ---------------------------------------------------------------- measuring


def _timed(call: Callable[[T], object], inputs: Sequence[T]) -> list[int]:
    """Time each call with perf_counter_ns, the garbage collector off."""
    clock = time.perf_counter_ns
    times = [0] * len(inputs)
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for index, item in enumerate(inputs):
            start = clock()
            call(item)
            times[index] = clock() - start
    finally:
        if gc_enabled:
            gc.enable()
    return times


def run(
    comparator: str = "real",
    *,
    level: str = "unsign",
    k: int = 42,
    measurements: int = 200_000,
    seed: int | None = None,
) -> Result:
    """Measure ``comparator`` on the two classes and run the t-tests."""
    if not 0 <= k < SIGNATURE_LENGTH:
        msg = f"k must be in 0..{SIGNATURE_LENGTH - 1}"
        raise ValueError(msg)
    rng = random.Random(seed)
    correct = correct_signature()
    classes = [rng.getrandbits(1) for _ in range(WARMUP + measurements)]
    # Every input is a fresh object, in both classes: no class gets warmer caches.
    signatures = [near_miss(correct, k, rng) if cls == 0 else random_signature(rng) for cls in classes]
    if level == "unsign":
        signer = SIGNERS[comparator]([SECRET])
        times = _timed(signer.unsign, [f"{SESSION_ID}.{signature}" for signature in signatures])
    elif level == "compare":
        compare = functools.partial(COMPARES[comparator], correct.encode("ascii"))
        times = _timed(compare, [signature.encode("ascii") for signature in signatures])
    else:
        msg = f"unknown level {level!r}"
        raise ValueError(msg)
    tests, medians = analyse(classes[WARMUP:], times[WARMUP:])
    return Result(comparator, level, k, measurements, tests, medians)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comparator", choices=[*SIGNERS, "all"], default="all")
    parser.add_argument("--level", choices=["unsign", "compare"], default="unsign")
    parser.add_argument("--k", type=int, default=42, help="correct leading characters in class 0 (default 42)")
    parser.add_argument("--measurements", type=int, default=200_000)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    comparators = list(SIGNERS) if args.comparator == "all" else [args.comparator]
    for comparator in comparators:
        result = run(comparator, level=args.level, k=args.k, measurements=args.measurements, seed=args.seed)
        print(result.report(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Hypothesis profiles for every tier that draws examples (the fuzz properties, the batch properties).

Pick one with ``HYPOTHESIS_PROFILE``:

* ``ci`` (the default, so ``make test`` is reproducible on every machine): derandomized, no example
  database, nothing written;
* ``dev``: random, failures remembered in tests/fuzz/.work/hypothesis/examples (git-ignored);
* ``mutants``: as ``ci`` without shrinking (tests/mutants/run.py only needs to know that a test fails);
* ``long``: as ``dev``; combine with ``FUZZ_EXAMPLES_SCALE=N`` (N times more examples per test, see
  :func:`examples`) for a long run, e.g. ``HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=100 .venv/bin/python -m
  pytest tests/fuzz``.

Loaded once by tests/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

WORK = Path(__file__).resolve().parents[1] / "fuzz" / ".work"
SCALE = max(1, int(os.environ.get("FUZZ_EXAMPLES_SCALE", "1")))


def examples(count: int) -> int:
    """``count`` examples, times FUZZ_EXAMPLES_SCALE for a long run."""
    return count * SCALE


def load() -> None:
    """Register the profiles and load the one ``HYPOTHESIS_PROFILE`` names (``ci`` by default)."""
    # Hypothesis caches (Unicode tables, constants) go to the git-ignored work
    # directory, not to a .hypothesis/ in whatever directory pytest runs from.
    set_hypothesis_home_dir(WORK / "hypothesis")
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("mutants", settings.get_profile("ci"), phases=[Phase.explicit, Phase.generate])
    settings.register_profile("dev", database=DirectoryBasedExampleDatabase(WORK / "hypothesis" / "examples"))
    settings.register_profile(
        "long",
        database=DirectoryBasedExampleDatabase(WORK / "hypothesis" / "examples"),
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

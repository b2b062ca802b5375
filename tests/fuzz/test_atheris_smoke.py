"""A short coverage-guided run of every atheris target: the fuzzing part of ``make test``.

Each target runs 10,000 inputs (seeded, so the run is reproducible) from the
committed seeds, in a subprocess, and must neither crash nor hang (open bugs,
oracles.OPEN_BUGS, would be tolerated; there are none today). The
long run is ``make fuzz`` (tests/fuzz/run.py). Skipped where atheris is not
installed (it ships wheels for Linux x86_64 only).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNS = 10_000

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (Linux x86_64 only)"
)


@pytest.mark.parametrize("target", ["cookie", "stored", "profile"])
def test_a_short_fuzz_run_finds_nothing_new(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--target",
            target,
            "--runs",
            str(RUNS),
            "--workdir",
            str(tmp_path),
            "--",
            "-seed=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = tmp_path / target / "fuzz.log"
    details = result.stdout + result.stderr + (log.read_text(errors="replace")[-6000:] if log.exists() else "")
    assert result.returncode == 0, details
    assert f"{RUNS} execs" in result.stdout, details

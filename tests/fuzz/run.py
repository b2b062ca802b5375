"""Run the atheris fuzz targets (tests/fuzz/atheris_*.py) with their seeds and dictionaries.

    .venv/bin/python tests/fuzz/run.py --target all --seconds 600     # make fuzz FUZZ_SECONDS=600
    .venv/bin/python tests/fuzz/run.py --target cookie --runs 2000    # what the smoke test does
    .venv/bin/python tests/fuzz/run.py --target stored --strict       # stop on open known bugs too
    .venv/bin/python tests/fuzz/run.py --target profile -- -seed=7    # extra libFuzzer flags after --

Targets run one after the other, one process each (the machine is shared).
Each keeps its state in ``--workdir`` (default tests/fuzz/.work, git-ignored):
``<target>/corpus`` grows across runs, ``<target>/artifacts`` holds
``crash-*``/``timeout-*`` inputs, ``<target>/fuzz.log`` the libFuzzer log.
The committed seeds in tests/fuzz/corpus/<target> are only read.

Reproduce a crash: ``.venv/bin/python tests/fuzz/atheris_<target>.py <artifact>``.
Exit status: 0 when no target crashed or hung, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGETS = {
    # target: (dictionary, max input length)
    "cookie": ("cookie.dict", 17 * 1024),  # past the 16 KiB limit
    "stored": ("json.dict", 8 * 1024),  # room for JSON nested past 1024 levels
    "profile": ("json.dict", 8 * 1024),
}


@dataclass(frozen=True)
class Outcome:
    target: str
    returncode: int
    seconds: float
    execs: int
    coverage: int
    corpus: int
    artifacts: list[Path]
    known_bugs: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts


def _stat(log: str, name: str) -> int:
    match = re.search(rf"stat::{name}:\s*(\d+)", log)
    return int(match.group(1)) if match else 0


def run_target(target: str, args: argparse.Namespace) -> Outcome:
    dictionary, max_len = TARGETS[target]
    workdir = Path(args.workdir).resolve() / target
    corpus = workdir / "corpus"
    artifacts = workdir / "artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    budget = [f"-runs={args.runs}"] if args.runs is not None else [f"-max_total_time={args.seconds}"]
    command = [
        sys.executable,
        str(HERE / f"atheris_{target}.py"),
        *budget,
        f"-max_len={max_len}",
        f"-dict={HERE / 'dicts' / dictionary}",
        f"-artifact_prefix={artifacts}/",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        "-print_final_stats=1",
        *args.libfuzzer,
        str(corpus),
        str(HERE / "corpus" / target),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.strict:
        env["SV_FUZZ_STRICT"] = "1"
    log_path = workdir / "fuzz.log"
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log_file:
        returncode = subprocess.run(
            command, cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False
        ).returncode
    seconds = time.monotonic() - started
    log = log_path.read_text(encoding="utf-8", errors="replace")
    coverage = [int(c) for c in re.findall(r"\bcov: (\d+)", log)]
    return Outcome(
        target=target,
        returncode=returncode,
        seconds=seconds,
        execs=_stat(log, "number_of_executed_units"),
        coverage=max(coverage, default=0),
        corpus=sum(1 for _ in corpus.iterdir()),
        artifacts=sorted(set(artifacts.iterdir()) - before),
        known_bugs=sorted(set(re.findall(r"^  (SV-FUZZ-\d+):", log, flags=re.MULTILINE))),
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    budget.add_argument("--runs", type=int, help="inputs per target, instead of a time budget")
    parser.add_argument("--strict", action="store_true", help="stop on open known bugs too (SV_FUZZ_STRICT=1)")
    parser.add_argument("--workdir", default=str(HERE / ".work"), help="state directory (default tests/fuzz/.work)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it is a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    args = parser.parse_args(argv)
    args.libfuzzer = extra
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    targets = list(TARGETS) if args.target == "all" else [args.target]
    outcomes = []
    for target in targets:
        outcome = run_target(target, args)
        outcomes.append(outcome)
        status = "ok" if outcome.ok else f"FAILED (exit {outcome.returncode})"
        print(
            f"{target:8} {status}: {outcome.execs} execs in {outcome.seconds:.0f} s "
            f"({outcome.execs / max(outcome.seconds, 1e-9):.0f}/s), cov {outcome.coverage}, corpus {outcome.corpus}"
            + (f", known bugs hit: {', '.join(outcome.known_bugs)}" if outcome.known_bugs else "")
        )
        for artifact in outcome.artifacts:
            print(f"  artifact: {artifact}")
        if not outcome.ok:
            print(f"  log: {Path(args.workdir).resolve() / target / 'fuzz.log'}")
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

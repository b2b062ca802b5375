"""Plant known defects in a copy of the tree, one at a time, and check that the tier meant to catch each one fails.

    .venv/bin/python tests/mutants/run.py                 # make mutants: every mutant; exit 1 if any survives
    .venv/bin/python tests/mutants/run.py --list          # the mutants and the tests expected to catch them
    .venv/bin/python tests/mutants/run.py --only signature_equals --only refused_items_last

Each mutant is one exact text replacement in one service file: a small,
plausible bug of the kind that once survived every tier (issue 27), or that
guards a rule the README promises. The working tree (tracked and untracked,
not ignored, files, so uncommitted work counts) is copied to
``.tmp/mutants/tree``; the pytest paths of every mutant must first pass there
unmutated (a baseline), then each mutant is written into the copy, its paths
run with ``pytest -x``, and the file restored. A mutant *survives* when its
paths pass; a replacement whose text is no longer found exactly once is an
error (the list must follow the code). The copy's service and client are
imported ahead of the venv's editable install (PYTHONPATH), and checked to be.

The paths are all in what ``make test`` runs (the bare ``pytest`` of
``make test-service``, or ``make test-faults``). The whole run takes about a
minute on the shared 2-core machine. A mutation tool was tried instead:
mutmut 3.8.1 on signature.py alone (72 lines) made 67 mutants and took 90 s
over tests/unit and tests/fast, after moving the package out of service/src
(it names modules by path) and pointing PYTHONPATH at its copy; its results
were not usable (a mutant no test can see, an error message set to None, was
reported killed, and a single mutant's run ended in its own "failed to run
pytest" error), and it runs tests in forked copies of one process, which the
real-process tiers (Redis, FerretDB, the service as a subprocess) are not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVICE = "service/src/sessionvalidator_service/"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # pytest paths (in make test) that must fail


MUTANTS = (
    Mutant(
        "batch_cache_misses_sorted",
        "a batch reads its session-cache misses in another order than it zips them back (item i gets j's session)",
        SERVICE + "validator.py",
        "missing = [session_id for session_id, stored in zip(session_ids, found, strict=True) if stored is None]",
        "missing = sorted(session_id for session_id, stored in zip(session_ids, found, strict=True) if stored is None)",
        ("tests/fast/test_inprocess_batches.py", "tests/integration/test_batch_properties.py"),
    ),
    Mutant(
        "refused_items_last",
        "a batch's items refused by the bad-attempt limit are moved to the end of the response",
        SERVICE + "servicer.py",
        "responses = [self._response(outcome) for outcome in outcomes]",
        "outcomes = [o for o in outcomes if o.reason is not None] + [o for o in outcomes if o.reason is None]\n"
        "            responses = [self._response(outcome) for outcome in outcomes]",
        ("tests/fast/test_inprocess_batches.py",),
    ),
    Mutant(
        "signature_equals",
        "the signature is compared with == (stops at the first differing byte) instead of hmac.compare_digest",
        SERVICE + "signature.py",
        "if hmac.compare_digest(self._mac(index, message), given):",
        "if self._mac(index, message) == given:",
        ("tests/unit/test_signature_comparison.py",),
    ),
    Mutant(
        "empty_signature_accepted",
        "the signature is compared only as far as the cookie's own (an empty or truncated signature verifies)",
        SERVICE + "signature.py",
        "if hmac.compare_digest(self._mac(index, message), given):",
        "if hmac.compare_digest(self._mac(index, message)[: len(given)], given):",
        ("tests/unit/test_domain.py", "tests/fast/test_inprocess_batches.py"),
    ),
    Mutant(
        "previous_secret_ignored",
        "only the first secret verifies (rotation broken: cookies signed with the previous secret are refused)",
        SERVICE + "signature.py",
        "for index in range(len(self._keys)):",
        "for index in range(1):",
        ("tests/fast/test_inprocess_vectors.py",),
    ),
    Mutant(
        "mongo_expires_off_by_one",
        "a connect-mongo document whose expires is exactly now is still found (connect-mongo wants expires > now)",
        SERVICE + "domain.py",
        "if stored.expires is not None and stored.expires <= now:",
        "if stored.expires is not None and stored.expires < now:",
        ("tests/unit/test_domain.py",),
    ),
    Mutant(
        "cookie_expires_off_by_one",
        "a session whose cookie.expires is exactly now (no TTL) is still active",
        SERVICE + "domain.py",
        "if expire_time is not None and expire_time <= now:",
        "if expire_time is not None and expire_time < now:",
        ("tests/unit/test_domain.py",),
    ),
    Mutant(
        "anonymous_authenticated",
        "an anonymous session (no Passport user) is answered authenticated",
        SERVICE + "servicer.py",
        "authenticated=outcome.user is not None,",
        "authenticated=reason is Reason.SESSION_ACTIVE,",
        ("tests/fast/test_inprocess_vectors.py", "tests/fast/test_inprocess_batches.py"),
    ),
    Mutant(
        "falsy_passport_user_logged_in",
        "a falsy passport.user (0, '', false) counts as a logged-in user, which Passport does not",
        SERVICE + "domain.py",
        "if not _js_truthy_user(su):",
        "if su is None:",
        ("tests/unit", "tests/fast/test_inprocess_vectors.py"),
    ),
    Mutant(
        "outage_as_missing",
        "a store that cannot answer a batch is taken as holding none of its sessions (MISSING, not UNAVAILABLE)",
        SERVICE + "validator.py",
        "            return await self._store.get_sessions(session_ids)\n"
        "        except StoreTimeoutError as exc:\n            raise self._timed_out(exc) from exc\n",
        "            return await self._store.get_sessions(session_ids)\n"
        "        except StoreTimeoutError as exc:\n            raise self._timed_out(exc) from exc\n"
        "        except Exception:\n            return [StoredSession(None)] * len(session_ids)\n",
        ("tests/fast/test_inprocess_servicer.py",),
    ),
    Mutant(
        "batch_user_records_misordered",
        "a batch's user records are matched to its sessions in reverse order",
        SERVICE + "validator.py",
        "for outcome, record in zip(pending, records, strict=True):",
        "for outcome, record in zip(pending, reversed(records), strict=True):",
        ("tests/fast/test_inprocess_batches.py",),
    ),
    Mutant(
        "mongo_documents_in_server_order",
        "the MongoDB store answers a batch in the order the server returned the documents",
        SERVICE + "stores/mongo.py",
        "return [found.get(sid, ABSENT) for sid in session_ids]",
        "return [*found.values(), *[ABSENT] * (len(session_ids) - len(found))]",
        ("tests/mongo/test_mongo_batches.py",),
    ),
    Mutant(
        "invalidation_ignored",
        "the session cache keeps an entry Redis reported changed",
        SERVICE + "stores/redis_tracking.py",
        "            self._entries.pop(key, None)\n            if key in self._fetching:",
        "            if key in self._fetching:",
        ("tests/integration/test_session_cache.py",),
    ),
    Mutant(
        "silent_invalidation_kept",
        "a silent invalidation connection (PING unanswered) does not stop the session cache",
        SERVICE + "stores/redis_tracking.py",
        "self._subscriber.abort(exc)  # silent",
        "pass  # silent",
        ("tests/faults/test_fault_silent_invalidation.py",),
    ),
    Mutant(
        "silence_caught_late",
        "the invalidation connection's PING waits 2 s, past the README's bound",
        SERVICE + "stores/redis_tracking.py",
        "self._timeout_s = max(timeout_s, 0.5)",
        "self._timeout_s = max(timeout_s, 2.0)",
        ("tests/faults/test_fault_silent_invalidation.py",),
    ),
)


def copy_tree(destination: Path) -> None:
    """Copy the working tree's files (tracked, and untracked but not ignored) to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    if destination.exists():
        shutil.rmtree(destination)
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted but not yet staged
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    # Tool binaries (FerretDB, ...) are shared, not rebuilt.
    (destination / ".tmp").mkdir(exist_ok=True)
    (destination / ".tmp" / "bin").symlink_to((ROOT / ".tmp" / "bin").resolve())


def pytest(tree: Path, tests: tuple[str, ...], log: Path) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree / "service" / "src"), str(tree / "clients" / "python" / "src")]),
    }
    # Derandomized (a kill must not depend on luck), and a failing example is not shrunk (nobody reads it).
    env["HYPOTHESIS_PROFILE"] = "mutants"
    env.pop("FUZZ_EXAMPLES_SCALE", None)
    with log.open("w") as out:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", *tests], cwd=tree, env=env, stdout=out, stderr=out, check=False
        ).returncode


def imports_the_copy(tree: Path) -> bool:
    env = {**os.environ, "PYTHONPATH": str(tree / "service" / "src")}
    found = subprocess.run(
        [sys.executable, "-c", "import sessionvalidator_service as s; print(s.__file__)"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(found).is_relative_to(tree)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", default=[], help="run only this mutant (repeatable)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".tmp" / "mutants")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        parser.error(f"unknown mutant among {args.only}; --list names them")
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name}: {mutant.what}\n    {mutant.path}\n    caught by {' '.join(mutant.tests)}")
        return 0

    started = time.monotonic()
    tree = args.workdir / "tree"
    logs = args.workdir / "logs"
    copy_tree(tree)
    logs.mkdir(parents=True, exist_ok=True)
    if not imports_the_copy(tree):
        print("mutants: the copy's service is not the one imported (PYTHONPATH)", file=sys.stderr)
        return 1
    paths = tuple(dict.fromkeys(test for mutant in chosen for test in mutant.tests))
    baseline_started = time.monotonic()
    if pytest(tree, paths, logs / "baseline.log") != 0:
        print(f"mutants: the tiers fail unmutated; see {logs / 'baseline.log'}", file=sys.stderr)
        return 1
    print(f"baseline: {len(paths)} paths pass unmutated ({time.monotonic() - baseline_started:.0f} s)", flush=True)

    problems: list[str] = []
    for mutant in chosen:
        target = tree / mutant.path
        original = target.read_text(encoding="utf-8")
        if original.count(mutant.old) != 1:
            problems.append(f"{mutant.name}: its text is found {original.count(mutant.old)} times in {mutant.path}")
            print(f"ERROR    {mutant.name}: the text to replace is not in {mutant.path} exactly once", flush=True)
            continue
        target.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
        mutant_started = time.monotonic()
        try:
            code = pytest(tree, mutant.tests, logs / f"{mutant.name}.log")
        finally:
            target.write_text(original, encoding="utf-8")
        took = time.monotonic() - mutant_started
        if code == 1:
            verdict = "killed"
        elif code == 0:
            verdict = "SURVIVED"
            problems.append(f"{mutant.name}: {mutant.what}; {' '.join(mutant.tests)} passed with it")
        else:
            verdict = "ERROR"
            problems.append(f"{mutant.name}: pytest ended with {code}; see {logs / mutant.name}.log")
        print(f"{verdict:8} {mutant.name} ({took:.0f} s): {' '.join(mutant.tests)}", flush=True)

    print(f"{len(chosen) - len(problems)}/{len(chosen)} mutants killed in {time.monotonic() - started:.0f} s")
    for problem in problems:
        print("  " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Test tiers, and shared fixtures: real redis-server and FerretDB processes and the real service.

Tiers (README, Development):

* fast: tests/unit and tests/fast, in-process, no redis-server (``make test-fast``);
* integration: tests/integration, tests/parity and the short fuzz runs in tests/fuzz, against real processes;
* abuse (tests/abuse), faults (tests/faults), topologies (tests/topologies), gateways (tests/gateways), timing
  (tests/timing) and rollout (tests/rollout): marked by directory and left out of a bare ``pytest``; each runs from
  its own make target, or when asked for by a path inside its directory or by ``-m <marker>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import hypothesis_profiles
from tests.support.processes import FerretDBServer, RedisServer

hypothesis_profiles.load()

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"

# Marker -> the directory whose tests carry it; these tiers run only when asked for.
TIERS = {
    "abuse": ROOT / "tests" / "abuse",
    "faults": ROOT / "tests" / "faults",
    "topologies": ROOT / "tests" / "topologies",
    "gateways": ROOT / "tests" / "gateways",
    "timing": ROOT / "tests" / "timing",
    "rollout": ROOT / "tests" / "rollout",
}


def load_vectors(name: str) -> dict[str, Any]:
    vectors: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return vectors


def _asked_for(config: pytest.Config, marker: str) -> bool:
    """Whether this run names the tier: ``-m`` selecting its marker, or a path argument inside its directory."""
    expression = str(config.getoption("markexpr") or "")
    if re.search(rf"(?<!not )\b{marker}\b", expression):
        return True
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return False
    directory = TIERS[marker]
    for argument in config.args:
        path = Path(config.invocation_params.dir, argument.split("::", 1)[0]).resolve()
        if path.is_relative_to(directory):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before -m filters on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each tier's tests by directory, and leave out the tiers this run did not ask for."""
    asked = {marker: _asked_for(config, marker) for marker in TIERS}
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        tier = next((marker for marker, directory in TIERS.items() if item.path.is_relative_to(directory)), None)
        if tier is not None:
            item.add_marker(tier)
        (kept if tier is None or asked[tier] else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (it may be stopped and restarted)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the tests that only read and write their own keys."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def ferretdb() -> Iterator[FerretDBServer]:
    """A MongoDB wire-protocol server (FerretDB) of this test's own (it may be stopped and restarted)."""
    server = FerretDBServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_ferretdb() -> Iterator[FerretDBServer]:
    """One FerretDB for the tests that only read and write their own documents."""
    server = FerretDBServer().start()
    try:
        yield server
    finally:
        server.close()

"""Shared fixtures: real redis-server and FerretDB processes and the real service."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.processes import FerretDBServer, RedisServer  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


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

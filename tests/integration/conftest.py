"""Integration fixtures: a seeded real service over a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.conftest import load_vectors
from tests.harness import seed
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

CORPUS = load_vectors("validate_session.json")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def corpus() -> dict[str, Any]:
    return CORPUS


@pytest.fixture(scope="session")
def seeded(shared_redis: RedisServer) -> Iterator[ValidatorProcess]:
    """The service configured and seeded as tests/vectors/validate_session.json says."""
    seed(shared_redis, CORPUS)
    with running_validator({**CORPUS["settings"], "SESSIONVALIDATOR_REDIS_URL": shared_redis.url}) as validator:
        yield validator


@pytest.fixture(scope="session")
def stub(seeded: ValidatorProcess) -> Iterator[pb_grpc.SessionValidatorStub]:
    with grpc.insecure_channel(seeded.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)

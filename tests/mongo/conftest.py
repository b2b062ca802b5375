"""Mongo fixtures: the shared vectors seeded as connect-mongo documents, and the real service over them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.support.mongo import CORPUS, mongo_env, seed_mongo
from tests.support.processes import FerretDBServer, ValidatorProcess, running_validator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/mongo" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mongo_seeded(shared_ferretdb: FerretDBServer) -> Iterator[ValidatorProcess]:
    """The service over FerretDB, seeded with the shared vectors."""
    seed_mongo(shared_ferretdb, CORPUS)
    with running_validator(mongo_env(shared_ferretdb)) as validator:
        yield validator


@pytest.fixture(scope="session")
def mongo_stub(mongo_seeded: ValidatorProcess) -> Iterator[pb_grpc.SessionValidatorStub]:
    with grpc.insecure_channel(mongo_seeded.address) as channel:
        yield pb_grpc.SessionValidatorStub(channel)

"""Fuzz fixtures: Hypothesis profiles and one real service for the RPC properties.

Profiles (pick one with ``HYPOTHESIS_PROFILE``):

* ``ci`` (the default, so ``make test`` is reproducible on every machine): derandomized, no example
  database, nothing written;
* ``dev``: random, failures remembered in tests/fuzz/.work/hypothesis/examples (git-ignored);
* ``long``: as ``dev``; combine with ``FUZZ_EXAMPLES_SCALE=N`` (N times more examples per test) for a long
  run, e.g. ``HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=100 .venv/bin/python -m pytest tests/fuzz``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from sessionvalidator_service.signature import Signer
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"

# Hypothesis caches (Unicode tables, constants) go to the git-ignored work
# directory, not to a .hypothesis/ in whatever directory pytest runs from.
set_hypothesis_home_dir(WORK / "hypothesis")

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", database=DirectoryBasedExampleDatabase(WORK / "hypothesis" / "examples"))
settings.register_profile(
    "long",
    database=DirectoryBasedExampleDatabase(WORK / "hypothesis" / "examples"),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

# Secrets as deployments hold them: long enough to pass the service's weak-secret check.
SERVICE_SECRETS = (
    "fuzz: the current signing secret, comfortably over 32 bytes",
    "fuzz: the previous signing secret, still accepted in rotation",
)
SERVICE_COOKIE = "connect.sid"
SESSION_PREFIX = "fuzz:sess:"
USER_KEY = "fuzz:user:{id}"


@dataclass(frozen=True)
class FuzzService:
    """A running service, a client of its Redis, and the signer its cookies need."""

    validator: ValidatorProcess
    redis: redis.Redis
    signer: Signer

    @property
    def address(self) -> str:
        return self.validator.address


@pytest.fixture(scope="session")
def fuzz_service(shared_redis: RedisServer) -> Iterator[FuzzService]:
    env = {
        "SESSIONVALIDATOR_SECRETS": json.dumps(list(SERVICE_SECRETS)),
        "SESSIONVALIDATOR_COOKIE_NAME": SERVICE_COOKIE,
        "SESSIONVALIDATOR_KEY_PREFIX": SESSION_PREFIX,
        "SESSIONVALIDATOR_USER_KEY": USER_KEY,
        "SESSIONVALIDATOR_REDIS_URL": shared_redis.url,
        # A loaded shared machine must not turn a slow Redis reply into UNAVAILABLE.
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "5000",
        # Every fuzz case comes from one peer and most are bad cookies: RESOURCE_EXHAUSTED
        # (documented, README "Rate limiting") would end the run, not test anything.
        "SESSIONVALIDATOR_RATE_LIMIT": "off",
    }
    with running_validator(env) as validator:
        client = shared_redis.client()
        try:
            yield FuzzService(validator, client, Signer(list(SERVICE_SECRETS)))
        finally:
            client.close()

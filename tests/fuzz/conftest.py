"""Fuzz fixtures: one real service for the RPC properties.

The Hypothesis profiles (``HYPOTHESIS_PROFILE``) live in tests/support/hypothesis_profiles.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from sessionvalidator_service.signature import Signer
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

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

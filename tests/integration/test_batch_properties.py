"""Batches through the real service over a real redis-server, with the session cache on (as by default).

Every item of a random batch (tests/support/batches.py: cache hits and
misses of many users, duplicates, destroyed, forged, never-stored and
malformed cookies) is answered for its own cookie, also while single calls
and rewrites of some of the sessions run beside it.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
import redis
from hypothesis import HealthCheck, given, settings

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.integration.test_session_cache import cache_lookups
from tests.support.batches import MIXED_HITS_AND_MISSES, MIXED_PLAN, SETTINGS, Account, Plan, Store, plans, run_plan
from tests.support.hypothesis_profiles import examples
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

PREFIX = "batches:sess:"
USER_KEY = "batches:user:{id}"


class RedisStore(Store):
    """Writes as connect-redis and the app's user records would."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._fence = Account("fence", "object")
        self._fences = itertools.count(1)

    def write(self, account: Account, generation: int) -> None:
        record = account.record(generation)
        if record is not None:  # the user first, then the session that names them
            self._client.set(USER_KEY.format(id=record[0]), json.dumps(record[1]))
        self._client.set(PREFIX + account.session_id, account.stored_json(generation), ex=3600)

    def destroy(self, account: Account) -> None:
        self._client.delete(PREFIX + account.session_id)

    def settle(self, stub: pb_grpc.SessionValidatorStub) -> None:
        """Rewrite a fence session and wait until the service answers its new user: Redis reports changes in
        order on one connection, so every change made before it has reached the cache too."""
        generation = next(self._fences)
        self.write(self._fence, generation)
        deadline = time.monotonic() + 2.0
        while stub.ValidateSession(self._fence.cookie, timeout=5).user.id != self._fence.user(generation)[0]:
            assert time.monotonic() < deadline, "a change was not seen within 2 s"
            time.sleep(0.002)


@dataclass
class Running:
    validator: ValidatorProcess
    stub: pb_grpc.SessionValidatorStub
    store: RedisStore


@pytest.fixture(scope="module")
def running(shared_redis: RedisServer) -> Iterator[Running]:
    env = {
        **SETTINGS,
        "SESSIONVALIDATOR_REDIS_URL": shared_redis.url,
        "SESSIONVALIDATOR_KEY_PREFIX": PREFIX,
        "SESSIONVALIDATOR_USER_KEY": USER_KEY,
        # Most items are bad cookies from one peer: the limit would refuse them (tests/fast covers that).
        "SESSIONVALIDATOR_RATE_LIMIT": "off",
        # A loaded shared machine must not turn a slow reply into UNAVAILABLE.
        "SESSIONVALIDATOR_STORE_TIMEOUT_MS": "5000",
        "SESSIONVALIDATOR_METRICS_LISTEN": "127.0.0.1:0",
    }
    client = shared_redis.client()
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        store = RedisStore(client)
        store.settle(stub)  # the first lookup opens the connections that turn the cache on
        assert validator.output is not None
        validator.output.wait_for(lambda line: '"event": "session_cache_on"' in line, timeout=5)
        yield Running(validator, stub, store)
    client.close()


_tags = itertools.count()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_every_batch_item_is_answered_for_its_own_cookie(running: Running, plan: Plan) -> None:
    assert run_plan(running.stub, running.store, plan, f"redis{next(_tags)}") == []


def test_a_batch_mixes_cache_hits_and_misses_of_many_users(running: Running) -> None:
    """What the property is about happens: one batch both hits and misses the cache, for different users."""
    before: dict[str, float] = {}

    def counted(_batch: object) -> None:
        before.update({result: cache_lookups(running.validator, result) for result in ("hit", "miss")})

    assert run_plan(running.stub, running.store, MIXED_PLAN, "redis-mixed", rounds=0, on_batch=counted) == []
    after = {result: cache_lookups(running.validator, result) for result in ("hit", "miss")}
    assert (after["hit"] - before["hit"], after["miss"] - before["miss"]) == MIXED_HITS_AND_MISSES

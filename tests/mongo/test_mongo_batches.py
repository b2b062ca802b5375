"""Batches through the real service over MongoDB (FerretDB), as connect-mongo writes the sessions.

The batch property of tests/support/batches.py: every item of a random batch
(many users' sessions, duplicates, destroyed, forged, never-stored and
malformed cookies) is answered for its own cookie, also while single calls and
rewrites of some of the sessions run beside it. The MongoDB store keeps no
session cache: every batch is one ``$in`` query whose documents come back in
the server's order, not the batch's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from tests.support.batches import Account, Plan, Store, plans, run_plan
from tests.support.hypothesis_profiles import examples
from tests.support.mongo import mongo_env
from tests.support.processes import FerretDBServer, running_validator

SESSIONS = "batch_sessions"
USERS = "batch_users"


class MongoStore(Store):
    """Writes as connect-mongo (``stringify: true``, ``expires`` from the cookie) and the app's users collection."""

    def __init__(self, client: MongoClient, database: str) -> None:  # type: ignore[type-arg]
        self._db = client[database]

    def write(self, account: Account, generation: int) -> None:
        record = account.record(generation)
        if record is not None:  # the user first, then the session that names them
            user_id, fields = record
            self._db[USERS].replace_one({"_id": user_id}, {"_id": user_id, **fields}, upsert=True)
        document = {
            "_id": account.session_id,
            "session": account.stored_json(generation),
            "expires": datetime.now(UTC) + timedelta(hours=1),
        }
        self._db[SESSIONS].replace_one({"_id": account.session_id}, document, upsert=True)

    def destroy(self, account: Account) -> None:
        self._db[SESSIONS].delete_one({"_id": account.session_id})


@pytest.fixture(scope="module")
def running(shared_ferretdb: FerretDBServer) -> Iterator[tuple[pb_grpc.SessionValidatorStub, MongoStore]]:
    env = mongo_env(
        shared_ferretdb,
        SESSIONVALIDATOR_MONGO_COLLECTION=SESSIONS,
        SESSIONVALIDATOR_MONGO_USERS_COLLECTION=USERS,
        # Most items are bad cookies from one peer: the limit would refuse them (tests/fast covers that).
        SESSIONVALIDATOR_RATE_LIMIT="off",
        # A loaded shared machine must not turn a slow reply into UNAVAILABLE.
        SESSIONVALIDATOR_STORE_TIMEOUT_MS="5000",
    )
    with (
        shared_ferretdb.client() as client,
        running_validator(env) as validator,
        grpc.insecure_channel(validator.address) as channel,
    ):
        yield pb_grpc.SessionValidatorStub(channel), MongoStore(client, shared_ferretdb.database)


_tags = itertools.count()


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_every_batch_item_is_answered_for_its_own_cookie(
    running: tuple[pb_grpc.SessionValidatorStub, MongoStore], plan: Plan
) -> None:
    stub, store = running
    assert run_plan(stub, store, plan, f"mongo{next(_tags)}") == []

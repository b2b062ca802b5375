"""Batches in-process: every item is answered for its own cookie, and at its own index.

The batch property (tests/support/batches.py) runs here over an in-memory
store with a session cache (``caches``/``peek``, the interface the Redis
store's cache answers through): hits and misses of many users in one batch,
beside concurrent single calls and rewrites. The refused-item tests put
items refused by the bad-attempt limit before, between and after judged
ones, and check every index.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.stores import StoredSession
from sessionvalidator_service.stores.memory import MemoryStore
from tests.fast.conftest import CORPUS, InProcess, LoopThread, start
from tests.support.batches import (
    FORGER,
    MIXED_HITS_AND_MISSES,
    MIXED_PLAN,
    SIGNER,
    Account,
    Plan,
    Store,
    header,
    plans,
    run_plan,
)
from tests.support.hypothesis_profiles import examples
from tests.support.vectors import seed_memory


class CachingStore(MemoryStore):
    """An in-memory store with a session cache that every change evicts at once (as tracking keeps Redis's)."""

    def __init__(self) -> None:
        super().__init__(user_records=True)
        self._cached: dict[str, StoredSession] = {}
        self.hits = 0
        self.misses = 0

    @property
    def caches(self) -> bool:
        return True

    def peek(self, session_id: str) -> StoredSession | None:
        found = self._cached.get(session_id)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        found = await super().get_sessions(session_ids)
        self._cached.update(zip(session_ids, found, strict=True))
        return found

    def put(self, session_id: str, stored: StoredSession, *, ttl_ms: int | None = None) -> None:
        self._cached.pop(session_id, None)
        super().put(session_id, stored, ttl_ms=ttl_ms)

    def delete(self, session_id: str) -> None:
        self._cached.pop(session_id, None)
        super().delete(session_id)


class InProcessStore(Store):
    """Writes as the app would, on the service's own loop (the store is not thread-safe)."""

    def __init__(self, running: InProcess) -> None:
        self._running = running

    def write(self, account: Account, generation: int) -> None:
        store = self._running.store
        record = account.record(generation)

        def write() -> None:
            if record is not None:  # the user first, then the session that names them
                store.put_user(*record)
            stored = StoredSession(account.stored_json(generation).encode("utf-8"))
            store.put(account.session_id, stored, ttl_ms=3_600_000)

        self._running.loop.call(write)

    def destroy(self, account: Account) -> None:
        self._running.loop.call(lambda: self._running.store.delete(account.session_id))


@pytest.fixture(scope="module")
def caching(loop_thread: LoopThread) -> Iterator[tuple[InProcess, pb_grpc.SessionValidatorStub]]:
    store = CachingStore()
    # Most items of these batches are bad cookies from one peer: the limit would refuse them (tested below).
    running = start(loop_thread, {**CORPUS["settings"], "SESSIONVALIDATOR_RATE_LIMIT": "off"}, store)
    with grpc.insecure_channel(running.address) as channel:
        yield running, pb_grpc.SessionValidatorStub(channel)
    loop_thread.run(running.service.stop())


_tags = itertools.count()


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_every_batch_item_is_answered_for_its_own_cookie(
    caching: tuple[InProcess, pb_grpc.SessionValidatorStub], plan: Plan
) -> None:
    running, stub = caching
    assert run_plan(stub, InProcessStore(running), plan, f"fast{next(_tags)}") == []


def test_a_batch_mixes_cache_hits_and_misses_of_many_users(
    caching: tuple[InProcess, pb_grpc.SessionValidatorStub],
) -> None:
    """The property above reaches what it is about: one batch, cached and uncached sessions of different users."""
    running, stub = caching
    store = running.store
    assert isinstance(store, CachingStore)
    before = store.hits, store.misses

    def counted(_batch: object) -> None:
        nonlocal before
        before = store.hits, store.misses

    assert run_plan(stub, InProcessStore(running), MIXED_PLAN, "mixed", rounds=0, on_batch=counted) == []
    hits, misses = store.hits - before[0], store.misses - before[1]
    assert (hits, misses) == MIXED_HITS_AND_MISSES


# ---------------------------------------------------------------- refused items keep their index


@pytest.fixture
def limited(loop_thread: LoopThread) -> Iterator[tuple[InProcess, pb_grpc.SessionValidatorStub]]:
    """A service whose peer may make two bad attempts, then one a minute."""
    store = MemoryStore(user_records=True)
    seed_memory(store, CORPUS)
    env = {**CORPUS["settings"], "SESSIONVALIDATOR_RATE_LIMIT": "1/m", "SESSIONVALIDATOR_RATE_LIMIT_BURST": "2"}
    running = start(loop_thread, env, store)
    with grpc.insecure_channel(running.address) as channel:
        yield running, pb_grpc.SessionValidatorStub(channel)
    loop_thread.run(running.service.stop())


def _accounts(running: InProcess, count: int) -> list[Account]:
    accounts = [Account(f"limited-{i}", "object") for i in range(count)]
    for account in accounts:
        InProcessStore(running).write(account, 0)
    return accounts


REFUSED = "refused"


def answers(responses: Sequence[pb.ValidateSessionResponse]) -> list[object]:
    """Each response as the test names it: REFUSED, or (verdict, user id)."""
    out: list[object] = []
    for response in responses:
        if response.HasField("error"):
            assert response.error.reason == pb.ERROR_REASON_RATE_LIMITED
            assert response.verdict == pb.VERDICT_UNSPECIFIED
            out.append(REFUSED)
        else:
            out.append((response.verdict, response.user.id))
    return out


def test_refused_items_keep_their_index_before_between_and_after_judged_ones(
    limited: tuple[InProcess, pb_grpc.SessionValidatorStub],
) -> None:
    running, stub = limited
    a, b, c = _accounts(running, 3)
    forged = header("s%3A" + FORGER.sign(a.session_id))
    not_signed = header("abc")
    valid = (pb.VERDICT_VALID,)
    bad = (pb.VERDICT_BAD_SIGNATURE, "")
    # The limit runs out inside the batch: two bad attempts are judged, the third is refused.
    first = stub.ValidateSessions(
        pb.ValidateSessionsRequest(requests=[a.cookie, forged, b.cookie, not_signed, forged, c.cookie, forged]),
        timeout=5,
    )
    assert answers(first.responses) == [
        (*valid, a.user(0)[0]),
        bad,
        (*valid, b.user(0)[0]),
        (pb.VERDICT_MALFORMED, ""),
        REFUSED,
        (*valid, c.user(0)[0]),
        REFUSED,
    ]
    # Out of attempts: refused items first, between and last, valid cookies still judged.
    second = stub.ValidateSessions(
        pb.ValidateSessionsRequest(
            requests=[forged, not_signed, c.cookie, forged, a.cookie, b.cookie, not_signed, forged, a.cookie, forged]
        ),
        timeout=5,
    )
    assert answers(second.responses) == [
        REFUSED,
        REFUSED,
        (*valid, c.user(0)[0]),
        REFUSED,
        (*valid, a.user(0)[0]),
        (*valid, b.user(0)[0]),
        REFUSED,
        REFUSED,
        (*valid, a.user(0)[0]),
        REFUSED,
    ]


def test_a_long_credential_refused_unread_keeps_its_index(
    limited: tuple[InProcess, pb_grpc.SessionValidatorStub],
) -> None:
    """Out of attempts, a credential longer than a browser's cookie is refused without being read: in its place."""
    running, stub = limited
    (a,) = _accounts(running, 1)
    forged = header("s%3A" + FORGER.sign(a.session_id))
    stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[forged] * 3), timeout=5)  # out of attempts
    long_valid = pb.ValidateSessionRequest(signed_value="s:" + SIGNER.sign(a.session_id + "x" * 5000))
    answer = stub.ValidateSessions(pb.ValidateSessionsRequest(requests=[a.cookie, long_valid, a.cookie]), timeout=5)
    assert answers(answer.responses) == [(pb.VERDICT_VALID, a.user(0)[0]), REFUSED, (pb.VERDICT_VALID, a.user(0)[0])]


def test_the_batch_model_has_distinct_users_per_session() -> None:
    """A guard on the model itself: two accounts never share a user, so a swapped answer cannot pass."""
    accounts = [Account(f"model-{i}", "object") for i in range(20)]
    users = {account.user(g) for account in accounts for g in (0, 1)}
    assert len(users) == 40
    assert len({json.loads(a.stored_json(0))["passport"]["user"]["id"] for a in accounts}) == 20

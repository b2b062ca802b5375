"""One contract every session store keeps, run against each: Redis over both client paths, MongoDB, and memory.

What the service needs from a store (stores/__init__.py): what is written as the Express app's store writes it is
read back, batches answer in order (duplicates and unknown ids included), an unknown id is ABSENT, an oversized
session is refused unread, user records are None where none are configured, and a store that cannot answer raises
a StoreError (UNAVAILABLE upstream) and never answers as if the session were gone. The per-store details (connect-
mongo's documents, Redis topologies, the pipelined connection) keep their own tests; this is what they share.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sessionvalidator_service.stores import (
    ABSENT,
    SessionStore,
    StoredSession,
    StoreError,
    StoreOptions,
    open_store,
)
from sessionvalidator_service.stores.memory import MemoryStore
from sessionvalidator_service.stores.redis_pipeline import pipeline_target
from tests.support.processes import FerretDBServer, RedisServer, RedisTls

T = TypeVar("T")
MAX_BYTES = 2048


@dataclass
class Kind:
    """How to open one kind of store, and how to take its server away and bring it back."""

    name: str
    open: Callable[[StoreOptions], SessionStore]
    stop: Callable[[SessionStore], object]
    start: Callable[[SessionStore], object]
    # The in-memory store takes no options (it is a test double): it cannot refuse an oversized session unread.
    bounds_size: bool = True


@pytest.fixture(scope="module", params=["memory", "redis", "redis-pooled", "rediss", "mongodb"])
def kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    name: str = request.param
    if name == "memory":

        def fail(store: SessionStore, failure: StoreError | None) -> None:
            assert isinstance(store, MemoryStore)
            store.failure = failure

        yield Kind(
            name,
            lambda _options: MemoryStore(),
            lambda store: fail(store, StoreError("stopped")),
            lambda store: fail(store, None),
            bounds_size=False,
        )
        return
    if name == "mongodb":
        ferretdb = FerretDBServer().start()
        try:
            yield Kind(
                name,
                lambda options: open_store(f"mongodb://127.0.0.1:{ferretdb.port}/contract", options),
                lambda _store: ferretdb.stop(),
                lambda _store: ferretdb.start(),
            )
        finally:
            ferretdb.close()
        return
    tls = RedisTls.made_in(Path(tmp_path_factory.mktemp("redis-tls"))) if name == "rediss" else None
    redis = RedisServer(tls=tls).start()
    # client_name is a URL setting only redis-py implements: the store then reads through redis-py's pool.
    url = redis.tls_url() if tls is not None else redis.url
    if name == "redis-pooled":
        url += "?client_name=contract"
    assert (pipeline_target(url) is None) == (name == "redis-pooled"), url

    try:
        yield Kind(
            name, lambda options: open_store(url, options), lambda _store: redis.stop(), lambda _store: redis.start()
        )
    finally:
        redis.close()


def session_json(sid: str, *, size: int = 0) -> str:
    """JSON.stringify(req.session) for a logged-in user, padded to about ``size`` bytes."""
    session: dict[str, object] = {"cookie": {"originalMaxAge": 60_000, "expires": None, "httpOnly": True, "path": "/"}}
    session["passport"] = {"user": sid}
    text = json.dumps(session, separators=(",", ":"))
    return text if len(text) >= size else text[:-1] + ',"pad":"' + "x" * (size - len(text)) + '"}'


def expiry(stored: StoredSession, now: datetime) -> datetime | None:
    """When the store says the session ends, however it says it (a Redis TTL, connect-mongo's ``expires``)."""
    if stored.ttl_ms is not None:
        return now + timedelta(milliseconds=stored.ttl_ms)
    return stored.expires


def with_store(kind: Kind, body: Callable[[SessionStore], Awaitable[T]], **options: Any) -> T:
    async def scenario() -> T:
        store = kind.open(StoreOptions(**{"timeout_s": 2.0, "max_session_bytes": MAX_BYTES, **options}))
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(scenario())


def test_what_is_written_is_read_back_in_order(kind: Kind, request: pytest.FixtureRequest) -> None:
    prefix = f"{kind.name}-{request.node.name[-8:]}-"
    a, b, gone = prefix + "a", prefix + "b", prefix + "never-written"

    async def body(store: SessionStore) -> list[StoredSession]:
        await store.write_session(a, session_json(a), ttl_s=60)
        await store.write_session(b, session_json(b), ttl_s=60)
        return await store.get_sessions([b, gone, a, b])

    now = datetime.now(UTC)
    got = with_store(kind, body)
    assert [None if s.data is None else json.loads(bytes(s.data)) for s in got] == [  # type: ignore[arg-type]
        json.loads(session_json(b)),
        None,
        json.loads(session_json(a)),
        json.loads(session_json(b)),
    ]
    assert got[1] == ABSENT
    for stored in (got[0], got[2]):
        assert stored.unusable is None
        ends = expiry(stored, now)
        assert ends is not None
        assert now + timedelta(seconds=50) < ends <= now + timedelta(seconds=61), (stored, now)


def test_an_unknown_id_is_absent_and_users_are_none_without_records(kind: Kind) -> None:
    async def body(store: SessionStore) -> tuple[list[StoredSession], list[Any], bool]:
        return (
            await store.get_sessions(["no-such-session"]),
            await store.get_users(["42", "43"]),
            store.has_user_records,
        )

    sessions, users, has_records = with_store(kind, body)
    assert sessions == [ABSENT]
    assert (users, has_records) == ([None, None], False)


def test_an_oversized_session_is_refused_unread(kind: Kind, request: pytest.FixtureRequest) -> None:
    if not kind.bounds_size:
        pytest.skip("the in-memory store is a test double without options")
    big, small = f"{kind.name}-{request.node.name[-6:]}-big", f"{kind.name}-{request.node.name[-6:]}-small"

    async def body(store: SessionStore) -> list[StoredSession]:
        await store.write_session(big, session_json(big, size=MAX_BYTES * 2), ttl_s=60)
        await store.write_session(small, session_json(small, size=MAX_BYTES // 2), ttl_s=60)
        return await store.get_sessions([big, small])

    too_large, fine = with_store(kind, body)
    assert (too_large.data, too_large.unusable) == (None, "too_large")
    assert fine.unusable is None
    assert fine.data is not None


def test_a_store_that_cannot_answer_raises_and_never_answers_absent(kind: Kind) -> None:
    async def body(store: SessionStore) -> list[str]:
        seen = []
        await store.ping()
        kind.stop(store)
        try:
            for attempt in (lambda: store.get_sessions(["x"]), lambda: store.ping(timeout_s=0.5)):
                try:
                    answer = await attempt()
                except StoreError:
                    seen.append("error")
                else:
                    seen.append(f"answered {answer!r}")
        finally:
            kind.start(store)
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            try:
                await store.ping()
            except StoreError:
                await asyncio.sleep(0.05)
            else:
                return [*seen, "back"]
        return [*seen, "never back"]

    assert with_store(kind, body, timeout_s=0.5) == ["error", "error", "back"]

"""The session cache against a real redis-server: kept while Redis reports changes, dropped the moment it cannot.

Every change another client makes (a write, a touch, a delete, an expiry, a
flush) reaches the cache over Redis's tracking invalidations; losing either
connection stops the cache until tracking is back; a user who may not track
gets no cache and correct answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import pytest
import redis
import uvloop

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.stores import StoredSession, StoreOptions
from sessionvalidator_service.stores.redis import RedisSessionStore
from tests.faults.support import SETTINGS, mint_cookies
from tests.integration.test_metrics import metrics_port, scrape
from tests.support.processes import RedisServer, ValidatorProcess, running_validator

T = TypeVar("T")
SESSION = b'{"cookie":{"originalMaxAge":null},"passport":{"user":"7"}}'
CHANGED = b'{"cookie":{"originalMaxAge":null},"passport":{"user":"8"}}'


def run(factory: Callable[[RedisSessionStore], Awaitable[T]], url: str) -> T:
    async def main() -> T:
        store = RedisSessionStore.from_url(url, StoreOptions(timeout_s=1, session_cache=100))
        try:
            return await factory(store)
        finally:
            await store.aclose()

    return uvloop.run(main())


def cache_lookups(validator: ValidatorProcess, result: str) -> float:
    samples = scrape(metrics_port(validator))
    return samples.get(f'sessionvalidator_session_cache_lookups_total{{result="{result}"}}', 0.0)


def reads(client: redis.Redis) -> int:
    """Session reads Redis has served (the batch script's calls)."""
    stats = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def until(predicate: Callable[[], bool], within_s: float) -> float:
    """Wait for ``predicate``; return how long it took (fails the test after ``within_s``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within_s:
            pytest.fail(f"not within {within_s} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def warm(store: RedisSessionStore, session_id: str = "a") -> StoredSession:
    """Read until the cache is live and holds ``session_id``."""
    for _ in range(200):
        (found,) = await store.get_sessions([session_id])
        if store.peek(session_id) is not None:
            return found
        await asyncio.sleep(0.01)
    pytest.fail("the cache never became live")


def expire_now(client: redis.Redis) -> None:
    """Have Redis expire the session. PEXPIRE itself is reported at once, and a read within its millisecond could
    still find the key (PTTL 0), so the change ends when that millisecond has passed."""
    client.pexpire("sess:a", 1)
    time.sleep(0.005)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda c: c.set("sess:a", CHANGED, keepttl=True), CHANGED),
        (lambda c: c.delete("sess:a"), None),
        (lambda c: c.expire("sess:a", 100), SESSION),  # a rolling session's touch
        (expire_now, None),
        (lambda c: c.flushall(), None),
    ],
    ids=["rewritten", "destroyed", "touched", "expired", "flushed"],
)
def test_every_change_reaches_the_cache_at_once(
    redis_server: RedisServer, change: Callable[[redis.Redis], Any], expect: bytes | None
) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION, ex=3600)

    async def scenario(store: RedisSessionStore) -> tuple[float, StoredSession]:
        await warm(store)
        change(client)
        took = await until(lambda: store.peek("a") is None, within_s=0.5)
        (after,) = await store.get_sessions(["a"])
        return took, after

    took, after = run(scenario, redis_server.url)
    print(f"invalidated {took * 1000:.1f} ms after the change")
    assert after.data == expect


def test_keys_outside_the_prefix_do_not_evict(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> bool:
        await warm(store)
        client.set("other:a", "x")
        client.set("user:7", "{}")
        await asyncio.sleep(0.1)
        return store.peek("a") is not None

    assert run(scenario, redis_server.url)


def test_losing_the_invalidation_connection_stops_the_cache_until_tracking_is_back(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> tuple[float, bytes | None]:
        await warm(store)
        (subscriber,) = [c for c in client.client_list() if "P" in c["flags"]]  # pub/sub
        client.client_kill_filter(_id=subscriber["id"])
        await until(lambda: store.peek("a") is None, within_s=0.5)
        client.set("sess:a", CHANGED)  # a change nobody reported: must not be hidden by an old entry
        (found,) = await store.get_sessions(["a"])
        started = time.monotonic()
        await warm(store)  # live again (the keeper retries every second)
        back = time.monotonic() - started
        client.set("sess:a", SESSION)
        await until(lambda: store.peek("a") is None, within_s=0.5)
        return back, found.data if isinstance(found.data, bytes) else None

    back, found = run(scenario, redis_server.url)
    assert found == CHANGED
    assert back < 3.0


def test_losing_the_data_connection_stops_the_cache(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> bytes | None:
        await warm(store)
        (data,) = [c for c in client.client_list() if "t" in c["flags"]]  # tracking on
        client.client_kill_filter(_id=data["id"])
        await until(lambda: store.peek("a") is None, within_s=0.5)
        client.set("sess:a", CHANGED)
        (found,) = await store.get_sessions(["a"])
        return found.data if isinstance(found.data, bytes) else None

    with caplog.at_level(logging.INFO, logger="sessionvalidator.store"):
        assert run(scenario, redis_server.url) == CHANGED
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.index("session_cache_on") < events.index("session_cache_off")


def test_a_restarted_redis_clears_the_cache(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario(store: RedisSessionStore) -> StoredSession:
        await warm(store)
        redis_server.stop()
        await until(lambda: store.peek("a") is None, within_s=0.5)
        redis_server.start()  # empty: the session is gone
        (found,) = await store.get_sessions(["a"])
        return found

    assert run(scenario, redis_server.url).data is None


def test_a_user_who_may_not_track_gets_correct_answers_and_no_cache(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)
    client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "plain", "on", ">pw-1234", "~*", "&*", "+@all", "-client"
    )
    url = f"redis://plain:pw-1234@127.0.0.1:{redis_server.port}/0"

    async def scenario(store: RedisSessionStore) -> tuple[list[Any], bool]:
        found = [await store.get_sessions(["a"]) for _ in range(3)]
        await asyncio.sleep(1.2)
        found.append(await store.get_sessions(["a"]))
        return found, store.peek("a") is not None

    with caplog.at_level(logging.WARNING, logger="sessionvalidator.store"):
        found, cached = run(scenario, url)
    assert [f[0].data for f in found] == [SESSION] * 4
    assert not cached
    assert [r.message for r in caplog.records if getattr(r, "event", "") == "store_no_tracking"] != []


def test_session_cache_zero_is_off(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario() -> tuple[bool, int]:
        store = RedisSessionStore.from_url(redis_server.url, StoreOptions(timeout_s=1, session_cache=0))
        try:
            for _ in range(3):
                await store.get_sessions(["a"])
                await asyncio.sleep(0.05)
            tracking = [c for c in client.client_list() if "P" in c["flags"] or "t" in c["flags"]]
            return store.peek("a") is not None, len(tracking)
        finally:
            await store.aclose()

    assert uvloop.run(scenario()) == (False, 0)


def test_the_service_answers_repeat_lookups_from_the_cache_and_sees_a_logout_at_once(redis_server: RedisServer) -> None:
    (cookie,) = mint_cookies(redis_server, 1)
    client = redis_server.client()
    env = {**SETTINGS, "SESSIONVALIDATOR_REDIS_URL": redis_server.url, "SESSIONVALIDATOR_METRICS_LISTEN": "127.0.0.1:0"}
    with running_validator(env) as validator, grpc.insecure_channel(validator.address) as channel:
        stub = pb_grpc.SessionValidatorStub(channel)
        assert stub.ValidateSession(cookie.request).verdict == pb.VERDICT_VALID
        assert validator.output is not None
        validator.output.wait_for(lambda line: '"event": "session_cache_on"' in line, timeout=3)
        stub.ValidateSession(cookie.request)
        before, hits_before = reads(client), cache_lookups(validator, "hit")
        answers = [stub.ValidateSession(cookie.request) for _ in range(50)]
        served_by_redis = reads(client) - before
        assert {a.verdict for a in answers} == {pb.VERDICT_VALID}
        assert {a.user.id for a in answers} == {cookie.user_id}
        assert served_by_redis == 0
        assert cache_lookups(validator, "hit") - hits_before == 50
        client.delete("sess:" + cookie.session_id)  # req.session.destroy(), by the app
        started = time.monotonic()
        while (verdict := stub.ValidateSession(cookie.request).verdict) == pb.VERDICT_VALID:
            assert time.monotonic() - started < 1.0, "a destroyed session was still valid a second later"
        assert verdict == pb.VERDICT_MISSING

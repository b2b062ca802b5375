"""SessionCache (stores/redis_tracking.py) on its own: what it keeps, for how long, and what it refuses to keep."""

from __future__ import annotations

from sessionvalidator_service.stores import ABSENT, StoredSession
from sessionvalidator_service.stores.redis_tracking import CACHED_SESSION_BYTES, SessionCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


SESSION = StoredSession(b'{"cookie":{}}', ttl_ms=5000)


def live_cache(max_entries: int = 10) -> tuple[SessionCache, Clock]:
    clock = Clock()
    cache = SessionCache(max_entries, clock=clock)
    cache.start(cache.epoch)
    assert cache.live
    return cache, clock


def read(cache: SessionCache, key: str, stored: StoredSession) -> None:
    token = cache.begin([key])
    cache.end([key], token, [stored])


def test_keeps_what_a_read_found_and_counts_the_ttl_down_from_when_it_was_sent() -> None:
    cache, clock = live_cache()
    token = cache.begin(["sess:a"])
    clock.now += 0.002  # the reply took 2 ms
    cache.end(["sess:a"], token, [SESSION])
    kept = cache.get("sess:a")
    assert kept is not None
    assert kept.data == SESSION.data
    assert kept.ttl_ms == 5000 - 2
    clock.now += 4.0
    kept = cache.get("sess:a")
    assert kept is not None
    assert kept.ttl_ms == 5000 - 4002
    clock.now += 0.998
    assert cache.get("sess:a") is None  # Redis has expired it by now
    assert len(cache) == 0


def test_keeps_absence_and_sessions_without_ttl() -> None:
    cache, _ = live_cache()
    read(cache, "sess:gone", ABSENT)
    read(cache, "sess:forever", StoredSession(b"{}"))
    assert cache.get("sess:gone") is ABSENT
    forever = cache.get("sess:forever")
    assert forever is not None
    assert forever.ttl_ms is None


def test_a_change_during_the_read_is_not_kept() -> None:
    cache, _ = live_cache()
    token = cache.begin(["sess:a", "sess:b"])
    cache.invalidate([b"sess:a"])
    cache.end(["sess:a", "sess:b"], token, [SESSION, SESSION])
    assert cache.get("sess:a") is None
    assert cache.get("sess:b") is not None
    read(cache, "sess:a", SESSION)  # the next read is kept again
    assert cache.get("sess:a") is not None


def test_overlapping_reads_of_one_key_keep_the_mark_until_both_end() -> None:
    cache, _ = live_cache()
    first = cache.begin(["sess:a"])
    second = cache.begin(["sess:a"])
    cache.invalidate([b"sess:a"])
    cache.end(["sess:a"], first, [SESSION])
    cache.end(["sess:a"], second, [SESSION])
    assert cache.get("sess:a") is None


def test_a_flush_during_a_read_is_a_change_of_every_key_being_read() -> None:
    cache, _ = live_cache()
    read(cache, "sess:kept", SESSION)
    token = cache.begin(["sess:a"])
    cache.invalidate(None)
    cache.end(["sess:a"], token, [SESSION])
    assert cache.get("sess:a") is None
    assert cache.get("sess:kept") is None


def test_an_invalidation_forgets_the_key() -> None:
    cache, _ = live_cache()
    read(cache, "sess:a", SESSION)
    read(cache, "sess:b", SESSION)
    cache.invalidate([b"sess:a", b"sess:unknown"])
    assert cache.get("sess:a") is None
    assert cache.get("sess:b") is not None


def test_nothing_is_kept_unless_live_nor_across_a_loss_of_tracking() -> None:
    cache = SessionCache(10)
    read(cache, "sess:a", SESSION)
    assert cache.get("sess:a") is None  # not live yet
    epoch = cache.epoch
    token = cache.begin(["sess:a"])
    cache.start(epoch)
    cache.end(["sess:a"], token, [SESSION])
    assert cache.get("sess:a") is None  # sent before tracking was on
    read(cache, "sess:a", SESSION)
    assert cache.get("sess:a") is not None
    token = cache.begin(["sess:b"])
    cache.stop()
    assert cache.get("sess:a") is None
    cache.start(cache.epoch)
    cache.end(["sess:b"], token, [SESSION])
    assert cache.get("sess:b") is None  # sent before the loss


def test_start_is_refused_when_tracking_was_lost_since_the_epoch_was_read() -> None:
    cache = SessionCache(10)
    epoch = cache.epoch
    cache.stop()
    cache.start(epoch)
    assert not cache.live


def test_a_failed_read_keeps_nothing_and_leaves_no_marks() -> None:
    cache, _ = live_cache()
    token = cache.begin(["sess:a"])
    cache.end(["sess:a"], token, None)
    assert cache.get("sess:a") is None
    read(cache, "sess:a", SESSION)
    assert cache.get("sess:a") is not None


def test_bounded_in_entries_oldest_first_and_in_size() -> None:
    cache, _ = live_cache(max_entries=3)
    for name in "abcd":
        read(cache, f"sess:{name}", SESSION)
    assert cache.get("sess:a") is None
    assert [cache.get(f"sess:{n}") is not None for n in "bcd"] == [True, True, True]
    assert len(cache) == 3
    read(cache, "sess:big", StoredSession(b"x" * (CACHED_SESSION_BYTES + 1)))
    assert cache.get("sess:big") is None
    read(cache, "sess:edge", StoredSession(b"x" * CACHED_SESSION_BYTES))
    assert cache.get("sess:edge") is not None

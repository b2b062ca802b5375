"""Sessions kept in process memory until Redis says they changed (client-side caching).

Between two requests of one user their session is read again and again, and
it has not changed: most lookups can be answered from memory, with no round
trip at all, *provided* the process learns at once of every change. Redis
tells it: ``CLIENT TRACKING on REDIRECT <id> BCAST PREFIX <prefix>`` on the
data connection makes Redis push the name of every key under the session
prefix that is written, touched (``EXPIRE``), deleted, expired or evicted, and
``None`` for ``FLUSHALL``/``FLUSHDB``, to a second connection subscribed to
``__redis__:invalidate`` (RESP2; Redis 6 or later). A logout, a
``req.session.destroy()``, a rolling-session touch or an expiry evicts the
entry the moment the message arrives, the same moment a lookup sent then
would have seen it.

The cache is only *live* while both connections are up and tracking is on;
losing either clears it, and it fills again once tracking is re-established
(:class:`Tracking` retries every second). A read that races with a change (the
invalidation arrives before or while its reply is being handled) is answered
but not kept. Entries respect the key's TTL on their own (counted from when
the read was sent), are bounded in number and in size, and the oldest goes
first. Silence on the invalidation connection is caught by a PING every
second. Redis servers or users that refuse tracking (ACLs without ``CLIENT``
or the channel, Redis before 6) leave the cache off, with one warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from sessionvalidator_service.stores import StoredSession, StoreError, StoreUnavailableError
from sessionvalidator_service.stores.redis_errors import ErrorReply, describe
from sessionvalidator_service.stores.redis_pipeline import PipelinedConnection, PipelineTarget, Send

__all__ = ["CACHED_SESSION_BYTES", "SessionCache", "Tracking"]

log = logging.getLogger("sessionvalidator.store")

# Stored sessions larger than this are read every time, never kept.
CACHED_SESSION_BYTES = 8192
_CHANNEL = b"__redis__:invalidate"
_KEEP_INTERVAL_S = 1.0

# (the cache's epoch when the read was sent, the clock then)
Token = tuple[int, float]


class SessionCache:
    """What Redis held under each recently read session key, while tracking keeps it true."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[StoredSession, float]] = {}
        self._fetching: dict[str, int] = {}  # keys being read now, and by how many reads
        self._dirty: set[str] = set()  # keys being read now that changed meanwhile
        self._epoch = 0
        self.live = False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> StoredSession | None:
        """Return what Redis holds under ``key`` now, or ``None`` when it must be read."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, read_at = entry
        if stored.ttl_ms is None:
            return stored
        left = stored.ttl_ms - math.ceil((self._clock() - read_at) * 1000)
        if left <= 0:  # Redis has expired it, or is about to
            del self._entries[key]
            return None
        return StoredSession(stored.data, ttl_ms=left, expires=stored.expires, unusable=stored.unusable)

    def begin(self, keys: Sequence[str]) -> Token:
        """Note that ``keys`` are being read; pass the token to :meth:`end`."""
        fetching = self._fetching
        for key in keys:
            fetching[key] = fetching.get(key, 0) + 1
        return self._epoch, self._clock()

    def end(self, keys: Sequence[str], token: Token, results: Sequence[StoredSession] | None) -> None:
        """Keep what a read found (``None``: it failed), unless something changed while it ran."""
        epoch, sent_at = token
        keep = results is not None and self.live and epoch == self._epoch
        fetching, dirty = self._fetching, self._dirty
        for index, key in enumerate(keys):
            count = fetching.pop(key) - 1
            changed = key in dirty
            if count:
                fetching[key] = count
            else:
                dirty.discard(key)
            if keep and not changed:
                assert results is not None  # noqa: S101 - keep implies results
                self._put(key, results[index], sent_at)

    def _put(self, key: str, stored: StoredSession, read_at: float) -> None:
        data = stored.data
        if data is not None and (not isinstance(data, bytes) or len(data) > CACHED_SESSION_BYTES):
            return
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self._max_entries:
            del entries[next(iter(entries))]  # the oldest
        entries[key] = (stored, read_at)

    def invalidate(self, keys: Sequence[bytes] | None) -> None:
        """Forget ``keys`` (``None``: everything), as Redis says they changed."""
        if keys is None:
            self._entries.clear()
            self._dirty.update(self._fetching)
            return
        for raw in keys:
            key = raw.decode("utf-8", "surrogateescape")
            self._entries.pop(key, None)
            if key in self._fetching:
                self._dirty.add(key)

    def stop(self) -> int:
        """Tracking is lost: forget everything and keep nothing until :meth:`start`. Returns the new epoch."""
        self.live = False
        self._epoch += 1
        self._entries.clear()
        return self._epoch

    @property
    def epoch(self) -> int:
        """Changes whenever tracking is lost or (re)started."""
        return self._epoch

    def start(self, epoch: int) -> None:
        """Tracking is on, if nothing was lost since ``epoch`` was read."""
        if epoch == self._epoch:
            self._epoch += 1
            self.live = True


class Tracking:
    """Keeps a :class:`SessionCache` true: tracking on the data connection, invalidations on a second one."""

    def __init__(self, target: PipelineTarget, key_prefix: str, cache: SessionCache, *, timeout_s: float) -> None:
        self._prefix = key_prefix
        self._cache = cache
        self._timeout_s = max(timeout_s, 0.5)  # set-up and health pings are not on any caller's clock
        self._subscriber_id: int | None = None
        self._subscriber = PipelinedConnection(
            target,
            connect_timeout_s=self._timeout_s,
            on_connect=self._subscribe,
            on_lost=self._subscriber_lost,
            on_push=self._message,
        )
        self._data: PipelinedConnection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._refused = False
        self._closing = False

    @property
    def cache(self) -> SessionCache:
        """The cache this keeps true."""
        return self._cache

    def attach(self, data: PipelinedConnection) -> None:
        """Keep the reads of ``data`` (a connection built with :meth:`data_connected` and :meth:`data_lost`)."""
        self._data = data

    # ---------------------------------------------------------------- hooks

    async def data_connected(self, send: Send) -> None:
        """Track a new data connection, before anything is read on it, when invalidations already flow.

        Tracking is only ever turned on here, on a fresh connection: turning
        it off and on again on a connection in use would open a moment in
        which changes go unreported.
        """
        if self._keeper is None and not self._refused:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())
        if self._subscriber_id is None or self._refused:
            return  # the keeper connects the subscriber, then retires this connection
        epoch = self._cache.epoch
        reply = await send("CLIENT", "TRACKING", "on", "REDIRECT", self._subscriber_id, "BCAST", "PREFIX", self._prefix)
        if isinstance(reply, ErrorReply):
            self._refuse(describe(reply))
            return
        self._cache.start(epoch)
        if self._cache.live:
            log.info(
                "session cache on: Redis reports every change to the sessions",
                extra={"event": "session_cache_on", "prefix_length": len(self._prefix)},
            )

    def data_lost(self) -> None:
        """Nothing reports changes any more: stop."""
        self._stop("the data connection was lost")

    def _subscriber_lost(self) -> None:
        self._subscriber_id = None
        self._stop("the invalidation connection was lost")

    def _stop(self, why: str) -> None:
        was_live = self._cache.live
        self._cache.stop()
        if was_live and not self._closing:
            log.warning(
                "session cache off until tracking is back: %s",
                why,
                extra={"event": "session_cache_off", "cause": why},
            )

    async def _subscribe(self, send: Send) -> None:
        client_id = await send("CLIENT", "ID")
        reply = await send("SUBSCRIBE", _CHANNEL)
        for answer in (client_id, reply):
            if isinstance(answer, ErrorReply):
                self._refuse(describe(answer))
                raise StoreUnavailableError("tracking refused")
        self._subscriber_id = int(client_id)

    def _message(self, reply: Any) -> bool:
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message" and reply[1] == _CHANNEL:  # noqa: PLR2004 - kind, channel, payload
            payload = reply[2]
            self._cache.invalidate(payload if isinstance(payload, list) else None)
            return True
        return False

    def _refuse(self, error: str) -> None:
        if not self._refused:
            self._refused = True
            log.warning(
                "the store refuses client-side tracking; every lookup goes to Redis (no session cache)",
                extra={"event": "store_no_tracking", "error": error[:200]},
            )

    # ---------------------------------------------------------------- upkeep

    async def _keep(self) -> None:
        """Once a second: check the invalidations still flow, or bring tracking back."""
        while not self._refused:
            with contextlib.suppress(StoreError):
                await self._keep_once()
            await asyncio.sleep(_KEEP_INTERVAL_S)

    async def _keep_once(self) -> None:
        if self._cache.live:
            try:
                await self._subscriber.execute("PING", timeout_s=self._timeout_s)
            except StoreError as exc:
                self._subscriber.abort(exc)  # silent: invalidations may be lost with it
            return
        await self._subscriber.execute("PING", timeout_s=self._timeout_s)  # connects and subscribes
        if self._subscriber_id is not None and not self._refused and self._data is not None:
            # The data connection is untracked (opened while invalidations did not flow): the next
            # lookup opens a fresh one, tracked as it opens.
            self._data.retire()

    async def aclose(self) -> None:
        """Stop re-establishing and close the invalidation connection."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._subscriber.aclose()
        self._cache.stop()

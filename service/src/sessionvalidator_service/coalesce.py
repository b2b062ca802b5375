"""Coalescing concurrent session lookups into one store round trip.

Under load many calls wait on Redis at once. Instead of one pipeline (GET +
PTTL) per call, :class:`CoalescingStore` collects the lookups that arrive
during one pass of the event loop and sends them as a single pipeline, then
hands each caller its own result. A failure of that round trip fails every
caller in it with the same StoreError (each call then ends UNAVAILABLE); a
caller that is cancelled (its deadline passed) simply stops waiting.
With one call in flight it costs one extra loop pass, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sessionvalidator_service.store import RedisSessionStore, StoredSession, StoreError

__all__ = ["CoalescingStore"]

# One pipeline of at most this many lookups; larger bursts are split.
_MAX_BATCH = 256


class CoalescingStore:
    """A :class:`RedisSessionStore` whose ``get_session`` calls share round trips."""

    def __init__(self, store: RedisSessionStore) -> None:
        self._store = store
        self._pending: list[tuple[str, asyncio.Future[StoredSession]]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""
        return self._store.has_user_records

    async def get_session(self, session_id: str) -> StoredSession:
        """Look ``session_id`` up together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredSession] = loop.create_future()
        self._pending.append((session_id, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), _MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._lookup(pending[start : start + _MAX_BATCH]))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _lookup(self, batch: list[tuple[str, asyncio.Future[StoredSession]]]) -> None:
        try:
            results = await self._store.get_sessions([session_id for session_id, _ in batch])
        except StoreError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException as exc:  # a bug or cancellation: never leave a caller hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreError(f"lookup failed: {exc.__class__.__name__}"))
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # the caller may have given up (deadline)
                future.set_result(result)

    async def get_sessions(self, session_ids: list[str]) -> list[StoredSession]:
        """Pass through: a batch is already one round trip."""
        return await self._store.get_sessions(session_ids)

    async def get_user(self, user_id: str) -> Mapping[str, Any] | None:
        """Pass through."""
        return await self._store.get_user(user_id)

    async def get_users(self, user_ids: list[str]) -> list[Mapping[str, Any] | None]:
        """Pass through."""
        return await self._store.get_users(user_ids)

"""Coalescing concurrent session lookups into one store round trip.

Under load many calls wait on the store at once. Instead of one round trip
per call, :class:`CoalescingStore` collects the lookups that arrive during one
pass of the event loop and sends them as a single ``get_sessions``, then
hands each caller its own result. A store failure of that round trip fails
every caller in it with the same StoreError (each call then ends
UNAVAILABLE); anything else raised is a bug and reaches every caller as it
is (INTERNAL). A caller that is cancelled (its deadline passed) simply stops
waiting. With one call in flight it costs one extra loop pass, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sessionvalidator_service.stores import (
    SessionStore,
    StoredSession,
    StoreUnavailableError,
    UserRecordData,
)

if TYPE_CHECKING:
    from sessionvalidator_service.tracing import Tracing

__all__ = ["CoalescingStore"]

# One round trip of at most this many lookups; larger bursts are split.
_MAX_BATCH = 256


class CoalescingStore(SessionStore):
    """A store whose ``get_session`` calls share round trips; everything else passes through."""

    def __init__(self, store: SessionStore, tracing: Tracing | None = None) -> None:
        self._store = store
        self._tracing = tracing
        self._pending: list[tuple[str, asyncio.Future[StoredSession]]] = []
        # While tracing: the span context of each pending call, in step with _pending.
        self._callers: list[Any] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""
        return self._store.has_user_records

    @property
    def coalescable(self) -> bool:
        """Already coalescing."""
        return False

    @property
    def caches(self) -> bool:
        """Pass through."""
        return self._store.caches

    def peek(self, session_id: str) -> StoredSession | None:
        """Pass through: a cached answer needs no round trip to share."""
        return self._store.peek(session_id)

    async def get_session(self, session_id: str) -> StoredSession:
        """Look ``session_id`` up together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredSession] = loop.create_future()
        self._pending.append((session_id, future))
        if self._tracing is not None:
            self._callers.append(self._tracing.caller())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        callers, self._callers = self._callers, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), _MAX_BATCH):
            task = loop.create_task(
                self._lookup(pending[start : start + _MAX_BATCH], callers[start : start + _MAX_BATCH])
            )
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _lookup(self, batch: list[tuple[str, asyncio.Future[StoredSession]]], callers: list[Any]) -> None:
        if self._tracing is not None:
            self._tracing.serving(callers)  # this task's store span links to every call it serves
        unique = list(dict.fromkeys(session_id for session_id, _ in batch))
        try:
            results = dict(zip(unique, await self._store.get_sessions(unique), strict=True))
        except asyncio.CancelledError:
            # Shutting down: nobody is left to answer; never leave a caller hanging.
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailableError("lookup cancelled"))
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller, who maps it (errors.py)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for session_id, future in batch:
            if not future.done():  # the caller may have given up (deadline)
                future.set_result(results[session_id])

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """Pass through: a batch is already one round trip."""
        return await self._store.get_sessions(session_ids)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """Pass through."""
        return await self._store.get_users(user_ids)

    async def ping(self, timeout_s: float | None = None) -> None:
        """Pass through."""
        await self._store.ping(timeout_s)

    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Pass through."""
        await self._store.write_session(session_id, session_json, ttl_s=ttl_s)

    async def aclose(self) -> None:
        """Stop pending lookups, then close the store."""
        for task in list(self._tasks):
            task.cancel()
        await self._store.aclose()

"""An in-memory session store for the fast, in-process test tier.

It holds what connect-redis would hold (JSON text, an optional lifetime) and
user records, and can be told to fail, so the servicer, health and the shared
vectors run without any server. It has no URL: it is never selectable in
production, only handed to ``Service.start(store=...)`` by tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sessionvalidator_service.stores import (
    ABSENT,
    SessionStore,
    StoredSession,
    StoreError,
    UserRecordData,
)

__all__ = ["MemoryStore"]


class MemoryStore(SessionStore):
    """Sessions and user records in dictionaries; ``failure`` makes every call raise it."""

    def __init__(self, *, user_records: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions: dict[str, tuple[StoredSession, float | None]] = {}
        self._users: dict[str, UserRecordData] = {}
        self._user_records = user_records
        self._clock = clock
        self.failure: StoreError | None = None
        self.lookups = 0  # round trips served, for tests of coalescing and batching

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""
        return self._user_records

    @property
    def coalescable(self) -> bool:
        """Lookups may be coalesced."""
        return True

    def put(self, session_id: str, stored: StoredSession, *, ttl_ms: int | None = None) -> None:
        """Hold ``stored`` under ``session_id``, gone after ``ttl_ms`` like a Redis key."""
        deadline = None if ttl_ms is None else self._clock() + ttl_ms / 1000
        self._sessions[session_id] = (stored, deadline)

    def put_user(self, user_id: str, record: Mapping[str, Any]) -> None:
        """Hold a user record."""
        self._users[user_id] = record

    def delete(self, session_id: str) -> None:
        """Forget a session (logout, destroy)."""
        self._sessions.pop(session_id, None)

    async def _round_trip(self) -> None:
        self.lookups += 1
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure

    def _get(self, session_id: str) -> StoredSession:
        held = self._sessions.get(session_id)
        if held is None:
            return ABSENT
        stored, deadline = held
        if deadline is None:
            return stored
        left = round((deadline - self._clock()) * 1000)
        if left <= 0:
            del self._sessions[session_id]
            return ABSENT
        return StoredSession(stored.data, ttl_ms=left, expires=stored.expires, unusable=stored.unusable)

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """Read sessions (one simulated round trip)."""
        await self._round_trip()
        return [self._get(session_id) for session_id in session_ids]

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """Read user records (one simulated round trip)."""
        if not self._user_records or not user_ids:
            return [None] * len(user_ids)
        await self._round_trip()
        return [self._users.get(user_id) for user_id in user_ids]

    async def ping(self, timeout_s: float | None = None) -> None:  # noqa: ARG002 - the interface's signature
        """Answer unless told to fail."""
        await self._round_trip()

    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Hold a session as connect-redis would write it."""
        await self._round_trip()
        self.put(
            session_id, StoredSession(session_json.encode("utf-8")), ttl_ms=None if ttl_s is None else ttl_s * 1000
        )

    async def aclose(self) -> None:
        """Nothing to close."""

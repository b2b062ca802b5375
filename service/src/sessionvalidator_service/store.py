"""The session store: connect-redis's key schema, read through redis-py.

Only this module knows how sessions are laid out in Redis:
``<prefix><sid>`` holds ``JSON.stringify(session)`` with a TTL (connect-redis
``set``), and user records, when configured, live under a key template such
as ``user:{id}`` as a JSON string or a hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from sessionvalidator_service.domain import parse_json

__all__ = [
    "RedisSessionStore",
    "StoreError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "StoredSession",
]


class StoreError(Exception):
    """The store could not answer; the caller must not turn this into a verdict."""

    reason = "STORE_UNAVAILABLE"


class StoreUnavailableError(StoreError):
    """The store refused or dropped the connection, or answered with an error."""


class StoreTimeoutError(StoreError):
    """The store did not answer within the configured timeout."""

    reason = "STORE_TIMEOUT"


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session key read in one round trip: its value and its PTTL."""

    raw: bytes | None
    pttl_ms: int
    wrong_type: bool = False


class RedisSessionStore:
    """Reads sessions and user records from Redis, with a hard timeout."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str,
        timeout_s: float,
        user_key_template: str | None = None,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._timeout = timeout_s
        self._user_key = user_key_template

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str,
        timeout_s: float,
        user_key_template: str | None = None,
        max_connections: int = 512,
    ) -> RedisSessionStore:
        """Build a store over a pooled client for ``redis://``, ``rediss://`` or ``unix://``."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            # Waiting for a free connection counts against the store timeout.
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=max(timeout_s, 1.0),
        )
        return cls(
            aioredis.Redis(connection_pool=pool),
            key_prefix=key_prefix,
            timeout_s=timeout_s,
            user_key_template=user_key_template,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    async def _run(self, *commands: tuple[str, ...], timeout_s: float | None = None) -> list[Any]:
        """Send ``commands`` in one pipeline (one round trip) within the timeout.

        Command errors come back in the list as exceptions; connection
        problems and timeouts raise :class:`StoreError`.
        """
        try:
            async with asyncio.timeout(self._timeout if timeout_s is None else timeout_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    return await pipe.execute(raise_on_error=False)
        except TimeoutError as exc:
            raise StoreTimeoutError(str(exc) or "store timeout") from exc
        except redis.exceptions.TimeoutError as exc:
            raise StoreTimeoutError(str(exc)) from exc
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""
        return self._user_key is not None

    @staticmethod
    def _session(value: Any, pttl: Any) -> StoredSession:
        if isinstance(pttl, Exception):
            raise StoreUnavailableError(str(pttl))
        if isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("WRONGTYPE"):
            # Something other than a session lives under the session key.
            return StoredSession(None, int(pttl), wrong_type=True)
        if isinstance(value, Exception):
            raise StoreUnavailableError(str(value))
        return StoredSession(value, int(pttl))

    async def get_session(self, session_id: str) -> StoredSession:
        """Return the stored session and its PTTL, read with GET and PTTL together."""
        key = self._prefix + session_id
        value, pttl = await self._run(("GET", key), ("PTTL", key))
        return self._session(value, pttl)

    async def get_sessions(self, session_ids: list[str]) -> list[StoredSession]:
        """Read many sessions (GET and PTTL each) in one round trip."""
        if not session_ids:
            return []
        commands: list[tuple[str, ...]] = []
        for session_id in session_ids:
            key = self._prefix + session_id
            commands += [("GET", key), ("PTTL", key)]
        replies = await self._run(*commands)
        return [self._session(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]

    async def get_user(self, user_id: str) -> Mapping[str, Any] | None:
        """Return the user record for ``user_id``, or ``None`` when unset or unknown.

        The record may be a JSON object stored as a string or a hash; both are
        read in the same round trip and whichever matches the key's type wins.
        """
        return (await self.get_users([user_id]))[0]

    async def get_users(self, user_ids: list[str]) -> list[Mapping[str, Any] | None]:
        """Read many user records in one round trip (see :meth:`get_user`)."""
        if self._user_key is None or not user_ids:
            return [None] * len(user_ids)
        commands: list[tuple[str, ...]] = []
        for user_id in user_ids:
            key = self._user_key.replace("{id}", user_id)
            commands += [("GET", key), ("HGETALL", key)]
        replies = await self._run(*commands)
        return [self._user(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]

    @staticmethod
    def _user(as_string: Any, as_hash: Any) -> Mapping[str, Any] | None:
        if isinstance(as_string, bytes):
            try:
                record = parse_json(as_string)
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
        if isinstance(as_hash, dict) and as_hash:
            return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in as_hash.items()}
        for result in (as_string, as_hash):
            if isinstance(result, Exception) and not str(result).startswith("WRONGTYPE"):
                raise StoreUnavailableError(str(result))
        return None

    async def ping(self, timeout_s: float | None = None) -> None:
        """Raise :class:`StoreError` unless the store answers PING in time."""
        (result,) = await self._run(("PING",), timeout_s=timeout_s)
        if isinstance(result, Exception):
            raise StoreUnavailableError(str(result))

    async def set_session(self, session_id: str, value: str, ttl_s: int | None) -> None:
        """Write a session as connect-redis 9 does: ``SET key value [EX ttl]``."""
        key = self._prefix + session_id
        command: tuple[str, ...] = ("SET", key, value)
        if ttl_s is not None:
            command = (*command, "EX", str(ttl_s))
        (result,) = await self._run(command)
        if isinstance(result, Exception):
            raise StoreUnavailableError(str(result))

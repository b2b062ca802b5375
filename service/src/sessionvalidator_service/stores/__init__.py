"""The session-store interface: what the service needs from any store.

No store client is imported here. A store answers, for verified session ids,
what it holds (:class:`StoredSession`), looks up user records, answers a
readiness ping and closes. It raises :class:`StoreUnavailableError` or
:class:`StoreTimeoutError` when it cannot answer, never a verdict.
:func:`open_store` maps a configured URL to an implementation:

| URL | implementation |
|---|---|
| ``redis://``, ``rediss://``, ``unix://``, ``redis[s]+sentinel://``, ``redis[s]+cluster://`` | :mod:`.redis` |
| ``mongodb://``, ``mongodb+srv://`` | :mod:`.mongo` (connect-mongo) |

The in-memory store (:mod:`.memory`) is for the fast test tier only and has
no URL.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "ABSENT",
    "MONGO_SCHEMES",
    "REDIS_SCHEMES",
    "SessionStore",
    "StoreError",
    "StoreOptions",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "StoredSession",
    "UserRecordData",
    "check_url",
    "open_store",
    "store_kind",
]

REDIS_SCHEMES: Final = frozenset(
    {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}
)
MONGO_SCHEMES: Final = frozenset({"mongodb", "mongodb+srv"})

UserRecordData = Mapping[str, Any]


class StoreError(Exception):
    """The store could not answer; the caller must not turn this into a verdict."""


class StoreUnavailableError(StoreError):
    """The store refused or dropped the connection, or answered with an error."""


class StoreTimeoutError(StoreError):
    """The store did not answer within the configured timeout."""


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What a store holds under one verified session id.

    ``data`` is the session as stored: JSON text (connect-redis, connect-mongo
    with ``stringify: true``), an already decoded object (connect-mongo with
    ``stringify: false``), or ``None`` when the store holds no session.

    Expiry comes in one of two forms. ``ttl_ms`` is a lifetime the store
    enforces itself (a Redis key's PTTL: the key is gone when it runs out);
    ``None`` means the key has none. ``expires`` is an expiry the store keeps
    beside the session but may not have enforced yet (connect-mongo's
    ``expires``, removed later by a TTL index or an interval).

    ``unusable`` is set when the store refused to read the record at all:
    ``"wrong_type"`` (something else lives under the key), ``"too_large"``
    (over the configured size), ``"encrypted"`` (connect-mongo ``crypto``).
    """

    data: bytes | Mapping[str, Any] | None
    ttl_ms: int | None = None
    expires: datetime | None = None
    unusable: Literal["wrong_type", "too_large", "encrypted"] | None = None


ABSENT: Final = StoredSession(None)


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What every store implementation is configured with."""

    timeout_s: float = 0.1
    # connect-redis `prefix`
    key_prefix: str = "sess:"
    # Redis: key template for user records (`user:{id}`); None: no user records.
    user_key: str | None = None
    # connect-mongo `collectionName`, and where Passport's scalar ids are looked up.
    mongo_collection: str = "sessions"
    mongo_users_collection: str | None = None
    # Stored sessions larger than this are not read (answered SESSION_TOO_LARGE).
    max_session_bytes: int = 1024 * 1024
    max_connections: int = 512
    # Sessions kept in memory while the store reports every change (Redis client-side tracking); 0: none.
    session_cache: int = 0


class SessionStore(abc.ABC):
    """A store that express-session's store for the same app writes to."""

    @property
    @abc.abstractmethod
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""

    @abc.abstractmethod
    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """Read every session in one round trip, in order; raise :class:`StoreError` if the store cannot."""

    @property
    def caches(self) -> bool:
        """Whether :meth:`peek` may answer (the store keeps a cache)."""
        return False

    def peek(self, session_id: str) -> StoredSession | None:  # noqa: ARG002 - stores without a cache ignore it
        """Return what the store holds under ``session_id`` when known without asking it, else ``None``.

        A store that caches answers here only while it is told of every
        change, so the answer is what a lookup would return now.
        """
        return None

    async def get_session(self, session_id: str) -> StoredSession:
        """Read one session."""
        return (await self.get_sessions([session_id]))[0]

    @abc.abstractmethod
    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """Read user records in one round trip (``None`` for each unknown id, or for all without user records)."""

    async def get_user(self, user_id: str) -> UserRecordData | None:
        """Read one user record."""
        return (await self.get_users([user_id]))[0]

    @abc.abstractmethod
    async def ping(self, timeout_s: float | None = None) -> None:
        """Return when the store answers in time; raise :class:`StoreError` otherwise."""

    @abc.abstractmethod
    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Write a session as the Express app's store would (``mint``).

        ``session_json`` is ``JSON.stringify(req.session)``; ``ttl_s`` the
        lifetime connect-redis would give the key (``None``: ``disableTTL``).
        A store that keeps an absolute expiry (connect-mongo) derives it as
        its Express counterpart does: ``cookie.expires``, else now + ``ttl_s``.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

    @property
    @abc.abstractmethod
    def coalescable(self) -> bool:
        """Whether concurrent single lookups may be merged into one ``get_sessions`` round trip."""


def store_kind(url: str) -> str:
    """``redis`` or ``mongodb`` for a store URL; raise :class:`ValueError` for anything else."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:  # such as an unbalanced [ in an IPv6 host
        raise ValueError(str(exc)) from None
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in MONGO_SCHEMES:
        return "mongodb"
    schemes = ", ".join(f"{s}://" for s in sorted(REDIS_SCHEMES | MONGO_SCHEMES))
    raise ValueError(f"scheme must be one of {schemes}, got {scheme or 'none'!r}")


def check_url(url: str) -> None:
    """Raise :class:`ValueError` naming what is wrong with a store URL (never echoing a password)."""
    if store_kind(url) == "mongodb":
        from sessionvalidator_service.stores.mongo import check_mongo_url

        check_mongo_url(url)
    else:
        from sessionvalidator_service.stores.redis import check_redis_url

        check_redis_url(url)


def open_store(url: str, options: StoreOptions) -> SessionStore:
    """Build the store that ``url`` names (nothing is connected until the first call)."""
    if store_kind(url) == "mongodb":
        from sessionvalidator_service.stores.mongo import MongoSessionStore

        return MongoSessionStore.from_url(url, options)
    from sessionvalidator_service.stores.redis import RedisSessionStore

    return RedisSessionStore.from_url(url, options)

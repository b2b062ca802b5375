"""What the Redis store makes of a key, for tests that judge stored sessions without a server."""

from __future__ import annotations

from sessionvalidator_service.stores import StoredSession
from sessionvalidator_service.stores.redis import session_from_replies


def redis_stored(raw: bytes | None, pttl_ms: int) -> StoredSession:
    """What the Redis store makes of a session key holding ``raw`` with PTTL ``pttl_ms`` (-2: no key, -1: no TTL)."""
    return session_from_replies(len(raw or b""), raw or b"", pttl_ms, 1 << 30)

"""The connect-redis store.

Only this module knows how connect-redis lays sessions out:
``<prefix><sid>`` holds ``JSON.stringify(session)`` with a TTL, and user
records, when configured, live under a key template such as ``user:{id}`` as
a JSON string or a hash. One ``redis://``, ``rediss://`` (TLS) or ``unix://``
server is read over one pipelined connection (:mod:`.redis_pipeline`), with
recently read sessions kept while Redis reports every change
(:mod:`.redis_tracking`); Sentinel (:mod:`.redis_topologies`) and Cluster go
through redis-py's pooled clients. URL parsing is in :mod:`.redis_url`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions

from sessionvalidator_service.jsemu import parse_json
from sessionvalidator_service.stores import (
    ABSENT,
    SessionStore,
    StoredSession,
    StoreOptions,
    StoreUnavailableError,
    UserRecordData,
)
from sessionvalidator_service.stores.redis_errors import (
    ErrorReply,
    WrongTypeError,
    describe,
    refuses_scripts,
    store_error,
    typed,
)
from sessionvalidator_service.stores.redis_pipeline import PipelinedConnection, pipeline_target
from sessionvalidator_service.stores.redis_topologies import cluster_client, lean_connections, sentinel_master
from sessionvalidator_service.stores.redis_tracking import SessionCache, Tracking
from sessionvalidator_service.stores.redis_url import check_redis_url, parse_topology_url

log = logging.getLogger("sessionvalidator.store")

__all__ = ["RedisSessionStore", "check_redis_url", "session_from_replies"]

_WRONG_TYPE = StoredSession(None, unusable="wrong_type")
_TOO_LARGE = StoredSession(None, unusable="too_large")
# One script reads a whole batch: per key its length, its value unless over the
# limit, and its PTTL, as one flat array. One command instead of three per key
# is far cheaper to pack and parse on both sides, and the script sees one
# consistent moment. A key of another type answers length -1.
_READ_SESSIONS = """
local out, max = {}, tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local ok, len = pcall(redis.call, 'STRLEN', key)
  if not ok then
    out[#out + 1] = -1
    out[#out + 1] = false
    out[#out + 1] = -2
  else
    out[#out + 1] = len
    if len > max then out[#out + 1] = false else out[#out + 1] = redis.call('GET', key) end
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
"""
_READ_SESSIONS_SHA = hashlib.sha1(_READ_SESSIONS.encode(), usedforsecurity=False).hexdigest()


def session_from_replies(length: Any, value: Any, pttl: Any, max_bytes: int) -> StoredSession:
    """Turn the STRLEN, GETRANGE and PTTL replies for one session key into what the store holds.

    A reply that is an error other than WRONGTYPE means the store failed.
    """
    if isinstance(pttl, Exception):
        raise store_error(pttl)
    for reply in (length, value):
        if isinstance(reply, WrongTypeError):
            return _WRONG_TYPE  # something other than a session lives under the key
        if isinstance(reply, Exception):
            raise store_error(reply)
    if length == -1:  # the script's mark for a key of another type
        return _WRONG_TYPE
    if pttl == -2 or (not value and length <= max_bytes):  # noqa: PLR2004 - Redis: no such key
        return ABSENT
    if length > max_bytes:
        return _TOO_LARGE
    return StoredSession(value, ttl_ms=pttl if pttl >= 0 else None)


class RedisSessionStore(SessionStore):
    """Reads sessions and user records from Redis, with a hard timeout."""

    def __init__(
        self,
        client: aioredis.Redis,
        options: StoreOptions,
        *,
        cluster: bool = False,
        pipeline: PipelinedConnection | None = None,
        tracking: Tracking | None = None,
    ) -> None:
        self._client = client
        # Every command goes over the pipelined connection when the URL allows
        # one (see redis_pipeline); Sentinel and Cluster over redis-py.
        self._pipeline = pipeline
        # Sessions kept while Redis reports every change to them (see redis_tracking).
        self._tracking = tracking
        self._cache = tracking.cache if tracking is not None else None
        self._prefix = options.key_prefix
        self._timeout = options.timeout_s
        self._user_key = options.user_key
        self._max_bytes = options.max_session_bytes
        self._cluster = cluster
        # Cluster keys live on several nodes: a script cannot read them together.
        self._scripted = not cluster

    @classmethod
    def from_url(cls, url: str, options: StoreOptions) -> RedisSessionStore:
        """Build a store over a pooled client for ``url``.

        ``redis://``, ``rediss://`` and ``unix://`` name one server;
        ``redis[s]+sentinel://`` a Sentinel-monitored master and
        ``redis[s]+cluster://`` a Redis Cluster (see :mod:`.redis_url`).
        """
        topology = parse_topology_url(url)
        timeout_s, max_connections = options.timeout_s, options.max_connections
        client: aioredis.Redis
        pipeline = None
        tracking = None
        if topology is None:
            target = pipeline_target(url)
            if target is not None and options.session_cache > 0:
                cache = SessionCache(options.session_cache)
                tracking = Tracking(target, options.key_prefix, cache, timeout_s=timeout_s)
                pipeline = PipelinedConnection(
                    target, connect_timeout_s=timeout_s, on_connect=tracking.data_connected, on_lost=tracking.data_lost
                )
                tracking.attach(pipeline)
            elif target is not None:
                pipeline = PipelinedConnection(target, connect_timeout_s=timeout_s)
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                **lean_connections(),
                max_connections=max_connections,
                # Waiting for a free connection counts against the store timeout.
                timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                socket_timeout=max(timeout_s, 1.0),
            )
            client = aioredis.Redis(connection_pool=pool)
        elif topology.kind == "sentinel":
            client = sentinel_master(topology, timeout_s=timeout_s, max_connections=max_connections)
        else:
            # The store only calls pipeline(transaction=False) and aclose() on
            # its client, which the cluster adapter provides over a RedisCluster.
            client = cast("aioredis.Redis", cluster_client(topology, timeout_s, max_connections))
        return cls(
            client,
            options,
            cluster=topology is not None and topology.kind == "cluster",
            pipeline=pipeline,
            tracking=tracking,
        )

    @property
    def coalescable(self) -> bool:
        """Not for Cluster: one unreachable primary would fail lookups coalesced with it for keys on healthy nodes."""
        return not self._cluster

    async def aclose(self) -> None:
        """Close every connection (a pool handed to a client is not closed by default)."""
        if self._tracking is not None:
            await self._tracking.aclose()
        if self._pipeline is not None:
            await self._pipeline.aclose()
        await self._client.aclose(close_connection_pool=True)

    async def _run(self, commands: Sequence[tuple[str, ...]], timeout_s: float | None = None) -> list[Any]:
        """Send ``commands`` in one pipeline (one round trip) within the timeout.

        Command errors come back in the list as exceptions; connection
        problems and timeouts raise a StoreError.
        """
        if self._pipeline is not None:
            return await self._pipeline.execute_many(
                list(commands), timeout_s=self._timeout if timeout_s is None else timeout_s
            )
        try:
            async with asyncio.timeout(self._timeout if timeout_s is None else timeout_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    return [typed(reply) for reply in await pipe.execute(raise_on_error=False)]
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise store_error(exc) from exc
        except Exception as exc:
            # redis-py failing in some other way while its connections die
            # (seen under load while Redis was killed) is the store failing,
            # not a bug of ours: UNAVAILABLE, never INTERNAL. Logged with its
            # traceback so a library bug stays visible.
            log.warning(
                "session store client failed unexpectedly",
                exc_info=True,
                extra={"event": "store_client_error", "error": exc.__class__.__name__},
            )
            raise StoreUnavailableError(exc.__class__.__name__) from exc

    @property
    def has_user_records(self) -> bool:
        """Whether scalar Passport ids are looked up as user records."""
        return self._user_key is not None

    async def get_sessions(self, session_ids: Sequence[str]) -> list[StoredSession]:
        """Read many sessions in one round trip.

        Each key costs its length, its value bounded by the size limit and its
        PTTL: a huge stored value is never transferred, let alone parsed. One
        script reads the whole batch where the server runs scripts; otherwise
        (Cluster, scripting refused) STRLEN, GETRANGE and PTTL per key.
        """
        if not session_ids:
            return []
        keys = [self._prefix + session_id for session_id in session_ids]
        cache = self._cache
        if cache is None:
            return await self._read(keys)
        token = cache.begin(keys)
        found = None
        try:
            found = await self._read(keys)
            return found
        finally:
            cache.end(keys, token, found)

    @property
    def caches(self) -> bool:
        """Whether sessions are cached (``SESSIONVALIDATOR_SESSION_CACHE``, one server, TLS or not)."""
        return self._cache is not None

    def peek(self, session_id: str) -> StoredSession | None:
        """Return the session from the cache, while tracking keeps it true."""
        cache = self._cache
        return cache.get(self._prefix + session_id) if cache is not None else None

    async def _read(self, keys: list[str]) -> list[StoredSession]:
        replies = await self._scripted_read(keys) if self._scripted else None
        if replies is None:
            last = str(self._max_bytes - 1)
            commands: list[tuple[str, ...]] = []
            for key in keys:
                commands += [("STRLEN", key), ("GETRANGE", key, "0", last), ("PTTL", key)]
            replies = await self._run(commands)
        return [
            session_from_replies(replies[i], replies[i + 1], replies[i + 2], self._max_bytes)
            for i in range(0, len(replies), 3)
        ]

    async def _scripted_read(self, keys: list[str]) -> list[Any] | None:
        """Read ``keys`` with the batch script; ``None`` when this server refuses scripts.

        One command: sent without a pipeline object, whose bookkeeping costs
        more than the command itself.
        """
        if self._pipeline is not None:
            reply = await self._pipelined_script(keys)
        else:
            reply = await self._pooled_script(keys)
        if reply is None:
            self._scripted = False
            return None
        if not isinstance(reply, list):
            raise StoreUnavailableError(f"unexpected script reply: {type(reply).__name__}")
        return reply

    async def _pipelined_script(self, keys: list[str]) -> Any:
        assert self._pipeline is not None  # noqa: S101 - callers check
        limit = str(self._max_bytes)
        reply = await self._pipeline.execute(
            "EVALSHA", _READ_SESSIONS_SHA, len(keys), *keys, limit, timeout_s=self._timeout
        )
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = await self._pipeline.execute(
                "EVAL", _READ_SESSIONS, len(keys), *keys, limit, timeout_s=self._timeout
            )
        if isinstance(reply, ErrorReply):
            if not refuses_scripts(reply):
                raise store_error(reply)
            _log_no_scripts(reply)
            return None
        return reply

    async def _pooled_script(self, keys: list[str]) -> Any:
        limit = str(self._max_bytes)
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await self._client.execute_command(  # type: ignore[no-untyped-call]
                        "EVALSHA", _READ_SESSIONS_SHA, len(keys), *keys, limit
                    )
                except redis.exceptions.NoScriptError:
                    return await self._client.execute_command(  # type: ignore[no-untyped-call]
                        "EVAL", _READ_SESSIONS, len(keys), *keys, limit
                    )
        except redis.exceptions.ResponseError as exc:
            if not refuses_scripts(exc):
                raise store_error(exc) from exc
            _log_no_scripts(exc)
            return None
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise store_error(exc) from exc

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecordData | None]:
        """Read many user records in one round trip.

        A record may be a JSON object stored as a string or a hash; both are
        read in the same round trip and whichever matches the key's type wins.
        """
        if self._user_key is None or not user_ids:
            return [None] * len(user_ids)
        commands: list[tuple[str, ...]] = []
        for user_id in user_ids:
            key = self._user_key.replace("{id}", user_id)
            commands += [("GET", key), ("HGETALL", key)]
        replies = await self._run(commands)
        return [self._user(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]

    @staticmethod
    def _user(as_string: Any, as_hash: Any) -> Mapping[str, Any] | None:
        if isinstance(as_string, bytes):
            try:
                record = parse_json(as_string)
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
        if isinstance(as_hash, list) and not isinstance(as_string, bytes):  # RESP2 HGETALL: field, value, ...
            as_hash = dict(zip(as_hash[::2], as_hash[1::2], strict=True))
        if isinstance(as_hash, dict) and as_hash:
            return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in as_hash.items()}
        for result in (as_string, as_hash):
            if isinstance(result, Exception) and not isinstance(result, WrongTypeError):
                raise store_error(result)
        return None

    async def ping(self, timeout_s: float | None = None) -> None:
        """Raise a StoreError unless the store answers PING in time."""
        (result,) = await self._run([("PING",)], timeout_s=timeout_s)
        if isinstance(result, Exception):
            raise store_error(result)

    async def write_session(self, session_id: str, session_json: str, *, ttl_s: int | None) -> None:
        """Write a session as connect-redis 9 does: ``SET key value [EX ttl]``."""
        command: tuple[str, ...] = ("SET", self._prefix + session_id, session_json)
        if ttl_s is not None:
            command = (*command, "EX", str(ttl_s))
        (result,) = await self._run([command])
        if isinstance(result, Exception):
            raise store_error(result)


def _log_no_scripts(error: ErrorReply) -> None:
    log.warning(
        "the store refuses scripts; reading sessions command by command",
        extra={"event": "store_no_scripts", "error": describe(error)[:200]},
    )

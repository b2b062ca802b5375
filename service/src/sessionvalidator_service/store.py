"""The session store: connect-redis's key schema, read through redis-py.

Only this module knows how sessions are laid out in Redis:
``<prefix><sid>`` holds ``JSON.stringify(session)`` with a TTL (connect-redis
``set``), and user records, when configured, live under a key template such
as ``user:{id}`` as a JSON string or a hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.typing import EncodableT

from sessionvalidator_service.domain import parse_json

log = logging.getLogger("sessionvalidator.store")

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
        """Build a store over a pooled client for ``url``.

        ``redis://``, ``rediss://`` and ``unix://`` name one server;
        ``redis[s]+sentinel://`` a Sentinel-monitored master (see
        :func:`parse_topology_url`); ``redis[s]+cluster://`` a Redis Cluster.
        """
        topology = parse_topology_url(url)
        client: aioredis.Redis
        if topology is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                **_lean_connections(),
                max_connections=max_connections,
                # Waiting for a free connection counts against the store timeout.
                timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                socket_timeout=max(timeout_s, 1.0),
            )
            client = aioredis.Redis(connection_pool=pool)
        elif topology.kind == "sentinel":
            client = _sentinel_master(topology, timeout_s=timeout_s, max_connections=max_connections)
        else:
            # The store only calls pipeline(transaction=False) and aclose() on
            # its client, which _ClusterClient provides over a RedisCluster.
            client = cast("aioredis.Redis", _cluster_client(topology, timeout_s, max_connections))
        return cls(
            client,
            key_prefix=key_prefix,
            timeout_s=timeout_s,
            user_key_template=user_key_template,
        )

    async def aclose(self) -> None:
        """Close every pooled connection (a pool handed to a client is not closed by default)."""
        await self._client.aclose(close_connection_pool=True)

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
        except Exception as exc:
            # The client library failing in some other way while connections
            # die (seen under load while Redis was killed) is still the store
            # failing: UNAVAILABLE, never INTERNAL. Logged with its traceback
            # so a library bug stays visible.
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
        return (await self.get_sessions([session_id]))[0]

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


# ---------------------------------------------------------------- Sentinel and Cluster
#
# Helpers for RedisSessionStore.from_url. Reads always go to a primary (the
# Sentinel master, or the slot's cluster primary): express-session reads a
# session right after connect-redis wrote it, and replicas lag.

_TOPOLOGY_SCHEMES: Mapping[str, tuple[Literal["sentinel", "cluster"], bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}
_SENTINEL_PARAMS = ("sentinel_username", "sentinel_password")
_TLS_PARAMS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_PORT = re.compile(r"[0-9]{1,5}")
_DB = re.compile(r"[0-9]{1,4}")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# How often the Sentinel master pool re-asks the sentinels who the master is.
_MASTER_CHECK_S = 0.5
# At most this often, a failed cluster PING re-reads the slot map.
_SLOT_MAP_REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class TopologyURL:
    """A ``redis[s]+sentinel://`` or ``redis[s]+cluster://`` URL, parsed."""

    kind: Literal["sentinel", "cluster"]
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service_name: str = ""  # Sentinel: the monitored master's name
    db: int = 0  # Sentinel only: Redis Cluster has database 0 alone
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: Mapping[str, str | bool] = field(default_factory=dict)


def parse_topology_url(url: str) -> TopologyURL | None:
    """Parse a Sentinel or Cluster URL; return ``None`` for any other scheme.

    ``redis[s]+sentinel://[user[:password]@]host[:port][,host[:port]...]/<service_name>[/<db>][?params]``
    (port 26379 by default) and
    ``redis[s]+cluster://[user[:password]@]host[:port][,host[:port]...][/][?params]``
    (port 6379 by default; any node of the cluster will do, more for safety).
    The credentials are the Redis servers'; sentinels take
    ``sentinel_username`` / ``sentinel_password`` parameters. ``rediss+``
    uses TLS everywhere, tuned by ``ssl_ca_certs``, ``ssl_cert_reqs``
    (``none``, ``optional``, ``required``), ``ssl_certfile``, ``ssl_keyfile``
    and ``ssl_check_hostname``. Percent-encode reserved characters.

    Raises :class:`ValueError` naming the mistake (never echoing a password).
    """
    parts = urlsplit(url)
    scheme = _TOPOLOGY_SCHEMES.get(parts.scheme)
    if scheme is None:
        return None
    kind, tls = scheme
    form = f"{parts.scheme}://" + (
        "host:26379[,host:26379...]/<service_name>[/<db>]" if kind == "sentinel" else "host:6379[,host:6379...]"
    )
    if parts.fragment:
        raise ValueError("unexpected '#': percent-encode it as %23 (in a password, say)")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    if not hostlist:
        raise ValueError(f"no hosts: expected {form}")
    hosts = tuple(_host_port(entry, _DEFAULT_PORTS[kind]) for entry in hostlist.split(","))
    username, _, password = userinfo.partition(":")
    service_name, db = "", 0
    if kind == "sentinel":
        name, _, db_text = parts.path.removeprefix("/").partition("/")
        service_name = unquote(name)
        if not service_name:
            raise ValueError(f"no Sentinel service name (the monitored master's name): expected {form}")
        if db_text and not _DB.fullmatch(db_text):
            raise ValueError(f"the database after the service name must be a number, got {db_text!r}")
        db = int(db_text or "0")
    elif parts.path not in {"", "/", "/0"}:
        raise ValueError(f"Redis Cluster has database 0 only: nothing may follow the hosts, got {parts.path!r}")
    params = _params(parts.query, kind, tls)
    sentinel_params = {name: str(params.pop(name)) for name in _SENTINEL_PARAMS if name in params}
    return TopologyURL(
        kind=kind,
        tls=tls,
        hosts=hosts,
        username=unquote(username) or None,
        password=unquote(password) or None,
        service_name=service_name,
        db=db,
        sentinel_username=sentinel_params.get("sentinel_username") or None,
        sentinel_password=sentinel_params.get("sentinel_password") or None,
        tls_options=params,
    )


def _host_port(entry: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad host {entry!r}: write IPv6 addresses as [address]:port")
        has_port, port = bool(rest), rest[1:]
    elif entry.count(":") > 1:
        raise ValueError(f"bad host {entry!r}: write IPv6 addresses as [address]:port")
    else:
        host, colon, port = entry.partition(":")
        has_port = bool(colon)
    if not host:
        raise ValueError("an empty host in the list: write host:port,host:port")
    if not has_port:
        return host, default_port
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:  # noqa: PLR2004
        raise ValueError(f"bad port in {entry!r}: expected 1 to 65535")
    return host, int(port)


def _params(query: str, kind: str, tls: bool) -> dict[str, str | bool]:
    allowed = (_SENTINEL_PARAMS if kind == "sentinel" else ()) + (_TLS_PARAMS if tls else ())
    params: dict[str, str | bool] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            raise ValueError(f"query parameter {name!r} given twice")
        if name not in allowed:
            hint = "TLS parameters need rediss+" + kind if name in _TLS_PARAMS else "unknown query parameter"
            accepted = ", ".join(allowed) or "none"
            raise ValueError(f"{hint}: {name!r} (this URL accepts: {accepted})")
        if name == "ssl_check_hostname":
            if value.lower() not in _BOOLEANS:
                raise ValueError(f"ssl_check_hostname must be true or false, got {value!r}")
            params[name] = _BOOLEANS[value.lower()]
        elif name == "ssl_cert_reqs" and value not in {"none", "optional", "required"}:
            raise ValueError(f"ssl_cert_reqs must be none, optional or required, got {value!r}")
        else:
            params[name] = value
    return params


def _lean_connections() -> dict[str, Any]:
    """Return connection settings that make a new connection cost no extra round trip.

    redis-py 8 would open each connection with HELLO 3 and CLIENT SETINFO
    (three round trips before the first command, all inside the caller's
    store timeout, and thrown away when it fires), and its default
    maintenance-notification mode ('auto', truthy) makes it skip the check
    for sockets the server already closed, so after a Redis restart dead
    connections were handed out, one failed call each. Found by the fault
    tests (tests/faults).
    """
    return {
        "protocol": 2,
        "lib_name": None,
        "lib_version": None,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def _sentinel_master(topology: TopologyURL, *, timeout_s: float, max_connections: int) -> aioredis.Redis:
    """Return a client for the master that the sentinels name, never for a replica."""
    sockets: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": max(timeout_s, 1.0)}
    tls: dict[str, Any] = {"ssl": True, **topology.tls_options} if topology.tls else {}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(topology.hosts),
        sentinel_kwargs={
            **sockets,
            **tls,
            "username": topology.sentinel_username,
            "password": topology.sentinel_password,
            # Ask each sentinel once, then the next: redis-py would otherwise
            # retry a dead one ten times, with backoff, past the store timeout.
            "retry": Retry(NoBackoff(), 0),
        },
    )
    client: aioredis.Redis = sentinel.master_for(
        topology.service_name,
        **_lean_connections(),
        connection_pool_class=_SentinelMasterPool,
        max_connections=max_connections,
        timeout=timeout_s,
        db=topology.db,
        username=topology.username,
        password=topology.password,
        **sockets,
        **tls,
    )
    return client


class _SentinelMasterPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """redis-py's Sentinel master pool, made to follow a planned failover.

    Like the single-server pool it blocks (within the store timeout) when
    every connection is busy. redis-py asks the sentinels for the master only
    when it opens a connection, so after ``SENTINEL FAILOVER`` pooled
    connections would go on reading the old master until Sentinel demotes it
    (about 10 s later), missing sessions written to the new one. This pool
    re-asks every ``_MASTER_CHECK_S`` while in use, in the background, and
    closes connections to a former master: idle ones at once
    (``get_master_address`` does), busy ones when they are released.
    """

    _check: asyncio.Task[None] | None = None
    _next_check = -math.inf

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Hand out a connection; start a background master check when one is due."""
        loop = asyncio.get_running_loop()
        if self._check is None and loop.time() >= self._next_check:
            self._next_check = loop.time() + _MASTER_CHECK_S
            self._check = loop.create_task(self._check_master())
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def _check_master(self) -> None:
        try:
            await self.get_master_address()  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisError, OSError):
            pass  # no sentinel answered: new connections will say so, pooled ones keep working
        finally:
            self._check = None

    async def release(self, connection: Any) -> None:
        """Return ``connection``, closing it first if it is to a former master."""
        if self.master_address is not None and (connection.host, connection.port) != tuple(self.master_address):
            connection.mark_for_reconnect()
        await super().release(connection)

    async def aclose(self) -> None:
        """Close every connection, then the sentinel clients this pool alone uses."""
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check
        await super().aclose()
        await self.sentinel_manager.aclose()


def _cluster_client(topology: TopologyURL, timeout_s: float, max_connections: int) -> _ClusterClient:
    tls: dict[str, Any] = {"ssl": True, **topology.tls_options} if topology.tls else {}
    return _ClusterClient(
        RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
            **_lean_connections(),
            username=topology.username,
            password=topology.password,
            # Per node. Unlike the single-server pool it does not wait for a
            # free connection: over the limit a command fails at once.
            max_connections=max_connections,
            # No retries inside a call: redis-py would close every connection
            # to every node and sleep 0.25 s before each one, far beyond the
            # store timeout. A failure is reported at once (UNAVAILABLE) and the
            # readiness ping re-reads the slot map (see _ClusterClient).
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=timeout_s,
            socket_timeout=max(timeout_s, 1.0),
            **tls,
        )
    )


class _ClusterClient:
    """What RedisSessionStore uses of ``redis.asyncio.Redis``, over a RedisCluster.

    Key commands go through redis-py's ClusterPipeline: it groups a batch by
    node, sends each node its share at once, follows MOVED and ASK, and with
    ``raise_on_error=False`` returns each command's error (WRONGTYPE,
    CLUSTERDOWN…) in its place. A node that cannot be reached fails the
    whole batch with ConnectionError.

    PING (readiness) goes to every primary: ready means every slot has a
    primary that answers, which is also when Redis Cluster itself serves
    (``cluster-require-full-coverage``). When one does not answer, or the
    PING is cut short by its timeout (a hung primary), the slot map is
    re-read in the background (at most once a second), so a promoted replica
    is used as soon as the cluster has failed over.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = -math.inf

    def pipeline(self, transaction: bool = False) -> _ClusterPipeline:
        """Return a non-transactional pipeline (a transaction cannot span slots)."""
        if transaction:
            raise ValueError("transactions are not supported over Redis Cluster")
        return _ClusterPipeline(self)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:  # noqa: ARG002 - Redis.aclose's signature
        """Stop a slot map refresh, then close every connection to every node."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await self.cluster.aclose()

    async def ping_primaries(self) -> bool:
        """PING every primary; raise the first failure, after starting a slot map refresh."""
        await self.cluster.initialize()
        try:
            replies = await asyncio.gather(
                *(node.execute_command("PING") for node in self.cluster.get_primaries()), return_exceptions=True
            )
        except asyncio.CancelledError:  # timed out: some primary hangs
            self._refresh_slot_map()
            raise
        failure = next((reply for reply in replies if isinstance(reply, BaseException)), None)
        if failure is None:
            return True
        self._refresh_slot_map()
        raise failure

    def _refresh_slot_map(self) -> None:
        loop = asyncio.get_running_loop()
        if self._refresh is None and loop.time() - self._refreshed_at >= _SLOT_MAP_REFRESH_S:
            self._refreshed_at = loop.time()
            self._refresh = loop.create_task(self._reread_slot_map())

    async def _reread_slot_map(self) -> None:
        try:
            await self.cluster.nodes_manager.initialize()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
            pass  # no node answered CLUSTER SLOTS; the next failed PING tries again
        finally:
            self._refresh = None


class _ClusterPipeline:
    """Collects commands, then runs them as one ClusterPipeline (see _ClusterClient)."""

    def __init__(self, client: _ClusterClient) -> None:
        self._client = client
        self._commands: list[tuple[EncodableT, ...]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._commands.clear()

    def execute_command(self, *args: EncodableT) -> None:
        """Queue one command."""
        self._commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands; cluster failures raise a RedisError."""
        try:
            if self._commands == [("PING",)]:
                return [await self._client.ping_primaries()]
            async with self._client.cluster.pipeline(transaction=False) as pipe:
                for command in self._commands:
                    pipe.execute_command(*command)
                return await pipe.execute(raise_on_error=raise_on_error)
        except redis.exceptions.RedisClusterException as exc:
            # SlotNotCoveredError, "Redis Cluster cannot be connected" and the
            # like are not RedisErrors: report them as the outage they are.
            raise redis.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from exc

"""Sentinel and Cluster adapters for the Redis store.

Reads always go to a primary (the Sentinel master, or the slot's cluster
primary): express-session reads a session right after connect-redis wrote it,
and replicas lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, Self

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.typing import EncodableT

from sessionvalidator_service.stores.redis_url import TopologyURL

__all__ = ["cluster_client", "lean_connections", "sentinel_master"]

# How often the Sentinel master pool re-asks the sentinels who the master is.
_MASTER_CHECK_S = 0.5
# At most this often, a failed cluster PING re-reads the slot map.
_SLOT_MAP_REFRESH_S = 1.0


def lean_connections() -> dict[str, Any]:
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
        "driver_info": None,  # no CLIENT SETINFO (lib_name=None did the same, deprecated in redis-py 8)
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def sentinel_master(topology: TopologyURL, *, timeout_s: float, max_connections: int) -> aioredis.Redis:
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
        **lean_connections(),
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


def cluster_client(topology: TopologyURL, timeout_s: float, max_connections: int) -> _ClusterClient:
    """Return a client over a RedisCluster that tries each node once (see _ClusterClient)."""
    tls: dict[str, Any] = {"ssl": True, **topology.tls_options} if topology.tls else {}
    return _ClusterClient(
        RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
            **lean_connections(),
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

"""Client CPU per Redis round trip: redis-py's pool against the pipelined connection, plain and TLS.

    .venv/bin/python bench/roundtrip.py [--round-trips N] [--rounds R]

One redis-server (bench/procs.py) listening plain and TLS (a self-signed
certificate, verified). For each client and transport, in one process on
uvloop: the session store's batch script (EVALSHA, one key) sent one at a
time, N in a row after a warm-up, and the CPU this process spent on them
(``getrusage``: user + system, so the socket calls count) divided by N.
Redis's own CPU is not counted. R alternating rounds; each figure is printed
per round, so the spread shows how much other load on the machine moved it.
"""

from __future__ import annotations

import argparse
import resource
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
import uvloop
from procs import RedisServer

from sessionvalidator_service.stores.redis import _READ_SESSIONS, _READ_SESSIONS_SHA
from sessionvalidator_service.stores.redis_pipeline import PipelinedConnection, pipeline_target
from sessionvalidator_service.stores.redis_topologies import lean_connections

SESSION = b'{"cookie":{"originalMaxAge":null},"passport":{"user":"7"}}'
WARM_UP = 500
SCRIPT = ("EVALSHA", _READ_SESSIONS_SHA, 1, "sess:a", "4096")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(send: Callable[[], Awaitable[object]], n: int) -> float:
    """CPU µs per call of ``send``, over ``n`` calls after a warm-up."""
    for _ in range(WARM_UP):
        await send()
    started = cpu_s()
    for _ in range(n):
        await send()
    return (cpu_s() - started) / n * 1e6


async def pipelined(url: str, n: int) -> float:
    target = pipeline_target(url)
    assert target is not None
    connection = PipelinedConnection(target, connect_timeout_s=2)
    try:
        await connection.execute("EVAL", _READ_SESSIONS, 1, "sess:a", "4096", timeout_s=2)
        return await timed(lambda: connection.execute(*SCRIPT, timeout_s=2), n)
    finally:
        await connection.aclose()


async def pooled(url: str, n: int) -> float:
    """redis-py as the store uses it for Sentinel and Cluster (and did for rediss:// before issue 26)."""
    pool = aioredis.BlockingConnectionPool.from_url(url, **lean_connections(), max_connections=10, timeout=2)
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.execute_command("EVAL", _READ_SESSIONS, 1, "sess:a", "4096")  # type: ignore[no-untyped-call]
        return await timed(lambda: client.execute_command(*SCRIPT), n)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose(close_connection_pool=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=20_000, help="round trips per figure (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)
    server = RedisServer(tls=True).start()
    try:
        server.client().set("sess:a", SESSION)
        clients = {
            "redis-py pool, redis://": (pooled, server.url),
            "redis-py pool, rediss://": (pooled, server.tls_url),
            "pipelined, redis://": (pipelined, server.url),
            "pipelined, rediss://": (pipelined, server.tls_url),
        }
        for round_ in range(1, args.rounds + 1):
            figures = [
                f"{name} {uvloop.run(client(url, args.round_trips)):.0f}" for name, (client, url) in clients.items()
            ]
            print(f"round {round_} (client CPU µs per round trip): " + "; ".join(figures), flush=True)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

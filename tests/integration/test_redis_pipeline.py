"""The pipelined Redis connection (stores/redis_pipeline.py) against a real redis-server.

Many commands in flight on one connection, each caller its own reply; log-in
with a password, an ACL user and a database; a unix socket; timeouts that keep
a slow connection and drop a silent one; a restart; error replies. Then the
store over it: the script evicted (NOSCRIPT) and a user not allowed to run
scripts.
"""
# ruff: noqa: S106 - made-up credentials for throwaway servers

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import uvloop

from sessionvalidator_service.stores import StoreOptions, StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.stores.redis import RedisSessionStore
from sessionvalidator_service.stores.redis_errors import WrongTypeError
from sessionvalidator_service.stores.redis_pipeline import (
    PipelinedConnection,
    PipelineTarget,
    pipeline_target,
)
from tests.support.processes import RedisServer, debug_sleep

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on uvloop, as the service does."""

    async def main() -> T:
        return await factory()

    return uvloop.run(main())


def target_of(server: RedisServer, **login: Any) -> PipelineTarget:
    return PipelineTarget(host="127.0.0.1", port=server.port, **login)


@pytest.fixture
def unix_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    socket_path = str(Path(server.dir) / "redis.sock")
    server.extra_args = ("--unixsocket", socket_path, "--unixsocketperm", "700")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/3", PipelineTarget(host="127.0.0.1", port=6380, db=3)),
        ("redis://u:p%40ss@h", PipelineTarget(host="h", username="u", password="p@ss")),
        ("redis://:secret@h:7000", PipelineTarget(host="h", port=7000, password="secret")),
        ("redis://h/0?socket_timeout=2&protocol=3", PipelineTarget(host="h")),
        ("unix:///run/redis.sock?db=2&password=x", PipelineTarget(path="/run/redis.sock", db=2, password="x")),
        ("rediss://h:6380", PipelineTarget(host="h", port=6380)),  # TLS: see test_redis_tls.py
        ("redis://h?client_name=sv", None),  # a setting the connection does not implement
    ],
)
def test_which_urls_get_a_pipelined_connection(url: str, expected: PipelineTarget | None) -> None:
    assert pipeline_target(url) == expected


def test_many_commands_in_flight_share_one_connection_and_each_gets_its_own_reply(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.mset({f"k{i}": f"v{i}" for i in range(500)})

    async def scenario() -> tuple[list[Any], int]:
        connection = PipelinedConnection(target_of(redis_server), connect_timeout_s=1)
        try:
            replies = await asyncio.gather(*(connection.execute("GET", f"k{i}", timeout_s=2) for i in range(500)))
            ids = {await connection.execute("CLIENT", "ID", timeout_s=1) for _ in range(3)}
            return list(replies), len(ids)
        finally:
            await connection.aclose()

    replies, connections = run(scenario)
    assert replies == [f"v{i}".encode() for i in range(500)]
    assert connections == 1


def test_logs_in_with_an_acl_user_and_selects_the_database(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.execute_command("ACL", "SETUSER", "reader", "on", ">s3cret-pw", "~*", "+@all")  # type: ignore[no-untyped-call]
    client.execute_command("SELECT", 3)  # type: ignore[no-untyped-call]
    redis.Redis(host="127.0.0.1", port=redis_server.port, db=3).set("where", "db3")

    async def read(**login: Any) -> Any:
        connection = PipelinedConnection(target_of(redis_server, **login), connect_timeout_s=1)
        try:
            return await connection.execute("GET", "where", timeout_s=1)
        finally:
            await connection.aclose()

    assert run(lambda: read(username="reader", password="s3cret-pw", db=3)) == b"db3"
    assert run(lambda: read(db=0)) is None
    with pytest.raises(StoreUnavailableError) as refused:
        run(lambda: read(username="reader", password="wrong-pw", db=3))
    assert "AUTH refused" in str(refused.value)
    assert "wrong-pw" not in str(refused.value)


def test_a_password_only_server(redis_server: RedisServer) -> None:
    redis_server.client().config_set("requirepass", "only-pw")

    async def ping(password: str | None) -> Any:
        connection = PipelinedConnection(target_of(redis_server, password=password), connect_timeout_s=1)
        try:
            return await connection.execute("PING", timeout_s=1)
        finally:
            await connection.aclose()

    assert run(lambda: ping("only-pw")) == b"PONG"
    reply = run(lambda: ping(None))
    assert isinstance(reply, redis.exceptions.AuthenticationError)
    assert reply.status_code == "NOAUTH"


def test_a_unix_socket(unix_redis: RedisServer) -> None:
    path = unix_redis.extra_args[1]
    target = pipeline_target(f"unix://{path}")
    assert target is not None

    async def ping() -> Any:
        connection = PipelinedConnection(target, connect_timeout_s=1)
        try:
            return await connection.execute("PING", timeout_s=1)
        finally:
            await connection.aclose()

    assert run(ping) == b"PONG"


def test_a_slow_reply_times_out_on_time_and_the_connection_stays(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[float, Any, bool]:
        connection = PipelinedConnection(target_of(redis_server), connect_timeout_s=1)
        try:
            before = await connection.execute("CLIENT", "ID", timeout_s=1)
            blocker = asyncio.get_running_loop().run_in_executor(None, debug_sleep, redis_server.client(), 0.4)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(StoreTimeoutError):
                await connection.execute("PING", timeout_s=0.1)
            took = time.monotonic() - started
            await blocker
            after = await connection.execute("CLIENT", "ID", timeout_s=1)
            return took, before == after, await connection.execute("PING", timeout_s=1) == b"PONG"
        finally:
            await connection.aclose()

    took, same_connection, answers = run(scenario)
    assert 0.09 <= took < 0.3
    assert same_connection
    assert answers


def test_a_connection_silent_for_ten_timeouts_is_dropped_and_the_next_command_reconnects(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[list[str], Any, Any]:
        connection = PipelinedConnection(target_of(redis_server), connect_timeout_s=1)
        try:
            before = await connection.execute("CLIENT", "ID", timeout_s=1)
            blocker = asyncio.get_running_loop().run_in_executor(None, debug_sleep, redis_server.client(), 1.6)
            await asyncio.sleep(0.05)
            first = asyncio.ensure_future(connection.execute("PING", timeout_s=0.1))
            await asyncio.sleep(1.0)  # the first command has waited 1 s (ten timeouts) when the next one expires
            errors = []
            for pending in (first, asyncio.ensure_future(connection.execute("PING", timeout_s=0.1))):
                try:
                    await pending
                except StoreTimeoutError as exc:
                    errors.append(str(exc))
            await blocker
            return errors, before, await connection.execute("CLIENT", "ID", timeout_s=1)
        finally:
            await connection.aclose()

    errors, before, after = run(scenario)
    assert errors[0] == "store timeout"
    assert len(errors) == 2
    assert after != before  # a new connection


def test_a_restarted_redis_fails_what_waits_then_serves_again(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[type[BaseException], Any]:
        connection = PipelinedConnection(target_of(redis_server), connect_timeout_s=1)
        try:
            await connection.execute("PING", timeout_s=1)
            redis_server.stop()
            try:
                await connection.execute("PING", timeout_s=1)
            except (StoreUnavailableError, StoreTimeoutError) as exc:
                down = type(exc)
            else:
                pytest.fail("a stopped Redis answered")
            redis_server.start()
            return down, await connection.execute("PING", timeout_s=1)
        finally:
            await connection.aclose()

    down, reply = run(scenario)
    assert down is StoreUnavailableError
    assert reply == b"PONG"


def test_an_error_reply_is_returned_and_the_connection_keeps_serving(redis_server: RedisServer) -> None:
    redis_server.client().set("text", "x")

    async def scenario() -> tuple[Any, Any]:
        connection = PipelinedConnection(target_of(redis_server), connect_timeout_s=1)
        try:
            error = await connection.execute("HGETALL", "text", timeout_s=1)
            return error, await connection.execute("GET", "text", timeout_s=1)
        finally:
            await connection.aclose()

    error, value = run(scenario)
    assert isinstance(error, WrongTypeError)
    assert str(error).startswith("WRONGTYPE")
    assert value == b"x"


def test_nothing_listens(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.stop()

    async def scenario() -> None:
        connection = PipelinedConnection(PipelineTarget(host="127.0.0.1", port=port), connect_timeout_s=1)
        try:
            await connection.execute("PING", timeout_s=1)
        finally:
            await connection.aclose()

    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        run(scenario)


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


SESSION = b'{"cookie":{"originalMaxAge":null},"passport":{"user":"7"}}'


def test_the_store_reloads_an_evicted_script(redis_server: RedisServer) -> None:
    redis_server.client().set("sess:a", SESSION)

    async def scenario() -> list[Any]:
        store = RedisSessionStore.from_url(redis_server.url, StoreOptions(timeout_s=1))
        try:
            first = await store.get_sessions(["a", "b"])
            redis_server.client().script_flush()
            return [first, await store.get_sessions(["a", "b"])]
        finally:
            await store.aclose()

    first, after_flush = run(scenario)
    assert first == after_flush
    assert first[0].data == SESSION
    assert first[1].data is None


def test_a_user_without_scripting_is_served_command_by_command(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)
    client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "noscript", "on", ">pw-1234", "~*", "+@all", "-@scripting"
    )
    url = f"redis://noscript:pw-1234@127.0.0.1:{redis_server.port}/0"

    async def scenario() -> list[Any]:
        store = RedisSessionStore.from_url(url, StoreOptions(timeout_s=1))
        try:
            return [await store.get_sessions(["a", "b"]), await store.get_sessions(["a"])]
        finally:
            await store.aclose()

    both, one = run(scenario)
    assert both[0].data == SESSION
    assert both[1].data is None
    assert one[0].data == SESSION


def test_an_unavailable_store_is_not_mistaken_for_one_refusing_scripts(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("sess:a", SESSION)

    async def scenario() -> Any:
        store = RedisSessionStore.from_url(redis_server.url, StoreOptions(timeout_s=1))
        try:
            await store.get_sessions(["a"])
            # A script that runs past busy-reply-threshold makes Redis answer BUSY to everyone else.
            client.config_set("busy-reply-threshold", 50)
            busy = asyncio.get_running_loop().run_in_executor(
                None,
                lambda: redis_server.client().eval("local t = redis.call('TIME') while true do end", 0),
            )
            await asyncio.sleep(0.3)
            with pytest.raises(StoreUnavailableError, match="BUSY"):
                await store.get_sessions(["a"])
            client.script_kill()
            with pytest.raises(redis.exceptions.ResponseError):
                await busy
            scripted_before = evalsha_calls(client)
            answer = await store.get_sessions(["a"])
            return answer, evalsha_calls(client) - scripted_before
        finally:
            await store.aclose()

    (session,), scripted = run(scenario)
    assert session.data == SESSION
    assert scripted == 1  # still read by the script, not command by command

"""One pipelined connection to one Redis server, for the session lookups on the hot path.

redis-py checks a connection out of its pool, wraps it in retry and event
machinery and reads through an asyncio stream for every command: about 150 µs
of CPU per round trip on this project's machine, against about 60 µs for the
same EVALSHA sent over an ``asyncio.Protocol`` and parsed by hiredis (measured
one command at a time, uvloop, 20,000 round trips; most of the 60 are the
socket calls themselves). :class:`PipelinedConnection` is that protocol: one
connection, any number of commands in flight, replies matched to callers in
order (Redis answers a connection's commands in the order it received them).

It speaks RESP2 and knows only what the store needs: TCP, TLS over TCP
(asyncio's own TLS transport, with the ``ssl.SSLContext`` redis-py would build
for the URL, see :func:`.redis_url.tls_context`) or a unix socket, ``AUTH``
and ``SELECT`` on connect, a timeout per command (or per batch of commands),
reconnecting on the next command after a failure, hooks to set a new
connection up, and pushed messages (for the invalidations of
:mod:`.redis_tracking`). Sentinel and Cluster stay on redis-py; see
:func:`pipeline_target` for which URLs qualify.

Failures are typed as the store interface wants them: a command that gets no
reply in time fails with :class:`StoreTimeoutError`, and the connection stays
(a slow Redis still answers in order). When the oldest command still waiting
has had no reply for :data:`SILENCE_FACTOR` command timeouts (at least a
second), the peer may be gone without a word: the connection is dropped, every
command still waiting on it fails with :class:`StoreTimeoutError` and the next
one connects afresh. A lost connection fails what waits on it with
:class:`StoreUnavailableError`. A reply that is a Redis error is returned as
its exception class (:mod:`.redis_errors`) for the caller to judge. TLS failing (a certificate
that does not verify, a host name it does not name, a server refusing the
client's certificate) is logged as an error naming the URL, credentials
masked, once until it changes or a connection works: a wrong CA shows at
startup, not as an unexplained outage.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from sessionvalidator_service.config import redact_url
from sessionvalidator_service.stores import StoreTimeoutError, StoreUnavailableError
from sessionvalidator_service.stores.redis_errors import ErrorReply, describe, reply_error
from sessionvalidator_service.stores.redis_url import split_tls_settings, tls_context

__all__ = [
    "SILENCE_FACTOR",
    "PipelineTarget",
    "PipelinedConnection",
    "Send",
    "pipeline_target",
]

log = logging.getLogger("sessionvalidator.store")

# Sends one command on a connection being set up, returns its reply.
Send = Callable[..., Awaitable[Any]]

# A connection whose oldest waiting command has had no reply for this many
# command timeouts (and at least MIN_SILENCE_S) is dropped.
SILENCE_FACTOR = 10
MIN_SILENCE_S = 1.0

# URL settings that change nothing for this connection: it has its own timeouts
# and always speaks RESP2 (as the redis-py pool here does, see lean_connections).
_IGNORED = frozenset(
    {"socket_timeout", "socket_connect_timeout", "socket_keepalive", "protocol", "health_check_interval"}
)


@dataclass(frozen=True, slots=True)
class PipelineTarget:
    """Where a pipelined connection goes, and how it logs in."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of TCP
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)  # rediss://
    url: str = field(default="", compare=False)  # credentials masked: what errors name


def pipeline_target(url: str) -> PipelineTarget | None:
    """Return the target of a ``redis://``, ``rediss://`` or ``unix://`` URL, or ``None`` when redis-py must serve it.

    A URL setting this connection does not implement (``client_name``, say)
    leaves the URL to redis-py, so a setting is never silently ignored.
    ``rediss://`` takes every ``ssl_*`` setting redis-py takes; one it does
    not know, or files that do not load, raise :class:`ValueError` (the
    configuration checks the same at startup).
    """
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError:
        return None
    connection_class = options.get("connection_class")
    if connection_class not in (None, UnixDomainSocketConnection, SSLConnection):
        return None
    tls_settings = split_tls_settings(options)
    options.pop("connection_class", None)
    for name in _IGNORED:
        options.pop(name, None)
    known = {"host", "port", "path", "db", "username", "password"}
    if not set(options) <= known:
        return None
    return PipelineTarget(
        host=str(options.get("host") or "localhost"),
        port=int(options.get("port") or 6379),
        path=options.get("path"),
        db=int(options.get("db") or 0),
        username=options.get("username") or None,
        password=options.get("password") or None,
        tls=tls_context(tls_settings) if connection_class is SSLConnection else None,
        url=redact_url(url),
    )


def pack(args: tuple[str | bytes | int, ...]) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """Matches replies to the futures of the commands that asked, in order."""

    def __init__(
        self, on_push: Callable[[Any], bool] | None = None, on_lost: Callable[[_Protocol], None] | None = None
    ) -> None:
        self._reader = hiredis.Reader(replyError=reply_error)
        # Each command waiting for its reply, with the loop time it was sent.
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.retiring = False
        self.answered = False  # a reply came: the connection worked
        self.tls_error: ssl.SSLError | None = None  # what TLS failed with after the handshake
        self._on_push = on_push
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not asyncio.Transport subclasses

    def send(self, data: bytes, futures: Sequence[asyncio.Future[Any]], now: float) -> None:
        """Write ``data`` (one or more commands), each command's future waiting for its reply in order."""
        assert self.transport is not None  # noqa: S101 - only sent to once connected
        if self.closed:
            for future in futures:
                future.set_exception(StoreUnavailableError("store connection closed"))
            return
        self.waiting.extend((future, now) for future in futures)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(StoreUnavailableError(f"protocol error from the store: {exc}"))
                return
            if reply is False:
                return
            if self._on_push is not None and self._on_push(reply):
                continue  # a message the server pushed (pub/sub), not a reply
            if not self.waiting:
                self.abort(StoreUnavailableError("the store sent a reply nobody asked for"))
                return
            future, _ = self.waiting.popleft()
            self.answered = True
            if not future.done():  # its caller may have timed out or given up
                future.set_result(reply)
            if self.retiring and not self.waiting:
                self.close()

    def retire(self) -> None:
        """Take no new commands; close once every command sent has its reply."""
        self.retiring = True
        if not self.waiting:
            self.close()

    def close(self) -> None:
        """Close gracefully (what waits fails as lost)."""
        if self.transport is not None:
            self.transport.close()
        self._fail(StoreUnavailableError("store connection closed"))

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ssl.SSLError):  # a TLS 1.3 server refusing our certificate says so here
            self.tls_error = exc
        self._fail(StoreUnavailableError(f"connection to the store lost: {exc or 'closed by the store'}"))

    def abort(self, error: Exception) -> None:
        """Drop the connection; every command waiting on it fails with ``error``."""
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        if not self.closed and self._on_lost is not None:
            self._on_lost(self)
        self.closed = True
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedConnection:
    """One connection to ``target``, opened on first use and again after any failure."""

    def __init__(
        self,
        target: PipelineTarget,
        *,
        connect_timeout_s: float,
        on_connect: Callable[[Send], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_push: Callable[[Any], bool] | None = None,
    ) -> None:
        """``on_connect`` runs after log-in on every new connection, before any command is sent on it.

        ``on_lost`` is called once when a connection is gone (lost, dropped
        or closed); ``on_push`` sees every reply first and returns ``True``
        for a message the server pushed rather than a reply to a command.
        """
        self._target = target
        self._connect_timeout_s = connect_timeout_s
        self._on_connect = on_connect
        self._on_lost = on_lost
        self._on_push = on_push
        self._protocol: _Protocol | None = None
        self._newest: _Protocol | None = None  # the connection being opened, or open: whose loss is reported
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._tls_failure = ""  # the last TLS failure logged, until a connection works

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._protocol is not None and not self._protocol.closed

    def retire(self) -> None:
        """Send the next command on a new connection; the open one closes once it has answered what it was sent.

        Its closing is not reported to ``on_lost``. Nothing to do while a
        connection is being opened: that one is new.
        """
        if self._connecting is not None:
            return
        protocol, self._protocol, self._newest = self._protocol, None, None
        if protocol is not None:
            protocol.retire()

    def _lost(self, protocol: _Protocol) -> None:
        if protocol.tls_error is not None:
            self._tls_failed(protocol.tls_error)
        elif protocol.answered:
            self._tls_failure = ""  # it worked: log the next TLS failure again
        if protocol is self._newest and self._on_lost is not None:
            self._on_lost()

    def abort(self, error: Exception) -> None:
        """Drop the open connection, failing what waits on it with ``error``; the next command reconnects."""
        if self._protocol is not None:
            self._protocol.abort(error)

    async def execute(self, *args: str | bytes | int, timeout_s: float) -> Any:
        """Send one command and return its reply (an error reply as its exception, see :mod:`.redis_errors`)."""
        protocol, loop = await self._open()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.send(pack(args), (future,), loop.time())
        timer = loop.call_later(timeout_s, _expire, protocol, future, _silence_s(timeout_s))
        try:
            return await future
        finally:
            timer.cancel()

    async def execute_many(self, commands: list[tuple[str | bytes | int, ...]], *, timeout_s: float) -> list[Any]:
        """Send ``commands`` in one write and return their replies, within one timeout for all."""
        protocol, loop = await self._open()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        protocol.send(b"".join(pack(command) for command in commands), futures, loop.time())
        timer = loop.call_later(timeout_s, _expire_many, protocol, futures, _silence_s(timeout_s))
        try:
            return [await future for future in futures]
        finally:
            timer.cancel()
            for future in futures:
                if not future.done():
                    future.cancel()  # nobody will look: let the reply, or the failure, fall away
                elif not future.cancelled():
                    future.exception()  # retrieved: one failure fails the call, the rest are the same

    async def _open(self) -> tuple[_Protocol, asyncio.AbstractEventLoop]:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        return protocol, asyncio.get_running_loop()

    async def _connection(self) -> _Protocol:
        """Return the open connection, opening it when needed (one attempt shared by every caller)."""
        if self._connecting is None:
            task = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(self._connected)
            self._connecting = task
        # Shielded: a caller giving up must not abort an attempt others wait on.
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Protocol]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            protocol = task.result()
            if protocol is self._newest:  # not retired while it was being opened
                self._protocol = protocol

    async def _connect(self) -> _Protocol:
        target = self._target
        loop = asyncio.get_running_loop()

        def new_protocol() -> _Protocol:
            self._newest = _Protocol(self._on_push, self._lost)
            return self._newest

        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if target.path is not None:
                    _, protocol = await loop.create_unix_connection(new_protocol, target.path)
                else:
                    transport, protocol = await loop.create_connection(
                        new_protocol,
                        target.host,
                        target.port,
                        ssl=target.tls,
                        server_hostname=target.host if target.tls is not None else None,
                    )
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                try:
                    await self._log_in(protocol, loop)
                    if self._on_connect is not None:
                        await self._on_connect(lambda *args: _send(protocol, loop, args))
                except BaseException:
                    protocol.abort(StoreUnavailableError("connection set-up failed"))
                    raise
        except TimeoutError as exc:
            raise StoreTimeoutError("connecting to the store timed out") from exc
        except ssl.SSLError as exc:
            raise StoreUnavailableError(self._tls_failed(exc)) from exc
        except OSError as exc:
            raise StoreUnavailableError(f"cannot connect to the store: {exc.strerror or exc}") from exc
        return protocol

    def _tls_failed(self, exc: ssl.SSLError) -> str:
        """Log a TLS failure (once until it changes or a connection works); return what the error says."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {exc.verify_message}"
        else:
            reason = str(exc)
        problem = f"TLS with the store at {self._target.url} failed: {reason}"
        if problem != self._tls_failure:
            self._tls_failure = problem
            log.error(
                "%s; check ssl_ca_certs, ssl_check_hostname and the client certificate in the store URL",
                problem,
                extra={"event": "store_tls_failed", "store_url": self._target.url, "error": reason},
            )
        return problem

    async def _log_in(self, protocol: _Protocol, loop: asyncio.AbstractEventLoop) -> None:
        target = self._target
        commands: list[tuple[str | bytes | int, ...]] = []
        if target.password is not None:
            commands.append(
                ("AUTH", target.username, target.password) if target.username else ("AUTH", target.password)
            )
        if target.db:
            commands.append(("SELECT", target.db))
        futures = [(str(command[0]), _send(protocol, loop, command)) for command in commands]
        for name, future in futures:
            reply = await future
            if isinstance(reply, ErrorReply):
                # Redis's own message (WRONGPASS ..., ERR DB index ...) never repeats the password.
                raise StoreUnavailableError(f"{name} refused by the store: {describe(reply)}")

    async def aclose(self) -> None:
        """Close the connection; commands still waiting fail with StoreUnavailableError."""
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.abort(StoreUnavailableError("store connection closed"))
            self._protocol = None


def _send(protocol: _Protocol, loop: asyncio.AbstractEventLoop, command: tuple[Any, ...]) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = loop.create_future()
    protocol.send(pack(command), (future,), loop.time())
    return future


def _silence_s(timeout_s: float) -> float:
    """How long the oldest waiting command may hear nothing before its connection is dropped."""
    return max(MIN_SILENCE_S, SILENCE_FACTOR * timeout_s)


def _expire(protocol: _Protocol, future: asyncio.Future[Any], silence_s: float) -> None:
    """Fail a command that got no reply in time; drop a connection silent for ``silence_s``."""
    if future.done():
        return
    error = StoreTimeoutError("store timeout")
    future.set_exception(error)
    _, oldest_sent = protocol.waiting[0]
    if asyncio.get_running_loop().time() - oldest_sent >= silence_s:
        protocol.abort(StoreTimeoutError(f"no reply from the store for {silence_s:g} s; reconnecting"))


def _expire_many(protocol: _Protocol, futures: list[asyncio.Future[Any]], silence_s: float) -> None:
    """Fail the commands of one :meth:`PipelinedConnection.execute_many` that are still waiting."""
    for future in futures:
        if not future.done():
            _expire(protocol, future, silence_s)

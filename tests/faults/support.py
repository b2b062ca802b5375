"""Helpers for the fault tests: a delaying TCP proxy, process probes and call records.

Everything here drives or observes real processes (redis-server, the service,
the Express app). The proxy is a real TCP relay between the service and a real
redis-server; it only delays or holds bytes, it never answers for Redis.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.mint import mint_session
from sessionvalidator_service.signature import Signer
from tests.conftest import load_vectors
from tests.support.processes import RedisServer, ValidatorProcess
from tests.support.vectors import needs_store

CORPUS = load_vectors("validate_session.json")
# The vectors' settings, with the per-peer limit on bad cookies off: these loads are
# deliberately full of bad cookies from one peer (as the README advises for load tests).
SETTINGS = {**CORPUS["settings"], "SESSIONVALIDATOR_RATE_LIMIT": "off"}
READINESS = "sessionvalidator.v1.SessionValidator"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def request_of(case: dict[str, Any]) -> pb.ValidateSessionRequest:
    spec = case["request"]
    if "cookie_header_b64" in spec:
        return pb.ValidateSessionRequest(cookie_header=base64.b64decode(spec["cookie_header_b64"]))
    return pb.ValidateSessionRequest(**spec)


def error_reason(error: grpc.RpcError) -> str | None:
    """The ErrorInfo reason of a failed call, if it carries one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason: str = info.reason
            return reason
    return None


# A channel of its own TCP connection: without this, grpcio shares one subchannel between channels
# to the same target, so "another client" or "a new connection" would quietly reuse an old one.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def new_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=OWN_CONNECTION)


def health_status(address: str, service: str = READINESS, timeout: float = 2.0) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
    return status


class HealthWatch:
    """Streams grpc.health.v1 Watch updates for one service as (monotonic time, status)."""

    def __init__(self, address: str, service: str = READINESS) -> None:
        self.updates: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self._channel = grpc.insecure_channel(address)
        self._stream = health_pb2_grpc.HealthStub(self._channel).Watch(health_pb2.HealthCheckRequest(service=service))
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for response in self._stream:
                with self._cond:
                    self.updates.append((time.monotonic(), response.status))
                    self._cond.notify_all()
        except grpc.RpcError:
            pass

    def wait_for(self, status: int, *, after: float, timeout: float) -> float:
        """The time of the first update to ``status`` at or after ``after``; raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, seen in self.updates:
                    if seen == status and at >= after:
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = f"no health status {status} after {after:.3f} within {timeout} s; updates: {self.updates}"
                    raise TimeoutError(msg)
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()
        self._thread.join(timeout=5)


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def local_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local ports of the process's TCP sockets connected to 127.0.0.1:``remote_port`` (any state)."""
    inodes = _socket_inodes(pid)
    ports = set()
    with Path(f"/proc/{pid}/net/tcp").open(encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.split(":")[1], 16) == remote_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def redis_clients_from(server: RedisServer, pid: int) -> int:
    """How many connections Redis itself lists (CLIENT LIST) from the process ``pid`` (to its store port)."""
    ports = local_ports_to(pid, server.store_port)
    client = server.client()
    try:
        listed = client.client_list()
    finally:
        client.close()
    return sum(1 for entry in listed if int(entry["addr"].rsplit(":", 1)[1]) in ports)


def save_snapshot(server: RedisServer) -> None:
    """Write dump.rdb in the server's directory: a restart on the same port loads it."""
    client = server.client()
    try:
        client.save()
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished call: what was asked, when, and what came back."""

    key: str  # what the call was about (a vector name, a session id, ...)
    started: float
    ended: float
    verdict: pb.Verdict.ValueType | None = None  # set for an OK response
    reason: pb.Reason.ValueType | None = None
    session_id: str = ""
    authenticated: bool = False
    user_id: str = ""
    code: grpc.StatusCode | None = None  # set for a failed call
    error_reason: str | None = None


def call_once(
    stub: pb_grpc.SessionValidatorStub, key: str, request: pb.ValidateSessionRequest, timeout: float, **kwargs: Any
) -> Outcome:
    started = time.monotonic()
    try:
        response = stub.ValidateSession(request, timeout=timeout, **kwargs)
    except grpc.RpcError as error:
        return Outcome(
            key,
            started,
            time.monotonic(),
            code=error.code(),
            error_reason=error_reason(error),
        )
    return Outcome(
        key,
        started,
        time.monotonic(),
        verdict=response.verdict,
        reason=response.reason,
        session_id=response.session_id,
        authenticated=response.authenticated,
        user_id=response.user.id if response.HasField("user") else "",
    )


class LoadThreads:
    """``threads`` callers looping over ``pick()`` until stopped, recording every outcome.

    Each thread has its own channel on its own HTTP/2 connection and pauses
    ``pause_s`` between calls so the load stays bounded on a shared machine.
    """

    def __init__(
        self,
        address: str,
        pick: Callable[[int], tuple[str, pb.ValidateSessionRequest]],
        *,
        threads: int = 4,
        timeout: float = 2.0,
        pause_s: float = 0.002,
    ) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._channels = [new_channel(address) for _ in range(threads)]
        self._stubs = [pb_grpc.SessionValidatorStub(channel) for channel in self._channels]
        self._pick = pick
        self._timeout = timeout
        self._pause_s = pause_s
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        stub = self._stubs[index]
        n = 0
        while not self._stop.is_set():
            key, request = self._pick(index * 1_000_003 + n)
            n += 1
            outcome = call_once(stub, key, request, self._timeout)
            with self._lock:
                self.outcomes.append(outcome)
            # Failures come back fast: pause longer so an outage does not turn into a busy loop.
            time.sleep(self._pause_s if outcome.code is None else max(self._pause_s, 0.01))

    def start(self) -> LoadThreads:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout + 5)
        for channel in self._channels:
            channel.close()
        with self._lock:
            return list(self.outcomes)

    def run_for(self, seconds: float) -> list[Outcome]:
        time.sleep(seconds)
        return self.stop()


@dataclass(frozen=True, slots=True)
class Cookie:
    """A Cookie header and what the service must answer for it (while Redis is readable)."""

    key: str
    request: pb.ValidateSessionRequest
    verdict: int
    reason: int
    session_id: str = ""
    user_id: str = ""

    def wrong(self, outcome: Outcome) -> str | None:
        """Why ``outcome`` is a wrong answer for this cookie, or ``None`` (failed calls are judged elsewhere)."""
        if outcome.code is not None:
            return None
        got = (outcome.verdict, outcome.reason, outcome.session_id, outcome.user_id)
        expected = (self.verdict, self.reason, self.session_id, self.user_id)
        return None if got == expected else f"{self.key}: got {got}, expected {expected}"


def mint_cookies(server: RedisServer, count: int, *, stored: bool = True, tag: str = "u") -> list[Cookie]:
    """``count`` sessions, each for a user of its own, signed with the vectors' secret.

    ``stored=False`` signs them but writes nothing: the service must answer
    MISSING (SESSION_NOT_FOUND). Distinct users make a reply that reached the
    wrong caller visible.
    """
    signer = Signer(json.loads(CORPUS["settings"]["SESSIONVALIDATOR_SECRETS"]))
    client = server.client()
    cookies = []
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            user = f"{tag}{i}"
            minted = mint_session(signer, user=user, max_age_s=3600)
            request = pb.ValidateSessionRequest(cookie_header_text=minted.cookie_header("connect.sid"))
            if stored:
                pipe.set("sess:" + minted.session_id, minted.stored_json, ex=minted.ttl_s)
                cookies.append(
                    Cookie(user, request, pb.VERDICT_VALID, pb.REASON_SESSION_ACTIVE, minted.session_id, user)
                )
            else:
                cookies.append(
                    Cookie(user, request, pb.VERDICT_MISSING, pb.REASON_SESSION_NOT_FOUND, minted.session_id)
                )
        pipe.execute()
    finally:
        client.close()
    return cookies


def tampered(cookie: Cookie) -> Cookie:
    """The same cookie with its signature's last character changed: BAD_SIGNATURE, no store lookup."""
    header = cookie.request.cookie_header_text
    header = header[:-1] + ("A" if header[-1] != "A" else "B")
    return Cookie(
        "bad-" + cookie.key,
        pb.ValidateSessionRequest(cookie_header_text=header),
        pb.VERDICT_BAD_SIGNATURE,
        pb.REASON_SIGNATURE_MISMATCH,
    )


def internal_errors(validator: ValidatorProcess) -> list[dict[str, Any]]:
    """Log records of bugs (tracebacks) or crashes in the service's output."""
    assert validator.output is not None
    return [
        r for r in validator.output.json_lines() if r.get("event") == "internal_error" or r.get("level") == "CRITICAL"
    ]


_SESSION_KEY = re.compile(rb"\r\nsess:([^\r\n]{1,200})\r\n")


@dataclass
class _Link:
    """One relayed connection: what its client sent first, and whether its bytes flow."""

    opening: bytes = b""  # the client's first bytes (up to 4 KiB): what kind of connection it is
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    hold_after_reply: bool = False


class DelayProxy:
    """A TCP relay to a real redis-server that holds Redis's replies for ``delay`` seconds.

    Bytes from Redis to the client are forwarded ``delay`` seconds after they
    arrived (in order); bytes from the client go through at once. ``delay``
    can be changed at any time and applies to bytes that arrive afterwards.
    The proxy also notes when it first saw each ``sess:<id>`` key go by
    (``seen``), which tells a test that the service had a call in hand.

    :meth:`silence` makes chosen connections go silent as a cut path does:
    their bytes are held in both directions, nothing is closed (no FIN).
    """

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self.seen: dict[str, float] = {}
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: list[_Link] = []
        self.silenced_at: float | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(timeout=5)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def set_delay(self, delay: float) -> None:
        self.delay = delay

    def silence(self, opening_marker: bytes) -> None:
        """Hold every byte of the open connections whose client's first bytes contain ``opening_marker``,
        from just after the next reply reaches the client (a request answered, then silence); connections
        opened later flow. ``silenced_at`` is set when the first of them goes silent."""

        def mark() -> None:
            for link in self._links:
                if opening_marker in link.opening:
                    link.hold_after_reply = True

        self._loop.call_soon_threadsafe(mark)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), timeout=2
            )
        except (OSError, TimeoutError):
            client_writer.close()
            self._tasks.discard(task)
            return
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        link = _Link()
        link.flowing.set()
        self._links.append(link)
        pumps = [
            asyncio.ensure_future(self._up(client_reader, upstream_writer, link)),
            asyncio.ensure_future(self._down_read(upstream_reader, queue)),
            asyncio.ensure_future(self._down_write(queue, client_writer, link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is closing: end quietly (asyncio would log a cancelled stream handler)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, upstream_writer):
                writer.close()
            self._links.remove(link)
            self._tasks.discard(task)

    async def _up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        tail = b""
        while data := await reader.read(65536):
            if len(link.opening) < 4096:
                link.opening += data[: 4096 - len(link.opening)]
            await link.flowing.wait()
            window = tail + data
            now = time.monotonic()
            for match in _SESSION_KEY.finditer(window):
                self.seen.setdefault(match.group(1).decode("latin-1"), now)
            tail = window[-256:]
            writer.write(data)
            await writer.drain()

    async def _down_read(self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + self.delay, data))
        # Upstream closed: let the writer flush what is already due, then stop.
        queue.put_nowait((time.monotonic() + self.delay, b""))
        await asyncio.sleep(3600)

    async def _down_write(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await link.flowing.wait()
            if not data:
                return
            writer.write(data)
            await writer.drain()
            if link.hold_after_reply:
                link.flowing.clear()
                if self.silenced_at is None:
                    self.silenced_at = time.monotonic()

    def open_connections(self) -> int:
        return len(self._tasks)

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()


@contextlib.contextmanager
def delay_proxy(upstream_port: int, delay: float = 0.0) -> Iterator[DelayProxy]:
    proxy = DelayProxy(upstream_port, delay).start()
    try:
        yield proxy
    finally:
        proxy.close()


def wrong_answers(outcomes: list[Outcome], cases: dict[str, dict[str, Any]], not_a_verdict: set[str]) -> list[str]:
    """Every OK answer must be the vector's own; every failure UNAVAILABLE with one of ``not_a_verdict``.

    A failure is only acceptable for a cookie whose answer needs the store.
    """
    wrong = []
    for outcome in outcomes:
        expect = cases[outcome.key]["expect"]
        if outcome.code is not None:
            if outcome.code is not grpc.StatusCode.UNAVAILABLE or outcome.error_reason not in not_a_verdict:
                wrong.append(f"{outcome.key}: {outcome.code} {outcome.error_reason}")
            elif not needs_store(cases[outcome.key]):
                wrong.append(f"{outcome.key}: {outcome.code} for a cookie that needs no store")
            continue
        verdict = pb.Verdict.Name(outcome.verdict or pb.VERDICT_UNSPECIFIED)
        got = (verdict, pb.Reason.Name(outcome.reason or pb.REASON_UNSPECIFIED))
        if got != (expect["verdict"], expect["reason"]):
            wrong.append(f"{outcome.key}: got {got}, expected {(expect['verdict'], expect['reason'])}")
        elif "session_id" in expect and outcome.session_id != expect["session_id"]:
            wrong.append(f"{outcome.key}: session id {outcome.session_id!r}")
        elif "authenticated" in expect and outcome.authenticated is not expect["authenticated"]:
            wrong.append(f"{outcome.key}: authenticated {outcome.authenticated}")
        elif "user" in expect and outcome.user_id != expect["user"]["id"]:
            wrong.append(f"{outcome.key}: user {outcome.user_id!r}")
    return wrong

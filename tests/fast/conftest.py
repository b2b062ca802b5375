"""The fast tier: the real server in this process, on port 0, over the in-memory store.

No redis-server, no subprocess: the whole servicer, health and the shared
vectors run in a few seconds. The server runs on an event loop of its own in
a background thread; tests talk to it with ordinary blocking stubs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from prometheus_client import CollectorRegistry

from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc
from sessionvalidator_service.config import Settings
from sessionvalidator_service.metrics import Metrics
from sessionvalidator_service.server import Service
from sessionvalidator_service.stores.memory import MemoryStore
from tests.conftest import load_vectors
from tests.support.processes import server_kind_env
from tests.support.vectors import seed_memory

CORPUS = load_vectors("validate_session.json")
_T = TypeVar("_T")


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fast-tier-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        """Run ``coroutine`` on the loop and wait for its result."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], None]) -> None:
        """Run ``function`` on the loop's thread and wait for it."""

        async def wrapped() -> None:
            function()

        self.run(wrapped())

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@dataclass
class InProcess:
    """A running in-process service and what it was built from."""

    service: Service
    store: MemoryStore
    metrics: Metrics
    loop: LoopThread

    @property
    def address(self) -> str:
        """Where to dial it."""
        return f"127.0.0.1:{self.service.port}"


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def start(loop_thread: LoopThread, env: dict[str, str], store: MemoryStore) -> InProcess:
    """Start the real service in-process with ``store`` and a metrics registry of its own."""
    settings = Settings.from_env({**server_kind_env(), **env, "SESSIONVALIDATOR_LISTEN": "127.0.0.1:0"})
    metrics = Metrics(CollectorRegistry())
    service = loop_thread.run(Service.start(settings, store=store, metrics=metrics))
    return InProcess(service, store, metrics, loop_thread)


@pytest.fixture(scope="session")
def seeded(loop_thread: LoopThread) -> Iterator[InProcess]:
    """The service configured as the shared vectors say, over an in-memory store seeded with them."""
    store = MemoryStore(user_records=True)
    seed_memory(store, CORPUS)
    running = start(loop_thread, CORPUS["settings"], store)
    yield running
    loop_thread.run(running.service.stop())


@pytest.fixture(scope="session")
def channel(seeded: InProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(seeded.address) as opened:
        yield opened


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.SessionValidatorStub:
    return pb_grpc.SessionValidatorStub(channel)

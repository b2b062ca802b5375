"""Prometheus metrics, served on their own HTTP port (``SESSIONVALIDATOR_METRICS_LISTEN``).

With several workers every process writes its samples to a shared directory
(prometheus_client's multiprocess mode) and the supervisor serves them
merged, so one scrape sees the whole unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from sessionvalidator_service.domain import Reason

__all__ = ["Metrics", "serve_metrics"]

log = logging.getLogger("sessionvalidator.metrics")

# From a cache-fast answer to the default store timeout and beyond.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Tally:
    """Counts taken on the hot path as plain numbers, added to their Prometheus children when read.

    prometheus_client takes a lock (and, with workers, writes a memory-mapped
    file) on every increment: three of them per call cost about as much as
    the rest of our own code. Here a call only adds to a number; a scrape
    (registered as the first collector of the registry, so it runs before the
    metrics are read) and a once-a-second flush on the event loop (what
    workers' merged metrics see) add the growth since the last flush. Only
    the event loop adds; totals only grow and flushes are serialised, so
    nothing is lost or added twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, int] = {}  # Counter child -> total
        self._counted: dict[Any, int] = {}  # Counter child -> total already added
        self._histograms: dict[Any, tuple[tuple[float, ...], list[int], list[float]]] = {}
        self._histogrammed: dict[Any, tuple[list[int], float]] = {}

    def inc(self, child: Any) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0) + 1

    def add(self, child: Any, amount: int) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0) + amount

    def observer(self, child: Any, buckets: tuple[float, ...]) -> Any:
        """Return a function that observes a value into the Histogram ``child``."""
        counts = [0] * (len(buckets) + 1)  # the last is +Inf
        total = [0.0]
        self._histograms[child] = (buckets, counts, total)
        self._histogrammed[child] = ([0] * len(counts), 0.0)

        def observe(value: float) -> None:
            counts[bisect_left(buckets, value)] += 1
            total[0] += value

        return observe

    def flush(self) -> None:
        """Add what was counted since the last flush to the Prometheus children."""
        with self._lock:
            for child, count in list(self._counts.items()):
                done = self._counted.get(child, 0)
                if count > done:
                    child.inc(count - done)
                    self._counted[child] = count
            for child, (_, counts, sums) in self._histograms.items():
                done_counts, done_sum = self._histogrammed[child]
                now_counts, now_sum = list(counts), sums[0]
                if now_counts == done_counts:
                    continue
                for index, (now, done) in enumerate(zip(now_counts, done_counts, strict=True)):
                    if now > done:
                        child._buckets[index].inc(now - done)  # noqa: SLF001 - Histogram.observe's own storage
                child._sum.inc(now_sum - done_sum)  # noqa: SLF001
                self._histogrammed[child] = (now_counts, now_sum)

    def collect(self) -> list[Any]:
        """Flush before the registry reads the metrics; no metrics of its own."""
        self.flush()
        return []

    def describe(self) -> list[Any]:
        """No metrics of its own (and do not flush at registration)."""
        return []


class Metrics:
    """Every metric the service exports; label children are bound once."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._tally = _Tally()
        registry.register(self._tally)
        self.flush = self._tally.flush
        self._flushing: asyncio.Task[None] | None = None
        validations = Counter(
            "sessionvalidator_validations",
            "Credentials judged, by verdict and reason.",
            ["verdict", "reason"],
            registry=registry,
        )
        self._by_reason = {reason: validations.labels(reason.verdict.value, reason.label) for reason in Reason}
        latency = Histogram(
            "sessionvalidator_request_duration_seconds",
            "Time to answer a call, errors included.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._latency = {
            method: self._tally.observer(latency.labels(method), _LATENCY_BUCKETS)
            for method in ("ValidateSession", "ValidateSessions", "Check", "ForwardAuth")
        }
        self._gateway = Counter(
            "sessionvalidator_gateway_decisions",
            "Gateway answers (front: ext_authz or http) by decision (allow, deny, unavailable, rate_limited, error)"
            " and label (verdict, anonymous, or ErrorInfo reason).",
            ["front", "decision", "label"],
            registry=registry,
        )
        self._gateway_children: dict[tuple[str, str, str], Any] = {}
        self.observe_single = self._latency["ValidateSession"]
        store_errors = Counter(
            "sessionvalidator_store_errors",
            "Calls that failed because the session store could not be read, by ErrorInfo reason.",
            ["reason"],
            registry=registry,
        )
        self._store_errors = {r: store_errors.labels(r) for r in ("STORE_UNAVAILABLE", "STORE_TIMEOUT")}
        self.rate_limited = Counter(
            "sessionvalidator_rate_limited",
            "Calls refused with RESOURCE_EXHAUSTED because their peer sent too many bad cookies.",
            registry=registry,
        )
        self._by_index: dict[int, Any] = {}
        self._secret_index = Counter(
            "sessionvalidator_secret_verifications",
            "Signatures verified, by the position of the secret that verified them (0 = current).",
            ["index"],
            registry=registry,
        )
        cache_lookups = Counter(
            "sessionvalidator_session_cache_lookups",
            "Session lookups answered from the session cache (hit) or read from the store (miss); only with a cache.",
            ["result"],
            registry=registry,
        )
        self._cache_hit, self._cache_miss = cache_lookups.labels("hit"), cache_lookups.labels("miss")
        overloaded = Counter(
            "sessionvalidator_overloaded",
            "Calls refused with UNAVAILABLE (OVERLOADED), by cause: too many in progress (in_flight), or a store "
            "timeout while the event loop ran late (event_loop).",
            ["cause"],
            registry=registry,
        )
        self._overloaded = {cause: overloaded.labels(cause) for cause in ("in_flight", "event_loop")}
        self.ready = Gauge(
            "sessionvalidator_ready",
            "1 while the session store answers (readiness SERVING), else 0.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self._server_kind = Gauge(
            "sessionvalidator_server_kind",
            "1 for the server kind that serves (grpcio or native) and why (configured, or auto's reason).",
            ["kind", "reason"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._secret_reloads = Counter(
            "sessionvalidator_secret_reloads",
            "SIGHUP reloads of the secrets, by result.",
            ["result"],
            registry=registry,
        )

    def serving_on(self, kind: str, reason: str) -> None:
        """Record which server kind serves, and why."""
        self._server_kind.labels(kind, reason).set(1)

    def start_flushing(self, interval_s: float = 1.0) -> None:
        """Flush once every ``interval_s`` on the running loop (workers' merged metrics read only what is flushed)."""

        async def flush_every() -> None:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()

        self._flushing = asyncio.get_running_loop().create_task(flush_every(), name="metrics-flush")

    async def stop_flushing(self) -> None:
        """Stop the periodic flush, and flush what is left."""
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
        self.flush()

    def cache_lookups(self, hits: int, misses: int) -> None:
        """Count session lookups answered from the cache and read from the store."""
        if hits:
            self._tally.add(self._cache_hit, hits)
        if misses:
            self._tally.add(self._cache_miss, misses)

    def judged(self, reason: Reason, secret_index: int | None) -> None:
        """Count one answered credential."""
        inc = self._tally.inc
        inc(self._by_reason[reason])
        if secret_index is not None:
            child = self._by_index.get(secret_index)
            if child is None:
                child = self._by_index[secret_index] = self._secret_index.labels(str(secret_index))
            inc(child)

    def gateway_decision(self, front: str, decision: str, label: str) -> None:
        """Count one answer given to a gateway."""
        key = (front, decision, label)
        child = self._gateway_children.get(key)
        if child is None:  # a handful of combinations: bound once each
            child = self._gateway_children[key] = self._gateway.labels(front, decision, label)
        self._tally.inc(child)

    def overloaded(self, cause: str) -> None:
        """Count one call refused for overload."""
        self._overloaded[cause].inc()

    def store_error(self, reason: str) -> None:
        """Count one call failed by the store."""
        self._store_errors[reason].inc()

    def secrets_reloaded(self, *, ok: bool) -> None:
        """Count one SIGHUP reload."""
        self._secret_reloads.labels("ok" if ok else "refused").inc()

    @contextmanager
    def timed(self, method: str) -> Iterator[None]:
        """Observe how long the block takes."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._latency[method](time.perf_counter() - started)


def serve_metrics(listen: str, *, multiprocess: bool = False) -> int:
    """Serve /metrics on ``listen`` (host:port) from a thread; return the bound port."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "::"
    if multiprocess:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        server, _thread = start_http_server(int(port), addr=host, registry=registry)
    else:
        server, _thread = start_http_server(int(port), addr=host)
    bound = int(server.server_address[1])
    log.info("serving metrics", extra={"event": "metrics", "listen": listen, "port": bound, "pid": os.getpid()})
    return bound

"""Telling an overloaded server from a slow store.

The store timeout is measured on the event loop: when the loop is busy (CPU
contention, a flood), a reply that arrived in time is read late and the call
would be blamed on the store. :class:`LoopLag` measures how late the loop runs
its callbacks; while it is late by a good part of the store timeout, a store
timeout is reported as the server's own overload (ErrorInfo OVERLOADED,
``sessionvalidator_overloaded_total{cause="event_loop"}``), so dashboards
page the right team.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["LoopLag"]


class LoopLag:
    """How late the event loop has recently been, sampled every ``interval_s``."""

    def __init__(self, *, interval_s: float = 0.02, window_s: float = 1.0) -> None:
        self._interval = interval_s
        self._window = window_s
        self._worst = 0.0
        self._worst_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            now = loop.time()
            self.observe(now - due, now)

    def observe(self, lag_s: float, now: float) -> None:
        """Record one sample: the loop ran a callback ``lag_s`` late at ``now``."""
        if lag_s >= self._worst or now - self._worst_at > self._window:
            self._worst, self._worst_at = max(lag_s, 0.0), now

    def recent_s(self, now: float | None = None) -> float:
        """Return the worst lag seen within the window (0 when none was recorded)."""
        now = asyncio.get_running_loop().time() if now is None else now
        return self._worst if now - self._worst_at <= self._window else 0.0

"""Manager protocols written once, driven sync or awaited.

Each protocol is a generator that yields the I/O it needs as :class:`Op`
steps (a store read or write, a refresh, a probe) and gets each answer sent
back (an error is thrown back in), as ``httpx.Auth.auth_flow`` yields
requests. :func:`drive` runs a flow with the sync callables, :func:`adrive`
awaits the async ones (they are the drivers of every flow, from
``_runtime.flow``), so an awaited protocol never makes a blocking call on
the event loop. :class:`EventLanes` runs flows started from sync callbacks on
a loop (session listeners inside an awaited refresh): queued in order, one
drainer task per loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._runtime.flow import Flow, Op, call
from .._runtime.flow import run_async as adrive
from .._runtime.flow import run_sync as drive

__all__ = ["EventLanes", "Flow", "Op", "adrive", "drive", "one_step", "run_all"]

log = logging.getLogger("authpulse.manager")

_T = TypeVar("_T")


def one_step(sync: Callable[[], _T], async_: Callable[[], Awaitable[_T]]) -> Flow[_T]:
    """One step as a flow: ``value = yield from one_step(...)`` keeps the type."""
    return call(Op(sync, async_))


def run_all(
    flows: list[Flow[_T]], pool: Callable[[], concurrent.futures.Executor] | None, limit: int
) -> Flow[list[_T]]:
    """Run several flows as one step: sync on ``pool`` (or one after the other),
    async as concurrent tasks, at most ``limit`` at a time."""

    def sync() -> list[_T]:
        if pool is None:
            return [drive(f) for f in flows]
        return list(pool().map(drive, flows))

    async def async_() -> list[_T]:
        sem = asyncio.Semaphore(limit)

        async def one(f: Flow[_T]) -> _T:
            async with sem:
                return await adrive(f)

        return list(await asyncio.gather(*(one(f) for f in flows)))

    return (yield from one_step(sync, async_))


class EventLanes:
    """Flows started by session listeners while an event loop runs on the thread
    that emits (an awaited refresh): queued in order, one drainer task per loop,
    so their store I/O is awaited rather than made on the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[
            asyncio.AbstractEventLoop,
            tuple[collections.deque[Flow[None]], list[asyncio.Task[None]]],
        ] = {}

    def push(self, loop: asyncio.AbstractEventLoop, flow: Flow[None]) -> None:
        with self._lock:
            queue, task = self._lanes.setdefault(loop, (collections.deque(), []))
            queue.append(flow)
            if not task:
                task.append(loop.create_task(self._drain(loop), name="authpulse-events"))

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        queue, _ = self._lanes[loop]
        while True:
            with self._lock:
                if not queue:
                    del self._lanes[loop]
                    return
                flow = queue.popleft()
            try:
                await adrive(flow)
            except Exception as exc:  # a listener's work must never kill the lane
                log.exception(
                    "session event handling failed (%s)",
                    type(exc).__name__,
                    extra={
                        "authpulse_event": "listener_failed",
                        "authpulse_error": type(exc).__name__,
                    },
                )

    async def settle(self) -> None:
        """Wait until this loop's queued flows have run."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                lane = self._lanes.get(loop)
            if lane is None or lane[1][0] is asyncio.current_task():
                return
            await asyncio.shield(lane[1][0])

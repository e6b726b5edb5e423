"""The refresh lock held through a refresh: its renewal every third of its
TTL (a thread for the sync driver, a task for the async one) and the
releases sent when no time was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .._stores.base import (
    StoreError,
    StoreLock,
)

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = ["RELEASING", "astart_renewal", "released", "renewing", "start_renewal"]

#: lock releases sent when no time was left, kept referenced until they land
RELEASING: set[asyncio.Future[None]] = set()


def released(task: asyncio.Future[None]) -> None:
    RELEASING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the lock expires by its TTL if the release failed


#: how often a lock renewal looks at the clock (real seconds, at most)
_RENEW_TICK = 0.05


def _renew_due(clock: Clock, ttl: float) -> Callable[[], bool]:
    """Whether the next renewal of a lock with ``ttl`` is due: a third of the TTL
    has passed on ``clock`` (the store's TTLs run on it) or in real seconds.

    Real time counts too, on purpose: Redis runs its TTLs on the server's own
    clock, whatever clock the caller injected. The renewal only looks at the
    clock and never sleeps on it, because a :class:`~authpulse.testing.FakeClock`
    moves when slept on and a renewal running beside a refresh must not move it.
    """
    period = ttl / 3
    state = [clock.monotonic(), time.monotonic()]

    def due() -> bool:
        clock_now, real_now = clock.monotonic(), time.monotonic()
        if clock_now - state[0] < period and real_now - state[1] < period:
            return False
        state[0], state[1] = clock_now, real_now
        return True

    return due


def start_renewal(lock: StoreLock, ttl: float, clock: Clock) -> Callable[[], None]:
    """Renew ``lock`` every third of its TTL (see :func:`_renew_due`) in a helper
    thread, until the function returned is called."""
    stop = threading.Event()
    due = _renew_due(clock, ttl)
    tick = min(ttl / 3, _RENEW_TICK)

    def loop() -> None:
        while not stop.wait(tick):
            if not due():
                continue
            try:
                if not lock.renew():
                    return
            except StoreError:
                return

    threading.Thread(target=loop, name="authpulse-lock-renew", daemon=True).start()
    return stop.set


async def astart_renewal(lock: StoreLock, ttl: float, clock: Clock) -> Callable[[], None]:
    """:func:`start_renewal` as a task; the function returned cancels it
    (without awaiting it: a silent store may never let it unwind)."""
    task = asyncio.get_running_loop().create_task(_arenew(lock, ttl, clock))

    def stop() -> None:
        task.cancel()

    return stop


@contextlib.contextmanager
def renewing(lock: StoreLock, ttl: float, clock: Clock, renew: bool = True) -> Iterator[None]:
    """Renew ``lock`` while the body runs (see :func:`start_renewal`); with
    ``renew`` false, no thread."""
    stop = start_renewal(lock, ttl, clock) if renew else None
    try:
        yield
    finally:
        if stop is not None:
            stop()


async def _arenew(lock: StoreLock, ttl: float, clock: Clock) -> None:
    due = _renew_due(clock, ttl)
    tick = min(ttl / 3, _RENEW_TICK)
    with contextlib.suppress(StoreError):
        while True:
            await asyncio.sleep(tick)  # real ticks: see _renew_due
            if due() and not await lock.arenew():
                return

"""Clocks. The core never reads time; shells read it through a ``Clock``."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What authpulse needs to know about time.

    ``now()`` is wall-clock time in seconds since the epoch (token expiry is
    wall-clock); ``monotonic()`` measures durations and deadlines; ``sleep``
    and ``asleep`` wait. :class:`authpulse.testing.FakeClock` implements all
    four without waiting.
    """

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic``, ``time.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


# The public names defined here show the module they are imported from.
for _public in (
    Clock,
    SystemClock,
):
    _public.__module__ = "authpulse"
del _public

from __future__ import annotations

import asyncio
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock for tests: time moves when you ``advance`` it.

    ``sleep``/``asleep`` advance the clock instead of waiting, so code that
    backs off returns at once and the test sees the time it "slept"
    (recorded in :attr:`sleeps`). ``now()`` starts at ``start`` (epoch
    seconds), ``monotonic()`` at 0. ``skew_wall`` moves only the wall clock
    (to simulate a local clock that is wrong).
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = float(start)
        self._mono = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __repr__(self) -> str:
        return f"FakeClock(now={self._wall:.3f}, monotonic={self._mono:.3f})"

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards; use skew_wall()")
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def skew_wall(self, seconds: float) -> None:
        """Move only the wall clock (either direction), as a badly set clock would."""
        with self._lock:
            self._wall += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


# The public names defined here show the module they are imported from.
for _public in (FakeClock,):
    _public.__module__ = "authpulse.testing"
del _public

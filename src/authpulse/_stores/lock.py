"""Named store locks: :class:`StoreLock` over a store's three atomic lock operations.

The waiting (try, sleep on the clock, try again until the timeout) is written
once, as a generator that yields what to do next; :meth:`StoreLock.acquire`
and :meth:`StoreLock.aacquire` drive it with the sync and the async backend
calls. The lock-record rules of the stores that keep lock records themselves
(memory, SQLite) are pure functions here; Redis runs the same rules as Lua
scripts on its server.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Generator
from typing import Final, NamedTuple, Protocol

from .._core.errors import ConfigurationError, UsageError
from .._core.model import check_id
from .._runtime.clock import Clock, SystemClock

__all__ = [
    "MAX_LOCK_NAME",
    "LockBackend",
    "LockRecord",
    "StoreLock",
    "lock_released",
    "lock_renewed",
    "lock_taken",
]

#: the longest lock name (see check_id for the characters it may hold)
MAX_LOCK_NAME: Final = 200
_POLL_MIN = 0.005
_POLL_MAX = 0.1


def _check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ConfigurationError("lock ttl must be a finite number of seconds")
    if ttl <= 0:
        raise ConfigurationError("lock ttl must be positive")
    return float(ttl)


# ------------------------------------------------------------------ lock records


class LockRecord(NamedTuple):
    """A lock as a store keeps it: its holder (``None``: free), the last fence
    handed out for its name, and when the holder's TTL runs out."""

    holder: str | None
    fence: int
    expires_at: float


def _holds(current: LockRecord | None, holder: str, now: float) -> bool:
    return current is not None and current.holder == holder and current.expires_at > now


def lock_taken(
    current: LockRecord | None, holder: str, now: float, ttl: float
) -> LockRecord | None:
    """The record once ``holder`` takes the lock, or ``None`` while another
    holder's TTL runs. The fence grows by one with every acquisition."""
    if current is not None and current.holder is not None and current.expires_at > now:
        return None
    return LockRecord(holder, (current.fence if current is not None else 0) + 1, now + ttl)


def lock_renewed(
    current: LockRecord | None, holder: str, now: float, ttl: float
) -> LockRecord | None:
    """The record with a fresh TTL, or ``None`` unless ``holder`` holds an unexpired lock."""
    if not _holds(current, holder, now) or current is None:
        return None
    return LockRecord(holder, current.fence, now + ttl)


def lock_released(current: LockRecord | None, holder: str, now: float) -> LockRecord | None:
    """The free record (keeping its fence), or ``None`` unless ``holder`` holds
    an unexpired lock: a holder whose TTL ran out has nothing left to release."""
    if not _holds(current, holder, now) or current is None:
        return None
    return LockRecord(None, current.fence, 0.0)


# ------------------------------------------------------------------- the handle


class LockBackend(Protocol):
    """The three atomic operations a store implements for :class:`StoreLock`.

    ``lock_try`` takes the lock for ``holder`` if it is free or its TTL has
    run out and returns the new fence (strictly greater than every fence
    handed out before for ``name``), else ``None``. ``lock_release`` and
    ``lock_renew`` act only if ``holder`` still holds an unexpired lock.
    """

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    def lock_release(self, name: str, holder: str) -> bool: ...

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool: ...

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    async def alock_release(self, name: str, holder: str) -> bool: ...

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool: ...


#: what the acquire flow asks its driver for: ``None`` is one ``lock_try`` (the
#: reply is its fence), a float a sleep of that many seconds of the clock, and
#: a bool, its last step, the outcome
_Wait = Generator[float | bool | None, int | None, None]


class StoreLock:
    """A named lock in a store, with a TTL and a fencing token.

    Mutual exclusion holds between every handle on the same store data
    (threads, processes, hosts). A holder that dies without releasing loses
    the lock when ``ttl`` seconds have passed; call :meth:`renew` to keep it
    longer. :attr:`fence` grows strictly with every acquisition of ``name``,
    whoever acquires it: pass it to ``put_token(..., fence=lock.fence)`` so a
    holder whose lock expired cannot overwrite a newer holder's token.

    ``name`` is 1 to 200 printable characters without whitespace or control
    characters (the rule session ids follow); anything else raises
    :class:`ConfigurationError`.

    One handle belongs to one thread or task at a time; make one handle per
    contender (``store.lock(name, ttl)``). ``acquire`` timeouts are seconds
    of ``clock`` (the store's clock; default: the real clock), which also
    does the waiting between tries, so a :class:`~authpulse.testing.FakeClock`
    runs a wait without waiting; ``None`` waits until the lock is free. Works
    as a context manager, sync (``with``) and async (``async with``).
    """

    def __init__(
        self, backend: LockBackend, name: str, ttl: float, *, clock: Clock | None = None
    ) -> None:
        self._backend = backend
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.name = check_id(name, "lock name", MAX_LOCK_NAME)
        self.ttl = _check_ttl(ttl)
        self._holder: str | None = None
        self._fence: int | None = None

    def __repr__(self) -> str:
        return (
            f"StoreLock(name={self.name!r}, ttl={self.ttl}, held={self.held}, fence={self._fence})"
        )

    @property
    def held(self) -> bool:
        """True while this handle believes it holds the lock (it may have expired
        since: :meth:`renew` tells for sure)."""
        return self._holder is not None

    @property
    def fence(self) -> int:
        """The fencing token of this handle's latest acquisition."""
        if self._fence is None:
            raise UsageError(f"lock {self.name!r} has not been acquired yet: it has no fence")
        return self._fence

    def _start(self) -> str:
        if self._holder is not None:
            raise UsageError(f"lock {self.name!r} is already held by this handle")
        return secrets.token_hex(16)

    def _wait(self, holder: str, timeout: float | None) -> _Wait:
        """The acquire protocol, I/O-free: yields ``None`` for a try (sent back its
        fence) or the seconds to sleep, and at last whether the lock was taken."""
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + max(timeout, 0.0)
        delay = _POLL_MIN
        while True:
            fence = yield None
            if fence is not None:
                self._holder, self._fence = holder, fence
                yield True
            remaining = delay if deadline is None else deadline - clock.monotonic()
            if remaining <= 0:
                yield False
            yield min(delay, remaining)
            delay = min(delay * 2, _POLL_MAX)

    def _settle(self, renewed: bool) -> bool:
        if not renewed:
            self._holder = None
        return renewed

    def _do(self, holder: str, step: float | None) -> int | None:
        if step is None:
            return self._backend.lock_try(self.name, holder, self.ttl)
        self._clock.sleep(step)
        return None

    async def _ado(self, holder: str, step: float | None) -> int | None:
        if step is None:
            return await self._backend.alock_try(self.name, holder, self.ttl)
        await self._clock.asleep(step)
        return None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (``None``: no limit,
        ``0``: one try). Returns whether it was taken."""
        holder = self._start()
        flow = self._wait(holder, timeout)
        step = next(flow)
        while not isinstance(step, bool):
            step = flow.send(self._do(holder, step))
        return step

    # the twin of acquire(timeout): same signature on purpose
    async def aacquire(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Async :meth:`acquire`."""
        holder = self._start()
        flow = self._wait(holder, timeout)
        step = next(flow)
        while not isinstance(step, bool):
            step = flow.send(await self._ado(holder, step))
        return step

    def release(self) -> None:
        """Give the lock up (nothing happens if it was lost meanwhile)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            self._backend.lock_release(self.name, holder)

    async def arelease(self) -> None:
        """Async :meth:`release`."""
        holder, self._holder = self._holder, None
        if holder is not None:
            await self._backend.alock_release(self.name, holder)

    def renew(self) -> bool:
        """Restart the TTL. False (and no longer held) if the lock was lost."""
        holder = self._holder
        return holder is not None and self._settle(
            self._backend.lock_renew(self.name, holder, self.ttl)
        )

    async def arenew(self) -> bool:
        """Async :meth:`renew`."""
        holder = self._holder
        return holder is not None and self._settle(
            await self._backend.alock_renew(self.name, holder, self.ttl)
        )

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> StoreLock:
        await self.aacquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.arelease()


# The public names defined here show the module they are imported from.
for _public in (StoreLock,):
    _public.__module__ = "authpulse"
del _public

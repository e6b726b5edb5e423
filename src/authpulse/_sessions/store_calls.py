"""The store calls of a coordinated refresh: each one bounded by what the
refresh's deadline leaves, and the store's availability they show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from .._runtime.flow import Op
from .._stores.base import (
    CorruptRecordError,
    SessionStore,
    StoredToken,
    StoreError,
    StoreLock,
    StoreUnavailableError,
)
from .._stores.bounded import acall_within, call_within, start_and_forget
from .lock_renewal import RELEASING, released

if TYPE_CHECKING:
    from .._runtime.clock import Clock

__all__ = ["StoreCalls"]

log = logging.getLogger("authpulse.coordination")

T = TypeVar("T")


class StoreCalls:
    """The store calls of one :class:`~authpulse._sessions.coordination.Coordinator`.

    ``budget`` bounds the time a refresh spends in store calls (``None``:
    unbounded); ``spent`` is what the current refresh has spent (a refresh is
    never concurrent with another of the same coordinator). ``store_ok``
    tells whether the last store operation worked; ``on_store_state`` hears
    every change of it.
    """

    __slots__ = (
        "_on_store_state",
        "_retry_store_at",
        "budget",
        "clock",
        "key",
        "spent",
        "store",
        "store_ok",
    )

    def __init__(
        self,
        store: SessionStore,
        key: str,
        *,
        clock: Clock,
        budget: float | None,
        on_store_state: Callable[[bool, str | None], None],
    ) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.budget = budget
        self.spent = 0.0
        self.store_ok = True
        self._on_store_state = on_store_state
        self._retry_store_at = float("-inf")

    # -- store calls within the deadline -------------------------------------

    def left(self) -> float | None:
        return None if self.budget is None else self.budget - self.spent

    def call(self, fn: Callable[[], T], what: str) -> T:
        if self.budget is None:
            return fn()
        began = self.clock.monotonic()
        try:
            return call_within(fn, self.budget - self.spent, what)
        finally:
            self.spent += self.clock.monotonic() - began

    async def acall(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        if self.budget is None:
            return await make()
        began = self.clock.monotonic()
        try:
            return await acall_within(make, self.budget - self.spent, what)
        finally:
            self.spent += self.clock.monotonic() - began

    def try_lock(self, lock: StoreLock) -> bool:
        """One try at ``lock``; a try that answers after we gave up on it lets go."""
        gave_up = threading.Event()

        def take() -> bool:
            taken = lock.acquire(timeout=0)
            if taken and gave_up.is_set():
                lock.release()
                return False
            return taken

        try:
            return self.call(take, "take the refresh lock")
        except StoreUnavailableError:
            gave_up.set()
            raise

    async def atry_lock(self, lock: StoreLock) -> bool:
        """Async :meth:`try_lock` (a cancelled try may leave the lock to its TTL)."""
        return await self.acall(lambda: lock.aacquire(timeout=0), "take the refresh lock")

    def release(self, lock: StoreLock) -> None:
        left = self.left()
        if left is not None and left <= 0:
            start_and_forget(lock.release, "release")  # else the lock expires by its TTL
            return
        with contextlib.suppress(StoreError):
            self.call(lock.release, "release the refresh lock")

    async def arelease(self, lock: StoreLock) -> None:
        left = self.left()
        if left is not None and left <= 0:
            task = asyncio.ensure_future(lock.arelease())
            RELEASING.add(task)
            task.add_done_callback(released)
            return
        with contextlib.suppress(StoreError):
            await self.acall(lock.arelease, "release the refresh lock")

    # -- bookkeeping --------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        self._retry_store_at = self.clock.monotonic() + 5.0
        if self.store_ok:
            self.store_ok = False
            log.warning(
                "store unavailable (%s); refreshing process-locally",
                type(exc).__name__,
                extra={
                    "authpulse_event": "store_unavailable",
                    "authpulse_store_key": self.key,
                    "authpulse_error": type(exc).__name__,
                },
            )
            self._on_store_state(False, type(exc).__name__)

    def worked(self) -> None:
        if not self.store_ok:
            self.store_ok = True
            log.info(
                "store available again",
                extra={"authpulse_event": "store_recovered", "authpulse_store_key": self.key},
            )
            self._on_store_state(True, None)

    def skip_store(self) -> bool:
        return not self.store_ok and self.clock.monotonic() < self._retry_store_at

    def unusable(self, exc: CorruptRecordError) -> CorruptRecordError:
        """Log ``exc`` and keep it without its traceback (the store's frames held
        the record)."""
        exc = exc.with_traceback(None)
        exc.__context__ = None
        log.warning(
            "stored token set unusable (%s: %s); asking the source afresh",
            type(exc).__name__,
            exc.reason,
            extra={
                "authpulse_event": "token_record_unusable",
                "authpulse_store_key": self.key,
                "authpulse_error": type(exc).__name__,
            },
        )
        return exc

    def op(self, sync: Callable[[], T], make: Callable[[], Awaitable[T]], what: str) -> Op[T]:
        """A store call within the deadline, blocking or awaited."""
        return Op(partial(self.call, sync, what), partial(self.acall, make, what))

    def get_op(self) -> Op[StoredToken | None]:
        store, key = self.store, self.key
        return self.op(
            partial(store.get_token, key), partial(store.aget_token, key), "read the token"
        )

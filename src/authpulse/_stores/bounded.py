"""Store calls bounded by the deadline of the refresh they serve.

A store that answers late, or never, must not hold a refresh past its
deadline. Blocking store calls run in a helper thread that the caller waits
for no longer than the time left; coroutine store calls run as a task that is
cancelled when the time is up. Either way the caller gets
:class:`StoreUnavailableError` and goes on (the refresh falls back to
process-local, see ``_coordination``); the abandoned call finishes, or fails,
on its own.

In-process stores (``MemoryStore``) cannot hang; their calls run directly.

These bounds are real seconds on purpose, the one place where a refresh does
not wait on its injected clock: they bound a store that hangs in real time,
which a fake clock standing still would never give up on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .base import StoreUnavailableError

__all__ = ["acall_within", "call_within", "start_and_forget"]

T = TypeVar("T")

#: coroutine calls given up on, kept referenced until they unwind
_ABANDONED: set[asyncio.Task[Any]] = set()


def _late(what: str, seconds: float) -> StoreUnavailableError:
    if seconds <= 0:
        return StoreUnavailableError(f"no time left for the store to {what} (refresh deadline)")
    return StoreUnavailableError(
        f"the store did not {what} within the {seconds:.3g} s the refresh deadline left"
    )


def call_within(fn: Callable[[], T], seconds: float | None, what: str) -> T:
    """``fn()``, or :class:`StoreUnavailableError` once ``seconds`` have passed.

    ``None`` calls ``fn`` directly (unbounded). With no time left the call is
    not started. A late call goes on in its daemon thread; its result is dropped.
    """
    if seconds is None:
        return fn()
    if seconds <= 0:
        raise _late(what, seconds)
    box: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    t = threading.Thread(target=run, name="authpulse-store-call", daemon=True)
    t.start()
    t.join(seconds)
    if box:
        return box[0]
    if failure:
        exc = failure.pop()
        try:
            raise exc
        finally:
            del exc
    raise _late(what, seconds)


def start_and_forget(fn: Callable[[], object], what: str) -> None:
    """Run ``fn`` in a daemon thread without waiting (a lock release when no time
    is left: the lock expires by its TTL if the release never lands)."""
    threading.Thread(target=fn, name=f"authpulse-store-{what}", daemon=True).start()


async def acall_within(make: Callable[[], Awaitable[T]], seconds: float | None, what: str) -> T:
    """Async :func:`call_within`: the call runs as a task, cancelled when late."""
    if seconds is None:
        return await make()
    if seconds <= 0:
        raise _late(what, seconds)

    async def run() -> T:
        return await make()

    task = asyncio.ensure_future(run())
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()  # do not wait for it to unwind: a silent server may never answer the cancel
    _ABANDONED.add(task)
    task.add_done_callback(_forget)
    raise _late(what, seconds)


def _forget(task: asyncio.Task[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved

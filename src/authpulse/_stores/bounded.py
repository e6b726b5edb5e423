"""Store calls bounded by the deadline of the refresh they serve.

A store that answers late, or never, must not hold a refresh past its
deadline. Blocking store calls run in a helper thread that the caller waits
for no longer than the time left (helpers are kept for the next calls and
leave after :data:`_HELPER_IDLE` idle seconds; a call stuck in one never
delays another, which gets a helper of its own); coroutine store calls run as a task that is
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
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .base import StoreUnavailableError

__all__ = ["acall_within", "call_within", "start_and_forget"]

T = TypeVar("T")

log = logging.getLogger("authpulse.store")

#: coroutine calls given up on, kept referenced until they unwind
_ABANDONED: set[asyncio.Task[Any]] = set()


def _late(what: str, seconds: float) -> StoreUnavailableError:
    if seconds <= 0:
        return StoreUnavailableError(f"no time left for the store to {what} (refresh deadline)")
    return StoreUnavailableError(
        f"the store did not {what} within the {seconds:.3g} s the refresh deadline left"
    )


#: real seconds an idle helper thread waits for another call before it ends
_HELPER_IDLE = 30.0


class _Helpers:
    """Daemon threads that run blocking store calls, reused from call to call.

    A call goes to an idle helper if there is one, else to a new helper: a
    call stuck on a silent store holds only its own helper.
    """

    __slots__ = ("_idle", "_jobs", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        #: helpers waiting for a job and not yet promised one
        self._idle = 0

    def run(self, job: Callable[[], None], name: str) -> None:
        """Start ``job`` (which must not raise) in a helper."""
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1  # promised this job
        self._jobs.put(job)
        if not reuse:
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            try:
                job = jobs.get(timeout=_HELPER_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no job is promised to this helper: leave
                        self._idle -= 1
                        return
                continue  # a job was promised just now: it is on its way
            job()
            del job
            with self._lock:
                self._idle += 1

    def forked(self) -> None:
        """In a forked child, where the parent's helpers do not run."""
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._idle = 0


_HELPERS = _Helpers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_HELPERS.forked)


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
    done = threading.Lock()
    done.acquire()

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
        finally:
            done.release()

    _HELPERS.run(run, "authpulse-store-call")
    done.acquire(timeout=seconds)
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
    """Run ``fn`` in a helper thread without waiting (a lock release when no time
    is left: the lock expires by its TTL if the release never lands)."""

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # nobody waits for it: the lock expires by its TTL
            log.warning(
                "the store could not %s (%s); the lock expires by its TTL",
                what,
                type(exc).__name__,
                extra={
                    "authpulse_event": "store_call_failed",
                    "authpulse_error": type(exc).__name__,
                },
            )

    _HELPERS.run(run, f"authpulse-store-{what}")


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

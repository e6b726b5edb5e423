"""The single-flight refresh of a :class:`~authpulse.Session`, written once.

One ``concurrent.futures.Future`` stands for the refresh in progress (the
*flight*). The leader is whoever found no flight: a thread runs the refresh
in place, a coroutine runs it as a task of its own (so a cancelled waiter
never cancels it). Everyone else waits for the same future, threads with
``result()``, coroutines on a loop future of their own that the flight's
done callback completes (in place on the loop's thread, no extra hop); every
waiter gives up after the refresh deadline plus :data:`_WAIT_GRACE`. A STALE
token starts a refresh in the background and keeps being served; only an
EXPIRED token makes callers wait.

The waiting and the refresh are flows (:mod:`authpulse._runtime.flow`): generators
that yield their I/O steps (the token request, the store's protocol, the
JWT check, the ``on_token_update`` hook) for the sync or the async driver.
The bookkeeping it drives (claiming the flight, installing a token,
recording a failure) is its base, :class:`~.flight_state.FlightState`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .._core.errors import RefreshError, UsageError
from .._core.tokens import TokenSet
from .._runtime.flow import Flow, Op, run_async, run_sync
from .fetch import Fetched, either_op, fetch_flow
from .flight_state import FlightState, RefreshReason, _Current

if TYPE_CHECKING:
    from .._stores.base import CorruptRecordError
    from .coordination import Coordinator

__all__ = ["RefreshReason", "SingleFlight"]

#: how much longer than the refresh's deadline a waiter waits for it (real seconds)
_WAIT_GRACE = 5.0


class SingleFlight(FlightState):
    """The refresh machinery of :class:`~authpulse.Session`: the waiting, the
    refresh flow, and the sync and async shells with their background
    refreshes (a base of the session, over the token state of
    :class:`~.flight_state.FlightState`)."""

    __slots__ = ("_tasks", "_threads")

    # created on first use: most sessions never start a background refresh
    _tasks: set[asyncio.Task[Any]] | None
    _threads: set[threading.Thread] | None

    if TYPE_CHECKING:
        _coord: Coordinator | None
        _hook: Callable[[TokenSet], object] | None

    def __init__(self) -> None:
        super().__init__()
        self._tasks = None
        self._threads = None

    def _usable_now(self, background: Callable[[], None]) -> _Current | None:
        """The current token if it can be served now (starting a ``background``
        refresh while it is STALE), or ``None``: the caller must wait."""
        cur = self._cur
        if self._closed:
            self._check_open()
        if cur is not None:
            now = self.clock.now()
            if now < cur.refresh_at:
                return cur
            if now < cur.expires_at:
                background()
                return cur
        return None

    def _waiting(
        self,
        reason: RefreshReason,
        rejected: int | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Flow[_Current]:
        """Join the refresh (leading it if none runs) and wait for its token.

        A sync leader runs the refresh in place; an async one runs it as a
        task of its own, so that a cancelled waiter never cancels it. Every
        waiter waits at most ``retry.deadline`` plus a grace period.
        """
        claimed, leader = self._claim_emit(reason, rejected, loop)
        if isinstance(claimed, _Current):
            return claimed
        if leader:
            if loop is None:  # the sync driver: the refresh runs in place, in this flow
                yield from self._refresh(claimed, reason)
                return claimed.result()  # set by the refresh: no wait
            else:
                yield Op(_no_sync_side, partial(self._aspawn, claimed, reason, loop))
        elif loop is None and self._flight_loop is not None:
            # only a sync waiter of a flight on a loop can block that loop (a
            # thread on it reads the flight's loop while that loop is not running)
            yield Op(self._check_not_on_flight_loop, _nothing)
        timeout = self.retry.deadline + _WAIT_GRACE
        cur: _Current = yield Op(
            partial(_result, claimed, timeout), partial(_aresult, claimed, timeout)
        )
        return cur

    def _check_not_on_flight_loop(self) -> None:
        running = asyncio._get_running_loop()
        if running is not None and running is self._flight_loop:
            raise UsageError(
                "a sync token call inside the event loop cannot wait for a "
                "refresh running on that loop; use atoken()"
            )

    def _refresh(
        self, fut: concurrent.futures.Future[_Current], reason: RefreshReason
    ) -> Flow[None]:
        """One refresh by the leader: fetch (through the store's protocol when
        there is a store), accept, call the hook, install; the outcome goes to
        ``fut``, which every waiter shares."""
        try:
            coord = self._coord
            discarded: CorruptRecordError | None = None
            written = False
            if coord is None:
                fetched = yield from self._fetching(self._current_for_fetch(), None)
                adopted = False
            else:
                out = yield from coord.flow(
                    reason, self._current_for_fetch(), self._rejected_access(reason), self._fetching
                )
                fetched, adopted = out.fetched, out.adopted
                discarded, written = out.discarded, out.version is not None
            token: TokenSet
            if self._verifier is None:  # no I/O: no step for the driver
                token = self._accept(fetched)
            else:
                token = yield Op(partial(self._accept, fetched), partial(self._aaccept, fetched))
            if self._hook is not None and not adopted:
                try:
                    yield either_op(self._hook, token, offload=False)
                except Exception as exc:
                    self._hook_failed(exc)
            cur = self._install(fetched, reason, adopted=adopted)
            if discarded is not None:
                self._record_replaced(discarded, written=written)
        except BaseException as exc:
            self._fail(exc, reason)
            fut.set_exception(self._as_waiter_error(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            fut.set_result(cur)

    def _fetching(self, current: TokenSet | None, afresh: str | None) -> Flow[Fetched]:
        return fetch_flow(self.source, self._context(current, afresh))

    async def _aaccept(self, fetched: Fetched) -> TokenSet:
        # verification may fetch the JWKS over blocking HTTP: keep it off the event loop
        return await asyncio.to_thread(self._accept, fetched)

    def _rejected_access(self, reason: RefreshReason) -> SecretStr | None:
        cur = self._cur
        return SecretStr(cur.access) if reason == "rejected" and cur is not None else None

    def _background_due(self) -> bool:
        """Whether a background refresh may start now (none runs, none failed lately)."""
        if self._flight is not None or self._closed:
            return False
        return self.clock.monotonic() >= self._next_bg_attempt

    # -- sync shell ---------------------------------------------------------------------

    def _fresh(self) -> _Current | None:
        """The current token if it is FRESH, else ``None`` (the auth flow's hot
        path: no step for the driver)."""
        cur = self._cur
        if cur is not None and not self._closed and self.clock.now() < cur.refresh_at:
            return cur
        return None

    def _get_sync(self) -> _Current:
        cur = self._cur
        if cur is not None and not self._closed and self.clock.now() < cur.refresh_at:
            return cur  # FRESH: the hot path
        return self._usable_now(self._background_sync) or self._wait_sync("expired")

    def _wait_sync(self, reason: RefreshReason, rejected: int | None = None) -> _Current:
        return run_sync(self._waiting(reason, rejected, None))

    def _run_sync(self, fut: concurrent.futures.Future[_Current], reason: RefreshReason) -> None:
        run_sync(self._refresh(fut, reason))

    def _background_sync(self) -> None:
        if not self._background_due():
            return
        claimed, leader = self._claim_emit("stale", None, None)
        if not leader or isinstance(claimed, _Current):
            return
        fut = claimed

        threads = self._threads
        if threads is None:
            threads = self._threads = set()

        def run() -> None:
            try:
                self._run_sync(fut, "stale")
            finally:
                threads.discard(threading.current_thread())

        t = threading.Thread(target=run, name=f"authpulse-refresh-{self.name}", daemon=True)
        threads.add(t)
        t.start()

    # -- async shell --------------------------------------------------------------------

    async def _get_async(self) -> _Current:
        cur = self._cur
        if cur is not None and not self._closed and self.clock.now() < cur.refresh_at:
            return cur  # FRESH: the hot path
        return self._usable_now(self._background_async) or await self._wait_async("expired")

    async def _wait_async(self, reason: RefreshReason, rejected: int | None = None) -> _Current:
        return await run_async(self._waiting(reason, rejected, asyncio.get_running_loop()))

    async def _aspawn(
        self,
        fut: concurrent.futures.Future[_Current],
        reason: RefreshReason,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self._spawn(fut, reason, loop or asyncio.get_running_loop())

    def _spawn(
        self,
        fut: concurrent.futures.Future[_Current],
        reason: RefreshReason,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        task = loop.create_task(self._run_async(fut, reason), name=f"authpulse-refresh-{self.name}")
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_async(
        self, fut: concurrent.futures.Future[_Current], reason: RefreshReason
    ) -> None:
        await run_async(self._refresh(fut, reason))

    def _background_async(self) -> None:
        if not self._background_due():
            return
        loop = asyncio.get_running_loop()
        claimed, leader = self._claim_emit("stale", None, loop)
        if leader and not isinstance(claimed, _Current):
            self._spawn(claimed, "stale", loop)

    # -- used by the auth flow ------------------------------------------------------------

    def _after_401_sync(self, rejected: int) -> _Current:
        return self._wait_sync("rejected", rejected)

    async def _after_401_async(self, rejected: int) -> _Current:
        return await self._wait_async("rejected", rejected)


def _result(fut: concurrent.futures.Future[_Current], seconds: float) -> _Current:
    try:
        return fut.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise RefreshError("timed out waiting for the token refresh") from None


async def _aresult(fut: concurrent.futures.Future[_Current], seconds: float) -> _Current:
    """Wait for ``fut`` on this loop: one loop future, woken in place when the
    flight ends on this loop's thread (``call_soon_threadsafe`` only from
    another thread), one timer for the timeout. A cancelled waiter cancels only
    its own loop future, never the flight."""
    if fut.done():
        return fut.result()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[_Current] = loop.create_future()
    timer = loop.call_later(seconds, _time_out, waiter)
    fut.add_done_callback(partial(_relay, loop, waiter))
    try:
        return await waiter
    finally:
        timer.cancel()


def _relay(
    loop: asyncio.AbstractEventLoop,
    waiter: asyncio.Future[_Current],
    fut: concurrent.futures.Future[_Current],
) -> None:
    """``fut``'s done callback: hand its outcome to ``waiter`` (directly on the
    loop's own thread, else through ``call_soon_threadsafe``)."""
    if asyncio._get_running_loop() is loop:
        _copy(waiter, fut)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_copy, waiter, fut)


def _copy(waiter: asyncio.Future[_Current], fut: concurrent.futures.Future[_Current]) -> None:
    if waiter.done():  # timed out or cancelled meanwhile
        return
    if fut.cancelled():
        waiter.cancel()
        return
    exc = fut.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(fut.result())


def _time_out(waiter: asyncio.Future[_Current]) -> None:
    if not waiter.done():
        waiter.set_exception(RefreshError("timed out waiting for the token refresh"))


async def _nothing() -> None:
    return None


def _no_sync_side() -> None:  # pragma: no cover - only the async driver is given this op
    raise AssertionError("an async-only step reached the sync driver")

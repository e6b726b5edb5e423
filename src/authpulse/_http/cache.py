"""A stale-while-revalidate response cache for httpx, on cachetools: the two transports.

:class:`CacheTransport` and :class:`AsyncCacheTransport` wrap another
transport. The decisions — may this request use the cache, may this
response be stored and for how long, how fresh is an entry at ``now``, what
is the key — are pure functions (``cache_policy``); the answer to a request
(``cache_core``) and a revalidation (``cache_revalidation``) are each one
flow (``_runtime/flow_http``) that both twins drive. The twins, here, differ
only in the driver and in where a background revalidation runs (a thread,
or a task on the caller's loop).

The store, :class:`ResponseCache` (``cache_store``), is shared and
thread-safe: one lock guards the cachetools LRU, the indexes, the counters
and the set of keys being revalidated, and it is never held across I/O.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, overload

from .._runtime.backend import (
    Httpx2AsyncBaseTransport,
    Httpx2BaseTransport,
    HttpxAsyncBaseTransport,
    HttpxBaseTransport,
    httpx,
)
from .._runtime.flow_http import adrive, drive, inner_is
from .cache_core import _ASYNC_TRANSPORTS, _SYNC_TRANSPORTS
from .cache_policy import (
    CacheFreshness,
    CachePolicy,
    _Entry,
    authorization_identity,
    cache_freshness,
    parse_cache_control,
)
from .cache_revalidation import _RevalidatingCache
from .cache_store import CacheStats, ResponseCache

if TYPE_CHECKING:
    import httpx2

    from .._runtime.backend import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases

__all__ = [
    "AsyncCacheTransport",
    "CacheFreshness",
    "CachePolicy",
    "CacheStats",
    "CacheTransport",
    "ResponseCache",
    "authorization_identity",
    "cache_freshness",
    "parse_cache_control",
]


@inner_is("AnyTransport")
class CacheTransport(_RevalidatingCache["AnyTransport"], HttpxBaseTransport, Httpx2BaseTransport):
    """A stale-while-revalidate cache in front of a sync httpx transport.

    ``httpx.Client(transport=CacheTransport(httpx.HTTPTransport()))``; the
    same with httpx2 (answers are built with the request's library).
    Answers carry ``response.extensions["authpulse_cache"]``: ``"hit"``,
    ``"stale"``, ``"stale-if-error"``, ``"miss"`` or ``"bypass"``.

    A STALE entry is served at once and revalidated by one background
    request per key (a short-lived daemon thread here); stale requests that
    arrive meanwhile, from threads or coroutines sharing the store, are
    coalesced. Concurrent *misses* are not coalesced: each goes upstream,
    so no caller's latency, timeout or failure depends on another's request
    (the last answer stored wins). ``on_event`` may be called from a
    background thread.
    """

    _inner_types = _SYNC_TRANSPORTS
    _inner_kind = "httpx.BaseTransport"

    def _init_background(self) -> None:
        # revalidations run on a small pool: starting a thread per revalidation would put
        # thread start-up (and a GIL hand-off) on the stale answer's path
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._threads_lock = threading.Lock()

    @overload
    def handle_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    def handle_request(self, request: httpx2.Request) -> httpx2.Response: ...
    def handle_request(self, request: Any) -> Any:
        """Answer ``request`` (of ``inner``'s library) from the cache or ``inner``."""
        d = self._decide(request)
        served = self._served(request, d)  # no I/O, so no flow: the hit path stays lean
        if served is not None:
            return served
        return drive(self._answer_flow(d, request), self._inner, self.clock)

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        with self._threads_lock:
            pool = self._pool
            if pool is None:
                pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="authpulse-cache-revalidate"
                )
            try:
                future = pool.submit(self._revalidate, request, entry)
            except BaseException:
                self.cache._release(entry.key)
                raise
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._threads_lock:
            self._pending.discard(future)

    def _revalidate(self, request: httpx.Request, entry: _Entry) -> None:
        drive(self._revalidation_flow(request, entry), self._inner, self.clock)

    def join_background(self, timeout: float | None = None) -> None:
        """Wait for the background revalidations started so far (and any they race with)."""
        while True:
            with self._threads_lock:
                pending = list(self._pending)
            if not pending:
                return
            concurrent.futures.wait(pending, timeout)
            if timeout is not None:
                return

    def close(self) -> None:
        """Start no more revalidations, wait for those running, close the inner transport."""
        self._closed = True
        self.join_background()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._inner.close()


@inner_is("AnyAsyncTransport")
class AsyncCacheTransport(
    _RevalidatingCache["AnyAsyncTransport"], HttpxAsyncBaseTransport, Httpx2AsyncBaseTransport
):
    """The async twin of :class:`CacheTransport`.

    ``httpx.AsyncClient(transport=AsyncCacheTransport(httpx.AsyncHTTPTransport()))``.
    Background revalidations run as tasks on the caller's event loop; a
    cancelled caller never cancels them.
    """

    _inner_types = _ASYNC_TRANSPORTS
    _inner_kind = "httpx.AsyncBaseTransport"

    def _init_background(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    @overload
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...
    @overload
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response: ...
    async def handle_async_request(self, request: Any) -> Any:
        """Answer ``request`` (of ``inner``'s library) from the cache or ``inner``."""
        d = self._decide(request)
        served = self._served(request, d)  # no I/O, so no flow: the hit path stays lean
        if served is not None:
            return served
        return await adrive(self._answer_flow(d, request), self._inner, self.clock)

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        flow = adrive(self._revalidation_flow(request, entry), self._inner, self.clock)
        try:
            task = asyncio.get_running_loop().create_task(flow, name="authpulse-cache-revalidate")
        except BaseException:
            flow.close()
            self.cache._release(entry.key)
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ajoin_background(self) -> None:
        """Wait for the revalidation tasks started on this event loop."""
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        while True:
            pending = [
                t
                for t in list(self._tasks)
                if t.get_loop() is loop and t is not current and not t.done()
            ]
            if not pending:
                return
            await asyncio.wait(pending)  # unlike gather, being cancelled cancels none of them

    async def aclose(self) -> None:
        """Start no more revalidations, await those running, close the inner transport."""
        self._closed = True
        await self.ajoin_background()
        await self._inner.aclose()


# The public names defined here show the module they are imported from.
for _public in (
    AsyncCacheTransport,
    CacheTransport,
):
    _public.__module__ = "authpulse"
del _public

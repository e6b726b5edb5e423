"""What a token source is: the fetch contract between a session and its sources.

:class:`TokenSource` (``fetch`` / ``afetch``), the :class:`FetchContext` a
session builds for each fetch, the :class:`Fetched` answer, and
:func:`either_op`, which calls a plain or a coroutine function from either
driver; :class:`FlowSource`, the base of the sources whose fetch is a flow, and
:func:`fetch_flow`, which makes a fetch one step of the session's refresh flow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

from .._core.retry import TokenRetry
from .._core.tokens import TokenSet
from .._runtime.backend import httpx
from .._runtime.breakers import CircuitBreaker
from .._runtime.clock import Clock
from .._runtime.flow import Flow, Op, run_async, run_sync

__all__ = [
    "FetchContext",
    "Fetched",
    "FlowSource",
    "TokenSource",
    "either_op",
    "fetch_flow",
    "run_coroutine_blocking",
]

_T = TypeVar("_T")
_A = TypeVar("_A")


def run_coroutine_blocking(fn: Callable[[_A], Awaitable[_T]], arg: _A) -> _T:
    """Run ``await fn(arg)`` to completion from sync code.

    On a thread without an event loop it uses ``asyncio.run``; on a thread
    that is running a loop (sync code called from async code) it runs the
    coroutine on a private loop in a helper thread instead of failing.
    """

    async def main() -> _T:
        return await fn(arg)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="authpulse-sync") as ex:
        return ex.submit(asyncio.run, main()).result()


def either_op(fn: Callable[[_A], Any], arg: _A, *, offload: bool) -> Op[Any]:
    """The op of calling ``fn(arg)``, a plain or a coroutine function, from either
    driver: sync code runs a coroutine function on a private loop
    (:func:`run_coroutine_blocking`); async code awaits it, and runs a plain
    function in a worker thread if ``offload`` (it may block), else in place.
    A plain function's awaitable result is awaited in async code."""
    if inspect.iscoroutinefunction(fn):
        return Op(partial(run_coroutine_blocking, fn, arg), partial(_awaited, fn, arg))
    if offload:
        return Op(partial(fn, arg), partial(asyncio.to_thread, fn, arg))
    return Op(partial(fn, arg), partial(_awaited, fn, arg))


async def _awaited(fn: Callable[[_A], Any], arg: _A) -> Any:
    result = fn(arg)
    return await result if inspect.isawaitable(result) else result


@dataclass(frozen=True, slots=True)
class Fetched:
    """A new token set and, when the answer allowed an estimate, the clock skew.

    ``level`` is the fallback level that produced it (0: the primary source).
    """

    token: TokenSet
    skew: float | None = None
    level: int = 0


@dataclass(slots=True)
class FetchContext:
    """What a source may use while fetching. Built by the session for each fetch.

    ``afresh`` is set (to the reason, never the record's contents) when the
    token set stored for the session could not be used — corrupt, or
    plaintext in an encrypted store: ``current`` is then ``None`` and the
    source must get a token without it. A source that cannot (it needs the
    refresh token the record held) raises :class:`NoRefreshTokenError`, and
    the session requires a new login.

    .. versionchanged:: unreleased
       ``afresh``.
    """

    current: TokenSet | None
    clock: Clock
    retry: TokenRetry
    rng: random.Random
    default_lifetime: float
    http: Callable[[], httpx.Client]
    ahttp: Callable[[], httpx.AsyncClient]
    on_retry: Callable[[int, float, BaseException | None], None] | None = None
    attempts: int = field(default=0)
    #: the token endpoint's circuit breaker, when the session has one
    breaker: CircuitBreaker | None = None
    #: why the stored token set is unusable, when the source is asked afresh
    afresh: str | None = None


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can produce a token set, synchronously and asynchronously."""

    def fetch(self, ctx: FetchContext) -> Fetched: ...

    async def afetch(self, ctx: FetchContext) -> Fetched: ...


class FlowSource:
    """A source whose fetch is a flow (:mod:`authpulse._runtime.flow`), run by
    ``fetch`` with the sync driver and by ``afetch`` with the async one.

    A session's refresh runs that flow inside its own (:func:`fetch_flow`)
    rather than through another driver, unless a subclass overrides
    ``fetch`` or ``afetch``: then those are what it calls.
    """

    __slots__ = ()

    def _fetch_flow(self, ctx: FetchContext) -> Flow[Fetched]:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def fetch(self, ctx: FetchContext) -> Fetched:
        return run_sync(self._fetch_flow(ctx))

    async def afetch(self, ctx: FetchContext) -> Fetched:
        return await run_async(self._fetch_flow(ctx))


def fetch_flow(source: TokenSource, ctx: FetchContext) -> Flow[Fetched]:
    """``fetched = yield from fetch_flow(source, ctx)``: the source's fetch as
    steps of the calling flow: its own flow when it is a :class:`FlowSource`
    that keeps the base's ``fetch`` and ``afetch``, else one op of them."""
    cls = type(source)
    if (
        isinstance(source, FlowSource)
        and cls.fetch is FlowSource.fetch
        and cls.afetch is FlowSource.afetch
    ):
        return source._fetch_flow(ctx)
    return _fetch_op(source, ctx)


def _fetch_op(source: TokenSource, ctx: FetchContext) -> Flow[Fetched]:
    fetched: Fetched = yield Op(partial(source.fetch, ctx), partial(source.afetch, ctx))
    return fetched


# The public names defined here show the module they are imported from.
for _public in (
    FetchContext,
    Fetched,
    TokenSource,
):
    _public.__module__ = "authpulse"
del _public

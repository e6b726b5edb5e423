"""Sources backed by a function of the current token set: :class:`CallableSource`
and the base it shares with the fallback chain's sources.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._core.errors import ConfigurationError, TokenError
from .._core.tokens import TokenSet
from .fetch import FetchContext, Fetched, either_op

__all__ = ["AsyncTokenFn", "CallableSource", "FunctionSource", "SyncTokenFn"]

SyncTokenFn = Callable[[TokenSet | None], TokenSet]
AsyncTokenFn = Callable[[TokenSet | None], Awaitable[TokenSet]]


class FunctionSource:
    """Base of the sources backed by a function of the current token set, plain
    or coroutine (called through :func:`either_op`: a plain one runs in a worker
    thread in async code); ``_check`` turns its result into a :class:`Fetched`."""

    _fn: Callable[[TokenSet | None], Any]

    @staticmethod
    def _check(result: object) -> Fetched:
        raise NotImplementedError

    def fetch(self, ctx: FetchContext) -> Fetched:
        return self._check(either_op(self._fn, ctx.current, offload=True).sync())

    async def afetch(self, ctx: FetchContext) -> Fetched:
        return self._check(await either_op(self._fn, ctx.current, offload=True).async_())


class CallableSource(FunctionSource):
    """A source backed by your own function.

    ``fn(current)`` receives the current token set (or ``None``) and returns
    a new :class:`TokenSet` whose times are on the local clock. It may be a
    plain function or a coroutine function. In async code a plain function
    runs in a worker thread so it never blocks the event loop; in sync code
    a coroutine function runs on a private event loop (in a helper thread if
    the calling thread is already running one).

    When the token set stored for the session proved unusable (corrupt, or
    plaintext in an encrypted store), ``fn`` is called with ``None``: get a
    token from scratch, or raise :class:`NoRefreshTokenError` if that is not
    possible (the session then requires a new login).
    """

    def __init__(self, fn: SyncTokenFn | AsyncTokenFn, *, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigurationError("CallableSource needs a callable")
        self._fn = fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def __repr__(self) -> str:
        return f"CallableSource({self.name!r})"

    @staticmethod
    def _check(result: object) -> Fetched:
        if not isinstance(result, TokenSet):
            raise TokenError(f"token callable returned {type(result).__name__}, not a TokenSet")
        return Fetched(result, None)


# The public names defined here show the module they are imported from.
for _public in (CallableSource,):
    _public.__module__ = "authpulse"
del _public

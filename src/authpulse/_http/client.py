"""``authpulse.Client`` / ``AsyncClient``: httpx clients that carry a Session.

They are real ``httpx.Client`` / ``httpx.AsyncClient`` objects — or real
``httpx2.Client`` / ``httpx2.AsyncClient`` ones. The session is plugged in
through ``auth=`` and the resilience layers through ``transport=`` — the
library's own extension points; nothing in ``request()`` or ``send()`` is
overridden. The transport stack, outermost first:

    CacheTransport (if cache=)  ->  RetryTransport (retries + breaker)  ->  your transport

The cache sits on top so that a stale entry can answer when the retries are
spent or the breaker is open (stale-if-error).

Everything is written once, in the two mixins below; a backend's classes are
``class Client(SessionClientMixin, <library>.Client)`` (``authpulse.httpx``,
``authpulse.httpx2``), and ``authpulse.Client`` / ``AsyncClient`` are the
default backend's (see ``_http``).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .._core.errors import ConfigurationError
from .._core.health import HealthReport
from .._core.tokens import TokenSet
from .._runtime.backend import DEFAULT_BACKEND, HttpModule, backend_for, backend_of, httpx
from .._runtime.breakers import BreakerPolicy, BreakerRegistry
from .._sessions.session import Session
from .cache import AsyncCacheTransport, CachePolicy, CacheTransport, ResponseCache
from .retry import AsyncRetryTransport, RetryPolicy, RetryTransport

__all__ = ["AsyncClient", "AsyncSessionClientMixin", "Client", "SessionClientMixin"]

RetryArg = RetryPolicy | bool
BreakerArg = BreakerPolicy | BreakerRegistry | bool
CacheArg = CachePolicy | ResponseCache | bool | None

#: the retry events a session wants (per-attempt events would cost every request)
_SESSION_EVENTS = frozenset({"retry_scheduled", "budget_exhausted", "gave_up"})

# keyword arguments httpx uses to build its default transport
_TRANSPORT_KWARGS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def _check(session: Session, kwargs: dict[str, Any]) -> None:
    if not isinstance(session, Session):
        raise ConfigurationError("the first argument must be an authpulse.Session")
    if "auth" in kwargs:
        raise ConfigurationError(
            "authpulse clients get their auth from the session; do not pass auth="
        )


def _auth(session: Session, kwargs: dict[str, Any]) -> httpx.Auth:
    origins = None
    if session.origins is None and kwargs.get("base_url"):
        origins = [str(httpx.URL(str(kwargs["base_url"])))]
    return session.auth(origins=origins)


def _breakers(session: Session, breaker: BreakerArg) -> BreakerRegistry | None:
    if breaker is False:
        return None
    if breaker is True:
        registry = BreakerRegistry(BreakerPolicy(), clock=session.clock)
    elif isinstance(breaker, BreakerPolicy):
        registry = BreakerRegistry(breaker, clock=session.clock)
    elif isinstance(breaker, BreakerRegistry):
        registry = breaker
    else:
        raise ConfigurationError("breaker must be True, False, a BreakerPolicy or a registry")
    prev = registry.on_state_change

    def on_change(name: str, old: Any, new: Any) -> None:
        if prev is not None:
            prev(name, old, new)
        session._api_event("breaker_state", {"upstream": name, "from": str(old), "to": str(new)})

    registry.on_state_change = on_change
    session._watch_breakers(registry)
    return registry


def _retry_policy(retry: RetryArg) -> RetryPolicy:
    if retry is True:
        return RetryPolicy()
    if retry is False:
        return RetryPolicy(attempts=1)
    if isinstance(retry, RetryPolicy):
        return retry
    raise ConfigurationError("retry must be True, False or a RetryPolicy")


def _cache_parts(cache: CacheArg) -> tuple[ResponseCache, CachePolicy | None] | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return ResponseCache(), None
    if isinstance(cache, CachePolicy):
        return ResponseCache(), cache
    if isinstance(cache, ResponseCache):
        return cache, None
    raise ConfigurationError("cache must be True, False, a CachePolicy or a ResponseCache")


def _base_transport(hx: HttpModule, kwargs: dict[str, Any], *, sync: bool) -> Any:
    """The user's ``transport=``, checked against the client's library, or a new one."""
    base = kwargs.pop("transport", None)
    if base is None:
        settings = {k: kwargs[k] for k in _TRANSPORT_KWARGS if k in kwargs}
        return hx.HTTPTransport(**settings) if sync else hx.AsyncHTTPTransport(**settings)
    other = backend_of(base)
    if other is not None and other is not hx:
        raise ConfigurationError(
            f"transport= is a {other.__name__} transport, but this is a {hx.__name__} client;"
            f" use a {hx.__name__} transport, or authpulse.{other.__name__}.Client"
        )
    return base


_C = TypeVar("_C")


def _stack(
    session: Session,
    base: Any,
    retry: RetryArg,
    breaker: BreakerArg,
    cache: CacheArg,
    retry_cls: Callable[..., Any],
    cache_cls: Callable[..., _C],
) -> tuple[Any, ResponseCache | None, _C | None]:
    """Wrap ``base`` in the retry/breaker layer and the cache, as asked (one
    implementation for the sync and async clients: only the classes differ)."""
    transport: Any = base
    if retry is not False or breaker is not False:
        transport = retry_cls(
            base,
            policy=_retry_policy(retry),
            clock=session.clock,
            breakers=_breakers(session, breaker),
            on_event=session._api_event,
            events=_SESSION_EVENTS,
        )
    parts = _cache_parts(cache)
    if parts is None:
        return transport, None, None
    layer = cache_cls(
        transport,
        cache=parts[0],
        policy=parts[1],
        clock=session.clock,
        identity=session.identity,
        on_event=session._api_event,
    )
    return layer, parts[0], layer


_Cache = TypeVar("_Cache", CacheTransport, AsyncCacheTransport)


class _SessionClientBase(Generic[_Cache]):
    """What the sync and async mixins share: the one ``__init__`` (the twins
    differ only in the transport classes and in their sync or async methods)."""

    _sync: ClassVar[bool]
    _retry_cls: ClassVar[Callable[..., Any]]
    _cache_cls: ClassVar[Callable[..., Any]]

    def __init__(
        self,
        session: Session,
        *,
        retry: RetryArg = True,
        breaker: BreakerArg = True,
        cache: CacheArg = None,
        **kwargs: Any,
    ) -> None:
        _check(session, kwargs)
        base = _base_transport(backend_for(self), kwargs, sync=self._sync)
        transport, self.cache, cache_transport = _stack(
            session, base, retry, breaker, cache, self._retry_cls, self._cache_cls
        )
        self._cache_transport: _Cache | None = cache_transport
        kwargs["auth"] = _auth(session, kwargs)
        kwargs["transport"] = transport
        super().__init__(**kwargs)  # the library's Client or AsyncClient
        self.session = session

    def health(self) -> HealthReport:
        """The session's health report."""
        return self.session.health()


class SessionClientMixin(_SessionClientBase[CacheTransport]):
    """What makes an HTTP library's ``Client`` an ``authpulse.Client`` (one
    implementation for httpx and httpx2: the library is the class's other base).

    ``Authorization`` goes only to the session's origins, or, if it has
    none, to the origin of ``base_url`` (with neither, to every origin).

    ``retry`` (default on): retries by the rules of :class:`RetryPolicy`.
    ``breaker`` (default on): a circuit breaker per API origin.
    ``cache`` (default off): a stale-while-revalidate cache for GET/HEAD,
    keyed by the session's identity. Breaker state, retries and stale
    answers show in ``health()`` and in the session's events. Every other
    keyword argument goes to the library's client.
    """

    _sync = True
    _retry_cls = RetryTransport
    _cache_cls = CacheTransport

    def force_refresh(self) -> TokenSet:
        """Refresh the session's token now."""
        return self.session.force_refresh()

    def join_background(self, timeout: float | None = None) -> None:
        """Wait for background work: cache revalidations and token refreshes."""
        if self._cache_transport is not None:
            self._cache_transport.join_background(timeout)
        self.session.join_background(timeout)


class AsyncSessionClientMixin(_SessionClientBase[AsyncCacheTransport]):
    """The async twin of :class:`SessionClientMixin` (same options)."""

    _sync = False
    _retry_cls = AsyncRetryTransport
    _cache_cls = AsyncCacheTransport

    async def force_refresh(self) -> TokenSet:
        """Refresh the session's token now."""
        return await self.session.aforce_refresh()

    async def join_background(self) -> None:
        """Wait for background work on this event loop: cache revalidations and token
        refreshes (as the sync client's ``join_background``).

        .. versionchanged:: unreleased
           Also waits for the session's background token refreshes.
        """
        if self._cache_transport is not None:
            await self._cache_transport.ajoin_background()
        loop = asyncio.get_running_loop()
        refreshes = [
            t for t in list(self.session._tasks or ()) if t.get_loop() is loop and not t.done()
        ]
        if refreshes:
            await asyncio.wait(refreshes)  # unlike gather, being cancelled cancels none of them


# ---------------------------------------------------------------- the backends' classes

_CLIENT_DOC = """An ``{lib}.Client`` whose requests carry ``session``'s token.

``Client(session, *, retry=True, breaker=True, cache=None, **kwargs)``.
``Authorization`` goes only to the session's origins, or, if it has
none, to the origin of ``base_url`` (with neither, to every origin).
``retry`` (default on): retries by the rules of
:class:`~authpulse.RetryPolicy`; ``breaker`` (default on): a circuit
breaker per API origin; ``cache`` (default off): a
stale-while-revalidate cache for GET/HEAD, keyed by the session's
identity. Every other keyword argument goes to ``{lib}.Client``;
``transport=``, if given, must be a {lib} transport.
"""
_ASYNC_CLIENT_DOC = """An ``{lib}.AsyncClient`` whose requests carry ``session``'s token
(same options as :class:`Client`)."""

#: the classes this module serves, by name: (backend, class name, mixin, docstring)
_CLASSES: dict[str, tuple[str, str, type, str]] = {
    "HttpxClient": ("httpx", "Client", SessionClientMixin, _CLIENT_DOC),
    "HttpxAsyncClient": ("httpx", "AsyncClient", AsyncSessionClientMixin, _ASYNC_CLIENT_DOC),
    "Httpx2Client": ("httpx2", "Client", SessionClientMixin, _CLIENT_DOC),
    "Httpx2AsyncClient": ("httpx2", "AsyncClient", AsyncSessionClientMixin, _ASYNC_CLIENT_DOC),
}
_made: dict[str, type] = {}
_making = threading.Lock()


def _client_class(key: str) -> type:
    """One backend's ``Client`` or ``AsyncClient``, made once (written once for both
    libraries: ``class Client(SessionClientMixin, <library>.Client)``). Its module is
    the backend's (``authpulse.httpx``), which re-exports it under its own name."""
    with _making:
        made = _made.get(key)
        if made is None:
            backend, name, mixin, doc = _CLASSES[key]
            library = importlib.import_module(backend)
            made = _made[key] = type(
                name,
                (mixin, getattr(library, name)),
                {
                    "__module__": f"authpulse.{backend}",
                    "__qualname__": name,
                    "__doc__": doc.format(lib=backend),
                },
            )
    return made


# ``authpulse.Client`` / ``AsyncClient`` are the default backend's classes; all are made
# on first use, so importing a backend module first (``import authpulse.httpx``) or
# this one first makes the same classes, and neither imports the other half-done.
if TYPE_CHECKING:
    import httpx2

    class HttpxClient(SessionClientMixin, httpx.Client): ...

    class HttpxAsyncClient(AsyncSessionClientMixin, httpx.AsyncClient): ...

    class Httpx2Client(SessionClientMixin, httpx2.Client): ...

    class Httpx2AsyncClient(AsyncSessionClientMixin, httpx2.AsyncClient): ...

    Client = HttpxClient
    AsyncClient = HttpxAsyncClient
else:

    def __getattr__(name: str) -> object:
        if name in ("Client", "AsyncClient"):
            key = ("Httpx2" if DEFAULT_BACKEND == "httpx2" else "Httpx") + name
        elif name in _CLASSES:
            key = name
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = globals()[name] = _client_class(key)
        return value

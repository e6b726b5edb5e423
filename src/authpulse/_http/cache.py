"""A stale-while-revalidate response cache for httpx, on cachetools.

:class:`CacheTransport` and :class:`AsyncCacheTransport` wrap another
transport. The decisions — may this request use the cache, may this
response be stored and for how long, how fresh is an entry at ``now``, what
is the key — are pure functions (``_cache_policy``); the answer to a request
and a revalidation are each one flow (``_flow_http``) that both twins drive.
The twins differ only in the driver and in where a background revalidation
runs (a thread, or a task on the caller's loop).

The store, :class:`ResponseCache` (``_cache_store``), is shared and
thread-safe: one lock guards the cachetools LRU, the indexes, the counters
and the set of keys being revalidated, and it is never held across I/O.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.retry import classify_status
from .._core.signals import ApiEventKind
from .._runtime.backend import (
    TRANSPORT_ERRORS,
    Httpx2AsyncBaseTransport,
    Httpx2BaseTransport,
    HttpxAsyncBaseTransport,
    HttpxBaseTransport,
    backend_for,
    every,
    httpx,
)
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow_http import Close, Flow, Read, adrive, drive, inner_is
from .cache_policy import (
    _SAFE_METHODS,
    CacheFreshness,
    CachePolicy,
    _delta_seconds,
    _Entry,
    _event_url,
    _failure_class,
    _key_url,
    _make_entry,
    _merge_not_modified,
    _Primary,
    _request_bypass,
    _request_wants_upstream,
    _response_verdict,
    _vary_names,
    _Windows,
    authorization_identity,
    cache_freshness,
    parse_cache_control,
)
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

_log = logging.getLogger("authpulse.cache")
_REVALIDATION_FAILED = {"authpulse_event": "revalidation_failed"}

#: the response extension that says where an answer came from
EXTENSION = "authpulse_cache"

# ---------------------------------------------------------------------- shells


class _Action(enum.Enum):
    BYPASS = "bypass"
    HIT = "hit"
    STALE = "stale"
    FETCH = "fetch"


@dataclass(frozen=True, slots=True)
class _Decision:
    action: _Action
    primary: _Primary | None = None
    entry: _Entry | None = None  #: HIT/STALE: the entry served; FETCH: a stale-if-error candidate


IdentityArg = str | Callable[[httpx.Request], str | None] | None
EventHook = Callable[[str, dict[str, object]], None]


#: what an inner transport may be: one of any installed library (httpx, httpx2)
_SYNC_TRANSPORTS = every("BaseTransport")
_ASYNC_TRANSPORTS = every("AsyncBaseTransport")
#: what a fetch may fail with and still be answered from a stale entry (see ``_failure_class``)
_FETCH_FAILURES: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, AuthpulseError)


def _label(response: httpx.Response, label: str) -> httpx.Response:
    response.extensions = {**response.extensions, EXTENSION: label}
    return response


_Inner = TypeVar("_Inner")


class _CacheCore(Generic[_Inner]):
    """What both transports share: every decision and the two flows (an answer,
    a revalidation). The twins differ only in the driver and in where a
    background revalidation runs."""

    #: what ``inner`` must be, and how the error names it
    _inner_types: tuple[type[Any], ...]
    _inner_kind: str

    def __init__(
        self,
        inner: _Inner,
        *,
        cache: ResponseCache | None = None,
        policy: CachePolicy | None = None,
        clock: Clock | None = None,
        identity: IdentityArg = None,
        on_event: EventHook | None = None,
    ) -> None:
        if not isinstance(inner, self._inner_types):
            raise ConfigurationError(f"inner must be an {self._inner_kind} (or httpx2's)")
        if policy is not None and not isinstance(policy, CachePolicy):
            raise ConfigurationError("policy must be a CachePolicy")
        if cache is not None and not isinstance(cache, ResponseCache):
            raise ConfigurationError("cache must be a ResponseCache")
        if isinstance(identity, str):
            if not identity:
                raise ConfigurationError("identity must not be empty")
        elif identity is not None and not callable(identity):
            raise ConfigurationError("identity must be a string, a callable or None")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError("clock must implement authpulse.Clock")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event must be callable")
        # an httpx2 transport takes and gives httpx2's requests and answers (same API)
        self._inner = inner
        self.policy = policy if policy is not None else CachePolicy()
        self.cache = (
            cache
            if cache is not None
            else ResponseCache(max_entries=self.policy.max_entries, max_bytes=self.policy.max_bytes)
        )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._identity = identity
        self._on_event = on_event
        self._closed = False
        self._init_background()

    def _init_background(self) -> None:  # pragma: no cover - every twin overrides
        raise NotImplementedError

    def _start_revalidation(self, request: httpx.Request, entry: _Entry) -> None:
        raise NotImplementedError  # pragma: no cover - every twin overrides

    @property
    def inner(self) -> _Inner:
        """The transport this cache is in front of."""
        return self._inner

    def __repr__(self) -> str:
        if isinstance(self._identity, str):
            ident = "fixed"
        elif self._identity is None:
            ident = "authorization-hash"
        else:
            ident = "callable"
        return (
            f"{type(self).__name__}(policy={self.policy!r}, identity={ident}, cache={self.cache!r})"
        )

    def stats(self) -> CacheStats:
        """The counters of the (possibly shared) store."""
        return self.cache.stats()

    # -- decisions -------------------------------------------------------------------

    def _identity_of(self, request: httpx.Request) -> str | None:
        if isinstance(self._identity, str):
            return self._identity
        if self._identity is None:
            return authorization_identity(request)
        ident = self._identity(request)
        return ident if isinstance(ident, str) and ident else None

    def _decide(self, request: httpx.Request) -> _Decision:
        if _request_bypass(request) is not None:
            self.cache._count("not_cached")
            return _Decision(_Action.BYPASS)
        identity = self._identity_of(request)
        if identity is None:  # the identity callable declined: never cache
            self.cache._count("not_cached")
            return _Decision(_Action.BYPASS)
        primary: _Primary = (identity, request.method, _key_url(request.url))
        now = self.clock.monotonic()
        entry = self.cache._lookup(primary, request, now)
        if entry is None:
            self.cache._count("misses")
            return _Decision(_Action.FETCH, primary)
        state = entry.freshness(now)
        if state is not CacheFreshness.EXPIRED and _request_wants_upstream(request, entry.age(now)):
            state = CacheFreshness.EXPIRED
        if state is CacheFreshness.FRESH:
            self.cache._count("hits")
            return _Decision(_Action.HIT, primary, entry)
        if state is CacheFreshness.STALE:
            self.cache._count("stale_served")
            return _Decision(_Action.STALE, primary, entry)
        self.cache._count("misses")
        return _Decision(_Action.FETCH, primary, entry)

    def _serve(self, request: httpx.Request, entry: _Entry, label: str) -> httpx.Response:
        age = int(entry.age(self.clock.monotonic()))
        return backend_for(request).Response(
            entry.status,
            headers=[*entry.headers, (b"Age", str(age).encode())],
            content=entry.content,
            request=request,
            extensions={EXTENSION: label},
        )

    def _emit(self, kind: ApiEventKind, payload: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, payload)
        except Exception:
            _log.exception(
                "cache on_event hook failed for %r",
                kind.value,
                extra={
                    "authpulse_event": "hook_failed",
                    "authpulse_hook": "on_event",
                    "authpulse_kind": kind.value,
                },
            )

    def _payload(self, entry: _Entry, **extra: object) -> dict[str, object]:
        identity, method, url, _ = entry.key
        return {"url": _event_url(url), "method": method, "identity": identity, **extra}

    def _stale_on_error(
        self,
        d: _Decision,
        request: httpx.Request,
        failure: BaseException | httpx.Response,
    ) -> httpx.Response | None:
        """The stale answer to a failed fetch, or ``None`` to let the failure through."""
        entry = d.entry
        if entry is None:
            return None
        exc: BaseException | None = None
        status: int | None = None
        if not isinstance(failure, BaseException):
            status = failure.status_code
            cls = classify_status(status, failure.headers) if status >= 500 else None
        else:
            exc = failure
            cls = _failure_class(exc)
        now = self.clock.monotonic()
        if cls is None or not entry.usable_on_error(now):
            return None
        self.cache._count("stale_if_error_served")
        self._emit(
            ApiEventKind.STALE_SERVED,
            self._payload(
                entry,
                mode="stale-if-error",
                age=entry.age(now),
                error_class=cls.value,
                status=status,
                error=type(exc).__name__ if exc is not None else None,
            ),
        )
        return self._serve(request, entry, "stale-if-error")

    def _judge(
        self, d: _Decision, request: httpx.Request, response: httpx.Response
    ) -> httpx.Response | _Windows | None:
        """After a fetch: a stale answer to use instead, windows to store for, or ``None``."""
        if response.status_code >= 500:
            stale = self._stale_on_error(d, request, response)
            if stale is not None:
                return stale
        verdict = _response_verdict(
            self.policy, request.url.path, response.status_code, response.headers
        )
        if not isinstance(verdict, str):
            length = _delta_seconds(response.headers.get("content-length"))
            if length is not None and length > self.cache.max_bytes:
                verdict = "too-large"
        if isinstance(verdict, str):
            self.cache._count("not_cached")
            cls = classify_status(response.status_code, response.headers)
            if d.entry is not None and (cls is None or not cls.transient):
                self.cache._remove(d.entry.key, only=d.entry)  # superseded
            return None
        return verdict

    def _store(
        self,
        primary: _Primary,
        request: httpx.Request,
        response: httpx.Response,
        content: bytes,
        windows: _Windows,
    ) -> None:
        names = _vary_names(response.headers) or ()
        key = self.cache._key_for(primary, request, names)
        entry = _make_entry(
            key,
            response.status_code,
            response.headers.raw,
            content,
            now=self.clock.monotonic(),
            windows=windows,
        )
        self.cache._put(entry, names)

    def _after_unsafe(self, request: httpx.Request, response: httpx.Response) -> None:
        """A successful unsafe request (POST, PUT, ...) invalidates its URL (RFC 9111 §4.4)."""
        if request.method not in _SAFE_METHODS and response.status_code < 400:
            self.cache.invalidate(url=request.url)

    # -- revalidation ----------------------------------------------------------------

    def _revalidation_request(self, request: httpx.Request, entry: _Entry) -> httpx.Request:
        hx = backend_for(request)
        headers = hx.Headers(request.headers)
        etag = entry.header(b"etag")
        modified = entry.header(b"last-modified")
        if etag is not None:
            headers["If-None-Match"] = etag.decode("latin-1")
        if modified is not None:
            headers["If-Modified-Since"] = modified.decode("latin-1")
        return hx.Request(
            request.method, request.url, headers=headers, extensions=dict(request.extensions)
        )

    def _revalidation_plan(
        self, entry: _Entry, request: httpx.Request, response: httpx.Response
    ) -> _Windows | str:
        """Windows to store the new answer for, or one of
        ``"not_modified"``, ``"failed"``, ``"removed"``."""
        status = response.status_code
        if status == 304 and (
            "if-none-match" in request.headers or "if-modified-since" in request.headers
        ):
            return "not_modified"
        if status >= 500 or status in (304, 429):
            return "failed"
        verdict = _response_verdict(self.policy, request.url.path, status, response.headers)
        if isinstance(verdict, str):
            return "removed"
        length = _delta_seconds(response.headers.get("content-length"))
        if length is not None and length > self.cache.max_bytes:
            return "removed"
        return verdict

    def _revalidation_done(
        self,
        entry: _Entry,
        request: httpx.Request,
        response: httpx.Response,
        plan: _Windows | str,
        content: bytes,
    ) -> None:
        status = response.status_code
        if plan == "failed":
            self._revalidation_failed(entry, status=status)
            return
        outcome = "updated"
        names = entry.key[3]
        if isinstance(plan, _Windows):
            self._store(entry.key[:3], request, response, content, plan)
        elif plan == "not_modified":
            merged = _merge_not_modified(entry.headers, response.headers.raw)
            verdict = _response_verdict(
                self.policy, request.url.path, entry.status, httpx.Headers(merged)
            )
            if isinstance(verdict, _Windows):
                fresh = _make_entry(
                    entry.key,
                    entry.status,
                    merged,
                    entry.content,
                    now=self.clock.monotonic(),
                    windows=verdict,
                )
                self.cache._put(fresh, tuple(n for n, _ in names))
                outcome = "not_modified"
            else:
                self.cache._remove(entry.key, only=entry)
                outcome = "removed"
        else:
            self.cache._count("not_cached")
            self.cache._remove(entry.key, only=entry)
            outcome = "removed"
        self._emit(ApiEventKind.REVALIDATED, self._payload(entry, outcome=outcome, status=status))

    def _revalidation_failed(
        self, entry: _Entry, *, status: int | None = None, exc: BaseException | None = None
    ) -> None:
        self.cache._count("revalidation_errors")
        if exc is not None:
            cls = _failure_class(exc)
            if cls is None:
                _log.warning(
                    "cache revalidation failed unexpectedly",
                    exc_info=exc,
                    extra=_REVALIDATION_FAILED,
                )
        else:
            cls = classify_status(status) if status is not None else None
        self._emit(
            ApiEventKind.REVALIDATION_FAILED,
            self._payload(
                entry,
                status=status,
                error_class=cls.value if cls is not None else None,
                error=type(exc).__name__ if exc is not None else None,
            ),
        )

    # -- the flows (written once; see ``_flow_http``) ---------------------------------

    def _served(self, request: httpx.Request, d: _Decision) -> httpx.Response | None:
        """The answer from the cache itself (a hit, or a stale entry while one
        revalidation starts), or ``None`` when the inner transport must answer."""
        entry = d.entry
        if entry is None or d.action is _Action.FETCH or d.action is _Action.BYPASS:
            return None
        if d.action is _Action.STALE:
            if not self._closed and self.cache._claim(entry):
                self._start_revalidation(request, entry)
            return self._serve(request, entry, "stale")
        return self._serve(request, entry, "hit")

    def _answer_flow(self, d: _Decision, request: httpx.Request) -> Flow[httpx.Response]:
        """Answer ``request`` from the inner transport (a bypass or a fetch)."""
        if d.action is _Action.BYPASS:
            response = yield request
            self._after_unsafe(request, response)
            return _label(response, "bypass")
        try:
            response = yield request
        except _FETCH_FAILURES as exc:
            stale = self._stale_on_error(d, request, exc)
            if stale is None:
                raise
            return stale
        verdict = self._judge(d, request, response)
        if verdict is not None and not isinstance(verdict, _Windows):  # a stale answer
            yield Close(response)
            return verdict
        if verdict is not None and d.primary is not None:
            try:
                content = yield Read(response)
            except TRANSPORT_ERRORS as exc:
                yield Close(response)
                stale = self._stale_on_error(d, request, exc)
                if stale is None:
                    raise
                return stale
            self._store(d.primary, request, response, content, verdict)
        return _label(response, "miss")

    def _revalidation_flow(self, request: httpx.Request, entry: _Entry) -> Flow[None]:
        """Revalidate ``entry`` (claimed by the caller; released here, whatever happens)."""
        try:
            req = self._revalidation_request(request, entry)
            try:
                response = yield req
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            try:
                plan = self._revalidation_plan(entry, req, response)
                content = (yield Read(response)) if isinstance(plan, _Windows) else b""
            except Exception as exc:
                self._revalidation_failed(entry, exc=exc)
                return
            finally:
                yield Close(response)
            self._revalidation_done(entry, req, response, plan, content)
        except Exception:
            _log.exception("cache revalidation failed", extra=_REVALIDATION_FAILED)
        finally:
            self.cache._release(entry.key)


@inner_is("AnyTransport")
class CacheTransport(_CacheCore["AnyTransport"], HttpxBaseTransport, Httpx2BaseTransport):
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
    _CacheCore["AnyAsyncTransport"], HttpxAsyncBaseTransport, Httpx2AsyncBaseTransport
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

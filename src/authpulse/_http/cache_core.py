"""The cache's decisions, shared by both transports: may a request use the
cache, what answers it, may a fetched answer be stored, and the answer's flow.

:class:`_CacheCore` holds the policy, the (possibly shared)
:class:`ResponseCache` and the injected clock; the RFC 9111 rules it applies
are pure functions (``cache_policy``). The answer to a request is one flow
(``_runtime/flow_http``) that both twins drive; the revalidation of a stale
entry is in ``cache_revalidation``, the twins in ``cache``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.retry import classify_status
from .._core.signals import ApiEventKind
from .._runtime.backend import (
    TRANSPORT_ERRORS,
    backend_for,
    every,
    httpx,
)
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow_http import Close, Flow, Read
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
    _Primary,
    _request_bypass,
    _request_wants_upstream,
    _response_verdict,
    _vary_names,
    _Windows,
    authorization_identity,
)
from .cache_store import CacheStats, ResponseCache

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport  # noqa: F401 - the twins' quoted bases

_log = logging.getLogger("authpulse.cache")

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

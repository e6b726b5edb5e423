"""``Session``: a token that never lapses, refreshed once for everyone.

The decisions (fresh / stale / expired, when to retry) are the pure
functions of ``_policy``; this module is the shell that reads the clock,
does the I/O and coordinates threads and coroutines.

Single flight (``_single_flight``): one ``concurrent.futures.Future`` stands
for the refresh in progress, and one refresh, written once as a flow, serves
threads and coroutines alike. A STALE token starts a refresh in the
background and keeps being served; only an EXPIRED token makes callers wait.
This module holds the session's state and its bookkeeping: claiming the
flight, installing a token set, recording a failure, the events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import random
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.errors import (
    AuthpulseError,
    ConfigurationError,
    LoginRequiredError,
    RefreshError,
    TokenResponseError,
    UsageError,
)
from .._core.health import HealthReport, HealthSignals, compute_health
from .._core.model import check_id
from .._core.policy import Freshness, RefreshPolicy, schedule
from .._core.retry import TokenRetry
from .._core.signals import (
    ApiEventKind,
    LegacyListener,
    SessionEvent,
    SessionEventHook,
    SessionEventKind,
    api_kind,
)
from .._core.tokens import TokenSet
from .._runtime.backend import async_client_for, client_for, every, httpx, parse_origins
from .._runtime.breakers import BreakerPolicy, BreakerRegistry, CircuitBreaker
from .._runtime.clock import Clock, SystemClock
from .._stores.base import CorruptRecordError, SessionStore
from .coordination import MAX_KEY_LENGTH, Coordinator
from .fetch import FetchContext, Fetched, TokenSource
from .single_flight import RefreshReason, SingleFlight, _Current
from .stats import RequestStats, RequestWindow
from .verify import JWTVerifier

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .auth import SessionAuth

__all__ = ["RefreshStats", "Session", "TokenUpdateHook"]

log = logging.getLogger("authpulse.session")

TokenUpdateHook = Callable[[TokenSet], None] | Callable[[TokenSet], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Counters of one session's refreshes (no secrets).

    A refresh is counted once however many token endpoint calls its retries
    made: ``refreshes`` succeeded and ``failures`` failed, so ``attempted`` is
    their sum, and the demo and the dashboards print the three as
    ``refreshes: 5 attempted, 2 succeeded, 3 failed``.
    """

    refreshes: int  #: refreshes that succeeded (the first fetch and adopted stored sets included)
    failures: int  #: refreshes that failed
    consecutive_failures: int
    token_requests: int
    last_refresh_at: float | None
    last_failure_at: float | None
    last_error: str | None
    last_error_class: str | None
    skew: float
    generation: int

    @property
    def attempted(self) -> int:
        """Refreshes attempted: ``refreshes + failures``."""
        return self.refreshes + self.failures


class Session(SingleFlight):
    """An authenticated session: a token source plus the rules that keep it fresh.

    >>> session = Session(ClientCredentials(url, "id", "secret"))
    >>> client = httpx.Client(auth=session.auth())

    ``token()`` / ``await atoken()`` return a valid access token, refreshing
    when needed; one refresh serves every thread and coroutine waiting.
    ``force_refresh()`` / ``await aforce_refresh()`` refresh now.

    ``on_token_update`` (sync or async) is called with every new token set
    *before* any caller can use it: persist rotated refresh tokens there.
    If it raises, the error is logged and counted; the new token is still
    installed, because the IdP has already rotated the old refresh token.
    """

    __slots__ = (
        "__weakref__",
        "_ahttp",
        "_ahttp_loop",
        "_api_breakers",
        "_api_retries",
        "_async_transport",
        "_breakers",
        "_closed",
        "_consecutive_failures",
        "_coord",
        "_cur",
        "_failures",
        "_fallback_level",
        "_generation",
        "_hook",
        "_http",
        "_last_error",
        "_last_error_class",
        "_last_failure_at",
        "_last_refresh_at",
        "_listeners",
        "_lock",
        "_login_required",
        "_refreshes",
        "_request_window",
        "_requests",
        "_rng",
        "_skew",
        "_stale_served",
        "_token_requests",
        "_transport",
        "_verifier",
        "clock",
        "identity",
        "name",
        "on_request",
        "origins",
        "policy",
        "retry",
        "source",
    )

    def __init__(
        self,
        source: TokenSource,
        *,
        token: TokenSet | None = None,
        policy: RefreshPolicy | None = None,
        retry: TokenRetry | None = None,
        clock: Clock | None = None,
        on_token_update: TokenUpdateHook | None = None,
        verifier: JWTVerifier | None = None,
        origins: Iterable[str] | None = None,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        request_window: int = 100,
        breaker: BreakerPolicy | BreakerRegistry | None = None,
        identity: str | None = None,
        store: SessionStore | None = None,
        store_key: str | None = None,
        lock_ttl: float = 30.0,
    ) -> None:
        # duck-typed: isinstance() against a runtime Protocol is slow on this path
        if not (
            callable(getattr(source, "fetch", None)) and callable(getattr(source, "afetch", None))
        ):
            raise ConfigurationError("source must be a token source (fetch/afetch)")
        if token is not None and not isinstance(token, TokenSet):
            raise ConfigurationError("token must be a TokenSet")
        if on_token_update is not None and not callable(on_token_update):
            raise ConfigurationError("on_token_update must be callable")
        _check_arguments(
            policy=policy,
            retry=retry,
            clock=clock,
            verifier=verifier,
            transport=transport,
            async_transport=async_transport,
            seed=seed,
            rng=rng,
            name=name,
            identity=identity,
            store_key=store_key,
            lock_ttl=lock_ttl,
        )
        self.source = source
        self.policy = policy or _DEFAULT_POLICY
        self.retry = retry or _DEFAULT_RETRY
        self.clock: Clock = clock or SystemClock()
        self.name = name or type(source).__name__
        #: who the tokens belong to, for cache keys; unique per session unless given
        self.identity = identity or f"session-{secrets.token_hex(8)}"
        if breaker is None or isinstance(breaker, BreakerRegistry):
            self._breakers = breaker
        elif isinstance(breaker, BreakerPolicy):
            self._breakers = BreakerRegistry(breaker, clock=self.clock)
        else:
            raise ConfigurationError("breaker must be a BreakerPolicy or a BreakerRegistry")
        self._api_breakers: list[BreakerRegistry] | None = None
        self._coord: Coordinator | None = None
        if store is not None:
            if not (
                callable(getattr(store, "lock", None))
                and callable(getattr(store, "get_token", None))
            ):
                raise ConfigurationError("store must be a SessionStore (see authpulse.open_store)")
            if not (isinstance(lock_ttl, int | float) and lock_ttl > 0):
                raise ConfigurationError("lock_ttl must be a positive number of seconds")
            self._coord = Coordinator(
                store,
                store_key or self.name,
                what="store_key" if store_key else "name (the store key: no store_key is given)",
                clock=self.clock,
                policy=self.policy,
                lock_ttl=float(lock_ttl),
                wait=self.retry.deadline + float(lock_ttl),
                deadline=self.retry.deadline,
                on_store_state=self._store_state,
            )
        self._api_retries = 0
        self._stale_served: list[float] | None = None
        self.origins = parse_origins(origins)
        self._hook = on_token_update
        self._verifier = verifier
        self._transport = transport
        self._async_transport = async_transport
        # jitter, not cryptography; a manager shares one generator among its sessions
        self._rng = rng if rng is not None else random.Random(seed)  # noqa: S311
        self._lock = threading.Lock()
        self._cur: _Current | None = None
        self._flight: concurrent.futures.Future[_Current] | None = None
        self._flight_loop: asyncio.AbstractEventLoop | None = None
        # created on first use: most sessions never start a background refresh
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._threads: set[threading.Thread] | None = None
        self._http: httpx.Client | None = None
        self._ahttp: httpx.AsyncClient | None = None
        self._ahttp_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._skew = 0.0
        self._generation = 0
        self._next_bg_attempt = float("-inf")
        # counters
        self._refreshes = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._token_requests = 0
        self._last_refresh_at: float | None = None
        self._last_failure_at: float | None = None
        self._last_error: str | None = None
        self._last_error_class: str | None = None
        self._fallback_level = 0
        self._login_required: LoginRequiredError | None = None
        self._listeners: list[SessionEventHook] | None = None
        if (
            isinstance(request_window, bool)
            or not isinstance(request_window, int)
            or (request_window < 1)
        ):
            raise ConfigurationError("request_window must be a positive integer")
        self._request_window = request_window
        self._requests: RequestStats | None = None  # created on the first request
        #: called as ``on_request(ok, latency)`` after every request made through
        #: :meth:`auth` (a manager uses it to track activity)
        self.on_request: Callable[[bool, float], None] | None = None
        if token is not None:
            self._cur = self._make_current(token)

    def __repr__(self) -> str:
        cur = self._cur
        state = self.freshness().value if cur else "no token"
        return f"<Session {self.name!r} {state} generation={self._generation}>"

    # ------------------------------------------------------------------ queries

    @property
    def token_set(self) -> TokenSet | None:
        """The current token set (tokens are SecretStr), or ``None``."""
        cur = self._cur
        return cur.token if cur else None

    @property
    def generation(self) -> int:
        """Increases by one with every installed token set."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def refresh_at(self) -> float | None:
        """Local time at which the current token turns STALE (``None`` without a token)."""
        cur = self._cur
        return cur.refresh_at if cur is not None else None

    @property
    def expires_at(self) -> float | None:
        """Local time at which the current token expires (``None`` without a token).

        .. versionadded:: unreleased
        """
        cur = self._cur
        return cur.expires_at if cur is not None else None

    @property
    def fallback_level(self) -> int:
        """The level of the source chain that produced the current token (0: the primary).

        .. versionadded:: unreleased
        """
        return self._fallback_level

    @property
    def api_retries(self) -> int:
        """API requests of this session's clients retried so far.

        .. versionadded:: unreleased
        """
        return self._api_retries

    def breaker_registries(self) -> tuple[BreakerRegistry, ...]:
        """The breaker registries guarding this session: its token endpoint's, then
        those of its API clients (read-only; for metrics and dashboards).

        .. versionadded:: unreleased
        """
        regs = () if self._breakers is None else (self._breakers,)
        return regs + tuple(self._api_breakers or ())

    def breaker_state(self) -> str | None:
        """The worst state of the breakers guarding this session's upstreams
        (the token endpoint and the API origins of its clients), or ``None``."""
        regs = ([self._breakers] if self._breakers is not None else []) + (self._api_breakers or [])
        worst: str | None = None
        for reg in regs:
            for st in reg.states().values():
                if _BREAKER_RANK[st.value] > _BREAKER_RANK.get(worst or "", -1):
                    worst = st.value
        return worst

    def _token_breaker(self) -> CircuitBreaker | None:
        regs = self._breakers
        if regs is None:
            return None
        source_url = getattr(self.source, "token_url", None)
        return regs.get(source_url if isinstance(source_url, str) else self.name)

    def _store_state(self, available: bool, error: str | None) -> None:
        self._emit(_STORE_KINDS[available], error=error)

    def _watch_breakers(self, registry: BreakerRegistry) -> None:
        """Count ``registry``'s breakers in this session's health (clients call this)."""
        if self._api_breakers is None:
            self._api_breakers = []
        if registry not in self._api_breakers:
            self._api_breakers.append(registry)

    def _api_event(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Retry, breaker and cache events of this session's clients."""
        api = api_kind(kind)
        if api is None:
            return  # not a kind this version knows: nothing counts it
        if api is ApiEventKind.RETRY_SCHEDULED:
            self._api_retries += 1
        elif api is ApiEventKind.STALE_SERVED:
            if self._stale_served is None:
                self._stale_served = []
            if len(self._stale_served) < 1000:
                self._stale_served.append(self.clock.now())
        self._emit_event(SessionEvent.from_api(api, fields))

    def request_window(self) -> RequestWindow:
        """Success rate, p95 latency and user-experience score of recent requests."""
        stats = self._requests
        if stats is None:
            return RequestWindow(0, 0, None, None, None, None, None)
        return stats.snapshot()

    def _record_request(self, ok: bool, latency: float, ux_ok: bool) -> None:
        stats = self._requests
        if stats is None:
            stats = self._requests = RequestStats(self._request_window)
        stats.record(ok, latency, ux_ok=ux_ok)
        hook = self.on_request
        if hook is not None:
            try:
                hook(ok, latency)
            except Exception:  # observers never break a request
                log.exception(
                    "on_request hook failed",
                    extra={
                        "authpulse_event": "hook_failed",
                        "authpulse_session": self.name,
                        "authpulse_hook": "on_request",
                    },
                )

    def freshness(self, now: float | None = None) -> Freshness:
        """FRESH, STALE or EXPIRED at ``now`` (default: the clock's now)."""
        cur = self._cur
        if cur is None:
            return Freshness.EXPIRED
        t = self.clock.now() if now is None else now
        if t >= cur.expires_at:
            return Freshness.EXPIRED
        return Freshness.STALE if t >= cur.refresh_at else Freshness.FRESH

    def stats(self) -> RefreshStats:
        """Refresh counters."""
        return RefreshStats(
            refreshes=self._refreshes,
            failures=self._failures,
            consecutive_failures=self._consecutive_failures,
            token_requests=self._token_requests,
            last_refresh_at=self._last_refresh_at,
            last_failure_at=self._last_failure_at,
            last_error=self._last_error,
            last_error_class=self._last_error_class,
            skew=self._skew,
            generation=self._generation,
        )

    def health_signals(self, now: float | None = None) -> HealthSignals:
        """The signals this session knows about (token and refresh outcome)."""
        t = self.clock.now() if now is None else now
        cur = self._cur
        remaining = None
        if cur is not None:
            life = cur.token.lifetime
            remaining = max(cur.expires_at - t, 0.0) / life if life > 0 else 0.0
        w = self.request_window()
        stale = self._stale_served
        if stale:
            horizon = t - _STALE_MEMORY
            stale[:] = [x for x in stale if x >= horizon]
        return HealthSignals(
            freshness=self.freshness(t).value,
            has_token=cur is not None,
            remaining_fraction=remaining,
            consecutive_refresh_failures=self._consecutive_failures,
            seconds_since_refresh_failure=(
                None if self._last_failure_at is None else t - self._last_failure_at
            ),
            auth_state="closed"
            if self._closed
            else "login_required"
            if self._login_required is not None
            else None,
            fallback_level=self._fallback_level,
            breaker_state=self.breaker_state(),
            store_available=None if self._coord is None else self._coord.store_ok,
            stale_served=len(stale) if stale else 0,
            requests=w.window,
            success_rate=w.success_rate,
            p95_latency=w.p95_latency,
            baseline_latency=w.baseline_latency,
        )

    def health(self, now: float | None = None) -> HealthReport:
        """A 0–100 score with its band and the reasons for every point lost."""
        return compute_health(self.health_signals(now))

    def add_listener(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``fn(kind, fields)`` on refresh events (``refreshed``,
        ``refresh_failed``, ``retry``). Fields never carry secrets.

        ``kind`` is the value of a :class:`~authpulse.SessionEventKind`; for
        typed events, use :meth:`add_event_hook`."""
        self.add_event_hook(LegacyListener(fn))

    def add_event_hook(self, hook: SessionEventHook) -> None:
        """Call ``hook(event)`` with every :class:`~authpulse.SessionEvent` of this
        session (refreshes, retries, fallbacks, store and API client events).

        Events never carry secrets; a hook that raises is logged and the
        others still run.

        .. versionadded:: unreleased
        """
        if not callable(hook):
            raise ConfigurationError("an event hook must be callable")
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(hook)

    @property
    def event_hooks(self) -> tuple[SessionEventHook, ...]:
        """The hooks registered with :meth:`add_event_hook` and :meth:`add_listener`
        (read-only; a listener appears as its adapter).

        .. versionadded:: unreleased
        """
        return tuple(self._listeners or ())

    def _emit(
        self, kind: SessionEventKind, *, cause: type[BaseException] | None = None, **fields: Any
    ) -> None:
        if self._listeners:
            self._emit_event(SessionEvent.of(kind, fields, cause))

    def _emit_event(self, event: SessionEvent) -> None:
        for fn in self._listeners or ():
            try:
                fn(event)
            except Exception:  # a listener must never break a refresh
                log.exception(
                    "authpulse listener failed on %s",
                    event.kind.value,
                    extra={
                        "authpulse_event": "listener_failed",
                        "authpulse_session": self.name,
                        "authpulse_kind": event.kind.value,
                    },
                )

    # ------------------------------------------------------------------ sync API

    def token(self) -> str:
        """A valid access token, refreshing first if there is none or it expired."""
        return self._get_sync().access

    def force_refresh(self) -> TokenSet:
        """Refresh now (joining a refresh already running) and return the new set."""
        return self._wait_sync("forced").token

    def set_token(self, token: TokenSet) -> None:
        """Install a token set obtained elsewhere — typically after the user signed in
        again following a :class:`LoginRequiredError`. ``on_token_update`` is not
        called (you already have the set); listeners see ``login_completed``.

        With a store, the set is also written there, so that peers sharing the
        store adopt it and a stored set that was unusable is replaced (a store
        failure is reported as ``store_unavailable``; the set is installed
        anyway).

        .. versionchanged:: unreleased
           The set is written to the session's store.
        """
        if not isinstance(token, TokenSet):
            raise ConfigurationError("set_token needs a TokenSet")
        self._check_open()
        self._install(Fetched(token, None), "initial")
        if self._coord is not None:
            self._coord.put(token, self._skew)
        self._emit(SessionEventKind.LOGIN_COMPLETED, generation=self._generation)

    def refresh_if_due(self, *, lead: float = 0.0) -> TokenSet:
        """Refresh now, in this thread, if the token is STALE or EXPIRED (or will be
        within ``lead`` seconds); otherwise return the current set. Used by
        maintenance workers; joins a refresh already running."""
        cur = self._cur
        if cur is not None and self.clock.now() + lead < cur.refresh_at:
            return cur.token
        return self._wait_sync(self._due_reason(cur, lead)).token

    def _due_reason(self, cur: _Current | None, lead: float) -> RefreshReason:
        if cur is None or self.clock.now() >= cur.expires_at:
            return "expired"
        return "forced" if lead > 0 else "stale"

    # ----------------------------------------------------------------- async API

    async def atoken(self) -> str:
        """Async twin of :meth:`token`; never blocks the event loop."""
        return (await self._get_async()).access

    async def aforce_refresh(self) -> TokenSet:
        """Async twin of :meth:`force_refresh`."""
        return (await self._wait_async("forced")).token

    async def arefresh_if_due(self, *, lead: float = 0.0) -> TokenSet:
        """Async twin of :meth:`refresh_if_due`."""
        cur = self._cur
        if cur is not None and self.clock.now() + lead < cur.refresh_at:
            return cur.token
        return (await self._wait_async(self._due_reason(cur, lead))).token

    # -------------------------------------------------------------- httpx glue

    def auth(self, *, origins: Iterable[str] | None = None) -> SessionAuth:
        """An ``httpx.Auth`` for any ``httpx.Client`` / ``AsyncClient`` — and an
        ``httpx2.Auth`` for any ``httpx2.Client`` / ``AsyncClient``: one object
        plugs into either library's clients.

        It sets ``Authorization`` on requests to ``origins`` (default: the
        session's ``origins``; if neither is given, every origin — httpx
        itself drops the header on a redirect to another origin). On a 401
        it refreshes if the rejected token is still current and replays the
        request once, if its body can be sent again.
        """
        from .auth import SessionAuth

        allowed = parse_origins(origins) if origins is not None else self.origins
        return SessionAuth(self, allowed)

    # ---------------------------------------------------------------- lifecycle

    def close(self, *, wait: bool = True) -> None:
        """Refuse further use, wait for background refreshes (unless ``wait`` is
        false) and close the token HTTP client. Idempotent."""
        self._closed = True
        if wait:
            self.join_background(self.retry.deadline + 1)
        if self._http is not None:
            self._http.close()
            self._http = None

    def join_background(self, timeout: float | None = None) -> None:
        """Wait for background refresh threads started by sync callers."""
        me = threading.current_thread()
        for t in list(self._threads or ()):
            if t is not me:
                t.join(timeout)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: also awaits background refresh tasks."""
        self._closed = True
        tasks = [t for t in self._tasks or () if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._ahttp is not None:
            await self._ahttp.aclose()
            self._ahttp = None
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ================================================================ internals

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"session {self.name!r} is closed")

    def _make_current(self, token: TokenSet) -> _Current:
        sched = schedule(token, self.policy, skew=self._skew, u=self._rng.random())
        access = token.access_token.get_secret_value()
        self._generation += 1
        return _Current(
            token,
            access,
            f"{token.token_type} {access}",
            sched.refresh_at,
            sched.expires_at,
            self._generation,
        )

    def _context(self, current: TokenSet | None, afresh: str | None = None) -> FetchContext:
        def on_retry(attempt: int, sleep: float, exc: BaseException | None) -> None:
            cls = getattr(exc, "error_class", None)
            self._emit(
                SessionEventKind.RETRY,
                cause=type(exc) if exc is not None else None,
                attempt=attempt,
                sleep=sleep,
                error_class=cls.value if cls is not None else None,
                error=type(exc).__name__ if exc else None,
            )

        return FetchContext(
            current=current,
            clock=self.clock,
            retry=self.retry,
            rng=self._rng,
            default_lifetime=self.policy.default_lifetime,
            http=self._sync_client,
            ahttp=self._async_client,
            on_retry=on_retry,
            breaker=self._token_breaker(),
            afresh=afresh,
        )

    def _sync_client(self) -> httpx.Client:
        if self._http is None:
            self._http = client_for(self._transport, follow_redirects=False)
        return self._http

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._ahttp is None or self._ahttp_loop is not loop:
            # An AsyncClient's connections belong to one event loop.
            self._ahttp = async_client_for(self._async_transport, follow_redirects=False)
            self._ahttp_loop = loop
        return self._ahttp

    # -- outcome bookkeeping (shared by both shells) ----------------------------------

    def _accept(self, fetched: Fetched) -> TokenSet:
        token = fetched.token
        if self._verifier is not None and token.access_token.get_secret_value().count(".") == 2:
            self._verifier.verify(
                token.access_token.get_secret_value(), now=self.clock.now() + (fetched.skew or 0.0)
            )
        sched = schedule(
            token, self.policy, skew=fetched.skew if fetched.skew is not None else self._skew
        )
        if sched.expires_at <= self.clock.now():
            raise TokenResponseError("the token endpoint returned a token that has already expired")
        return token

    def _install(
        self, fetched: Fetched, reason: RefreshReason, *, adopted: bool = False
    ) -> _Current:
        previous_level = self._fallback_level
        with self._lock:
            self._fallback_level = fetched.level
            self._login_required = None
            if fetched.skew is not None:
                self._skew = fetched.skew
            cur = self._make_current(fetched.token)
            self._cur = cur
            self._flight = None
            self._flight_loop = None
            self._refreshes += 1
            self._consecutive_failures = 0
            self._next_bg_attempt = float("-inf")
            self._last_refresh_at = self.clock.now()
        self._emit(
            SessionEventKind.REFRESHED,
            reason=reason,
            generation=cur.generation,
            expires_in=round(cur.expires_at - self.clock.now(), 3),
            rotated=fetched.token.refresh_token is not None,
            level=fetched.level,
            adopted=adopted,
        )
        if fetched.level > 0 and fetched.level != previous_level:
            self._emit(
                SessionEventKind.FALLBACK_USED,
                level=fetched.level,
                source=_level_name(self.source, fetched.level),
            )
        elif fetched.level == 0 and previous_level > 0:
            self._emit(SessionEventKind.PRIMARY_RECOVERED, previous_level=previous_level)
        log.info(
            "token refreshed",
            extra={
                "authpulse_event": "refreshed",
                "authpulse_session": self.name,
                "authpulse_reason": reason,
                "authpulse_generation": cur.generation,
                "authpulse_level": fetched.level,
                "authpulse_adopted": adopted,
            },
        )
        return cur

    def _record_replaced(self, discarded: CorruptRecordError, *, written: bool) -> None:
        """Report that the unusable stored set was replaced by a fetched one."""
        self._emit(
            SessionEventKind.TOKEN_RECORD_REPLACED,
            cause=type(discarded),
            error=type(discarded).__name__,
            problem=discarded.reason,
            written=written,
        )
        log.warning(
            "the stored token set was unusable (%s); a new one was fetched%s",
            discarded.reason,
            " and stored" if written else " (not stored: the store failed)",
            extra={
                "authpulse_event": "token_record_replaced",
                "authpulse_session": self.name,
                "authpulse_error": type(discarded).__name__,
                "authpulse_written": written,
            },
        )

    def _fail(self, exc: BaseException, reason: RefreshReason) -> None:
        with self._lock:
            self._flight = None
            self._flight_loop = None
            self._failures += 1
            self._consecutive_failures += 1
            now = self.clock.now()
            self._last_failure_at = now
            self._next_bg_attempt = self.clock.monotonic() + self.policy.stale_retry_delay(
                self._consecutive_failures
            )
            cls = getattr(exc, "error_class", None)
            self._last_error = (
                f"{type(exc).__name__}: {exc}"
                if isinstance(exc, AuthpulseError)
                else type(exc).__name__
            )
            self._last_error_class = cls.value if cls is not None else None
            if isinstance(exc, LoginRequiredError):
                self._login_required = exc
                self._next_bg_attempt = float("inf")  # only a new login helps now
        if isinstance(exc, LoginRequiredError):
            self._emit(
                SessionEventKind.LOGIN_REQUIRED,
                cause=type(exc),
                has_login_url=exc.login_url is not None,
                reason=exc.reason,
            )
        self._emit(
            SessionEventKind.REFRESH_FAILED,
            cause=type(exc),
            reason=reason,
            error=type(exc).__name__,
            error_class=self._last_error_class,
            consecutive_failures=self._consecutive_failures,
        )
        log.warning(
            "token refresh failed: %s",
            self._last_error,
            extra={
                "authpulse_event": "refresh_failed",
                "authpulse_session": self.name,
                "authpulse_reason": reason,
                "authpulse_generation": self._generation,
                "authpulse_error": type(exc).__name__,
                "authpulse_error_class": self._last_error_class,
                "authpulse_consecutive_failures": self._consecutive_failures,
            },
        )

    @staticmethod
    def _as_waiter_error(exc: BaseException) -> BaseException:
        if isinstance(exc, AuthpulseError | asyncio.CancelledError):
            return exc
        err = RefreshError(f"token refresh failed: {type(exc).__name__}")
        err.__cause__ = exc
        return err

    def _hook_failed(self, exc: BaseException) -> None:
        self._emit(SessionEventKind.HOOK_FAILED, cause=type(exc), error=type(exc).__name__)
        log.error(
            "on_token_update hook raised %s; the new token is installed anyway",
            type(exc).__name__,
            extra={
                "authpulse_event": "hook_failed",
                "authpulse_session": self.name,
                "authpulse_hook": "on_token_update",
                "authpulse_error": type(exc).__name__,
            },
        )

    # -- claiming the flight ----------------------------------------------------------

    def _claim(
        self, reason: RefreshReason, rejected: int | None, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[concurrent.futures.Future[_Current] | _Current, bool]:
        """Return (the current token, False) if no refresh is needed any more, else
        (the flight future, is_leader)."""
        with self._lock:
            self._check_open()
            if self._login_required is not None and reason != "forced":
                raise self._login_required
            cur = self._cur
            if cur is not None:
                if rejected is not None and cur.generation != rejected:
                    return cur, False  # someone already replaced the rejected token
                if reason == "expired" and self.clock.now() < cur.expires_at:
                    return cur, False  # refreshed while we were getting here
                if reason == "stale" and self.clock.now() < cur.refresh_at:
                    return cur, False  # a background refresh finished meanwhile
            fut = self._flight
            if fut is not None:
                return fut, False
            fut = concurrent.futures.Future()
            self._flight = fut
            self._flight_loop = loop
            self._token_requests += 1
            return fut, True

    def _claim_emit(
        self,
        reason: RefreshReason,
        rejected: int | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> tuple[concurrent.futures.Future[_Current] | _Current, bool]:
        claimed, leader = self._claim(reason, rejected, loop)
        if leader:
            self._emit(SessionEventKind.REFRESH_STARTED, reason=reason)
        return claimed, leader

    def _current_for_fetch(self) -> TokenSet | None:
        cur = self._cur
        return cur.token if cur else None


def _check_arguments(
    *,
    policy: object,
    retry: object,
    clock: object,
    verifier: object,
    transport: object,
    async_transport: object,
    seed: object,
    rng: object,
    name: object,
    identity: object,
    store_key: object,
    lock_ttl: object,
) -> None:
    """Refuse, where they are given, the arguments that would fail later, inside
    a refresh (as ``token refresh failed: AttributeError``)."""
    if policy is not None and not isinstance(policy, RefreshPolicy):
        raise ConfigurationError("policy must be a RefreshPolicy")
    if retry is not None and not isinstance(retry, TokenRetry):
        raise ConfigurationError("retry must be a TokenRetry")
    if clock is not None and not all(
        callable(getattr(clock, m, None)) for m in ("now", "monotonic", "sleep", "asleep")
    ):
        raise ConfigurationError("clock must be a Clock (now, monotonic, sleep, asleep)")
    if verifier is not None and not callable(getattr(verifier, "verify", None)):
        raise ConfigurationError("verifier must be a JWTVerifier")
    if transport is not None and not isinstance(transport, _SYNC_TRANSPORTS):
        raise ConfigurationError(
            "transport must be an httpx (or httpx2) BaseTransport, such as httpx.HTTPTransport,"
            f" not {type(transport).__name__}"
        )
    if async_transport is not None and not isinstance(async_transport, _ASYNC_TRANSPORTS):
        raise ConfigurationError(
            "async_transport must be an httpx (or httpx2) AsyncBaseTransport, such as "
            f"httpx.AsyncHTTPTransport, not {type(async_transport).__name__}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigurationError("seed must be an integer")
    if rng is not None and not isinstance(rng, random.Random):
        raise ConfigurationError("rng must be a random.Random")
    for what, value in (("name", name), ("identity", identity)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{what} must be a non-empty string")
    if store_key is not None:  # it names the store's records and refresh lock
        check_id(store_key, "store_key", MAX_KEY_LENGTH)
    if isinstance(lock_ttl, bool) or not (
        isinstance(lock_ttl, int | float) and math.isfinite(lock_ttl) and lock_ttl > 0
    ):
        raise ConfigurationError("lock_ttl must be a positive number of seconds")


_SYNC_TRANSPORTS = every("BaseTransport")
_ASYNC_TRANSPORTS = every("AsyncBaseTransport")


def _level_name(source: TokenSource, level: int) -> str:
    levels = getattr(source, "levels", None)
    if isinstance(levels, tuple) and 0 <= level < len(levels):
        return type(levels[level]).__name__
    return type(source).__name__


_DEFAULT_POLICY = RefreshPolicy()
_DEFAULT_RETRY = TokenRetry()


_BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}
#: stale cache answers count against health for this long (seconds)
_STALE_MEMORY = 300.0
#: the event a store-state change reports, by "the store is available"
_STORE_KINDS = {True: SessionEventKind.STORE_RECOVERED, False: SessionEventKind.STORE_UNAVAILABLE}


# The public names defined here show the module they are imported from.
for _public in (
    RefreshStats,
    Session,
):
    _public.__module__ = "authpulse"
del _public

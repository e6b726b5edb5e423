"""``Session``: a token that never lapses, refreshed once for everyone.

The decisions (fresh / stale / expired, when to retry) are the pure
functions of ``_policy``; this module is the shell that reads the clock,
does the I/O and coordinates threads and coroutines.

Single flight (``_single_flight``): one ``concurrent.futures.Future`` stands
for the refresh in progress, and one refresh, written once as a flow, serves
threads and coroutines alike. A STALE token starts a refresh in the
background and keeps being served; only an EXPIRED token makes callers wait.
This module holds the session's token state: claiming the flight,
installing a token set, recording a failure. :class:`Session` is a facade
over its collaborators, each in a module of its own (what it reports of
them is :class:`~.session_observation.SessionObservation`): the refresh
counters and the reports of each outcome (:mod:`.refresh_book`, sent to
the event hooks of its base, :mod:`.session_events`), the health signals
and request statistics (:mod:`.session_signals`), the token endpoint's HTTP
clients (:mod:`.token_clients`), and the arguments with the store binding
built from them (:mod:`.session_config`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from .._core.errors import (
    ConfigurationError,
)
from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._core.signals import SessionEventKind
from .._core.tokens import TokenSet
from .._runtime.backend import parse_origins
from .._runtime.breakers import BreakerPolicy, BreakerRegistry
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow import run_async, run_sync
from .._stores.base import SessionStore
from .coordination import Coordinator
from .fetch import Fetched, TokenSource
from .flight_state import RefreshReason, _Current
from .refresh_book import RefreshBook, RefreshStats
from .revocation import revoke_flow
from .session_config import (
    DEFAULT_POLICY,
    DEFAULT_RETRY,
    check_arguments,
    make_breakers,
    make_coordinator,
)
from .session_observation import SessionObservation
from .session_signals import SessionSignals
from .single_flight import SingleFlight
from .token_clients import TokenClients
from .verify import JWTVerifier

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport
    from .auth import SessionAuth

__all__ = ["RefreshStats", "Session", "TokenUpdateHook"]

log = logging.getLogger("authpulse.session")

TokenUpdateHook = Callable[[TokenSet], None] | Callable[[TokenSet], Awaitable[None]]


class Session(SessionObservation, SingleFlight):
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
        "_async_transport",
        "_book",
        "_clients",
        "_coord",
        "_hook",
        "_rng",
        "_signals",
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
        check_arguments(locals())
        self.source = source
        self.policy = policy or DEFAULT_POLICY
        self.retry = retry or DEFAULT_RETRY
        self.clock: Clock = clock or SystemClock()
        self.name = name or type(source).__name__
        #: who the tokens belong to, for cache keys; unique per session unless given
        self.identity = identity or f"session-{secrets.token_hex(8)}"
        self._book = RefreshBook(self.name)  # the counters, and the event hooks
        self._signals = SessionSignals(
            make_breakers(breaker, self.clock),
            clock=self.clock,
            window=request_window,
            name=self.name,
            events=self._book,
        )
        self._coord: Coordinator | None = make_coordinator(
            store,
            store_key,
            self.name,
            clock=self.clock,
            policy=self.policy,
            retry=self.retry,
            lock_ttl=lock_ttl,
            on_store_state=self._store_state,
        )
        self.origins = parse_origins(origins)
        self._hook = on_token_update
        self._verifier = verifier
        # made by the first token request: most managed sessions start with a token
        self._clients: TokenClients | None = None
        self._transport = transport
        self._async_transport = async_transport
        # jitter, not cryptography; a manager shares one generator among its sessions
        self._rng = rng if rng is not None else random.Random(seed)  # noqa: S311
        super().__init__()
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
        self._book.emit(SessionEventKind.LOGIN_COMPLETED, generation=self._generation)

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

    def revoke(self) -> int:
        """Revoke the grant at the IdP (RFC 7009: the refresh token, then an opaque
        access token) and forget the token set, here and in the store; how many
        tokens were revoked. Needs the source's ``revocation_url``; a refusal or
        failure raises :class:`~authpulse.RevocationError`. Without a way to get a
        new token, the next :meth:`token` raises :class:`~authpulse.LoginRequiredError`.

        .. versionadded:: unreleased
        """
        return run_sync(revoke_flow(self))

    async def arevoke(self) -> int:
        """Async twin of :meth:`revoke`."""
        return await run_async(revoke_flow(self))

    def _forget(self) -> None:
        with self._lock:
            self._cur = None

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
        if self._clients is not None:
            self._clients.close()

    def _token_clients(self) -> TokenClients:
        clients = self._clients
        if clients is None:  # in a refresh: one at a time (the single flight)
            clients = self._clients = TokenClients(self._transport, self._async_transport)
        return clients

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
        if self._clients is not None:
            await self._clients.aclose()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# The public names defined here show the module they are imported from.
for _public in (Session,):
    _public.__module__ = "authpulse"
del _public

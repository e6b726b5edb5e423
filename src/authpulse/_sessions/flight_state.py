"""The token state a :class:`~authpulse.Session`'s single flight works on.

:class:`FlightState` holds the current token (``_cur``, read on the hot
path) and the bookkeeping of a refresh, shared by the sync and the async
shell: claiming the flight, building the fetch context, accepting and
installing a token set, recording a failure. The counters and the reports
of each outcome are the session's :class:`~.refresh_book.RefreshBook`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .._core.errors import (
    AuthpulseError,
    LoginRequiredError,
    RefreshError,
    TokenResponseError,
    UsageError,
)
from .._core.policy import schedule
from .._core.signals import SessionEventKind
from .._core.tokens import TokenSet
from .fetch import FetchContext, Fetched

if TYPE_CHECKING:
    import random

    from .._core.policy import RefreshPolicy
    from .._core.retry import TokenRetry
    from .._runtime.clock import Clock
    from .._stores.base import CorruptRecordError
    from .fetch import TokenSource
    from .refresh_book import RefreshBook
    from .session_signals import SessionSignals
    from .token_clients import TokenClients
    from .verify import JWTVerifier

__all__ = ["FlightState", "RefreshReason"]

RefreshReason = Literal["expired", "stale", "forced", "rejected", "initial"]


@dataclass(frozen=True, slots=True)
class _Current:
    token: TokenSet
    # raw, for the hot path; kept out of the repr (frames holding one print it)
    access: str = field(repr=False)
    header: str = field(repr=False)
    refresh_at: float  # local clock
    expires_at: float  # local clock
    generation: int


class FlightState:
    """The current token and the bookkeeping of its refreshes (a base of
    :class:`~authpulse.Session`, which holds the collaborators declared below)."""

    __slots__ = (
        "_closed",
        "_cur",
        "_flight",
        "_flight_loop",
        "_generation",
        "_lock",
        "_next_bg_attempt",
        "_skew",
    )

    if TYPE_CHECKING:
        source: TokenSource
        policy: RefreshPolicy
        retry: TokenRetry
        clock: Clock
        name: str
        _rng: random.Random
        _verifier: JWTVerifier | None
        _book: RefreshBook
        _signals: SessionSignals

        def _token_clients(self) -> TokenClients: ...

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cur: _Current | None = None
        self._closed = False
        self._skew = 0.0
        self._generation = 0
        self._flight: concurrent.futures.Future[_Current] | None = None
        self._flight_loop: asyncio.AbstractEventLoop | None = None
        #: monotonic time before which no background refresh starts (after a failure)
        self._next_bg_attempt = float("-inf")

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
            self._book.emit(
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
            http=self._token_clients().sync,
            ahttp=self._token_clients().async_,
            on_retry=on_retry,
            breaker=self._signals.token_breaker(self.source, self.name),
            afresh=afresh,
        )

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
        book = self._book
        previous_level = book.fallback_level
        with self._lock:
            if fetched.skew is not None:
                self._skew = fetched.skew
            cur = self._cur = self._make_current(fetched.token)
            self._flight = None
            self._flight_loop = None
            self._next_bg_attempt = float("-inf")
            book.succeeded(fetched.level, self.clock.now())
        book.report_installed(
            fetched,
            reason,
            cur,
            previous_level=previous_level,
            adopted=adopted,
            now=self.clock.now(),
            source=self.source,
        )
        return cur

    def _record_replaced(self, discarded: CorruptRecordError, *, written: bool) -> None:
        self._book.report_replaced(discarded, written=written)

    def _fail(self, exc: BaseException, reason: RefreshReason) -> None:
        book = self._book
        with self._lock:
            self._flight = None
            self._flight_loop = None
            book.failed(exc, self.clock.now())
            self._next_bg_attempt = (
                float("inf")  # only a new login helps now
                if isinstance(exc, LoginRequiredError)
                else self.clock.monotonic()
                + self.policy.stale_retry_delay(book.consecutive_failures)
            )
        book.report_failed(exc, reason, self._generation)

    @staticmethod
    def _as_waiter_error(exc: BaseException) -> BaseException:
        if isinstance(exc, AuthpulseError | asyncio.CancelledError):
            return exc
        err = RefreshError(f"token refresh failed: {type(exc).__name__}")
        err.__cause__ = exc
        return err

    def _hook_failed(self, exc: BaseException) -> None:
        self._book.report_hook_failed(exc)

    # -- claiming the flight ----------------------------------------------------------

    def _claim(
        self, reason: RefreshReason, rejected: int | None, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[concurrent.futures.Future[_Current] | _Current, bool]:
        """Return (the current token, False) if no refresh is needed any more, else
        (the flight future, is_leader)."""
        with self._lock:
            self._check_open()
            if self._book.login_required is not None and reason != "forced":
                raise self._book.login_required
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
            self._book.token_requests += 1
            return fut, True

    def _claim_emit(
        self,
        reason: RefreshReason,
        rejected: int | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> tuple[concurrent.futures.Future[_Current] | _Current, bool]:
        claimed, leader = self._claim(reason, rejected, loop)
        if leader:
            self._book.emit(SessionEventKind.REFRESH_STARTED, reason=reason)
        return claimed, leader

    def _current_for_fetch(self) -> TokenSet | None:
        cur = self._cur
        return cur.token if cur else None

"""The refresh bookkeeping of one :class:`~authpulse.Session`: its counters,
the last failure, and the events and log lines that report each outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._core.errors import AuthpulseError, LoginRequiredError
from .._core.signals import SessionEventKind
from .session_events import EventRelay

if TYPE_CHECKING:
    from .._stores.base import CorruptRecordError
    from .fetch import Fetched, TokenSource
    from .flight_state import RefreshReason, _Current

__all__ = ["RefreshBook", "RefreshStats"]

log = logging.getLogger("authpulse.session")


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


class RefreshBook(EventRelay):
    """Counts a session's refreshes and reports their outcomes, to the session's
    event hooks (its base, :class:`~.session_events.EventRelay`) and its log.

    :meth:`succeeded` and :meth:`failed` update the counters (the session
    calls them under its lock); the ``report_*`` methods send the events and
    write the log lines, outside the lock.
    """

    __slots__ = (
        "consecutive_failures",
        "failures",
        "fallback_level",
        "last_error",
        "last_error_class",
        "last_failure_at",
        "last_refresh_at",
        "login_required",
        "refreshes",
        "token_requests",
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.refreshes = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.token_requests = 0
        self.last_refresh_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: str | None = None
        self.last_error_class: str | None = None
        #: the level of the source chain that produced the current token (0: the primary)
        self.fallback_level = 0
        #: set when only a new login can help
        self.login_required: LoginRequiredError | None = None

    def stats(self, skew: float, generation: int) -> RefreshStats:
        return RefreshStats(
            refreshes=self.refreshes,
            failures=self.failures,
            consecutive_failures=self.consecutive_failures,
            token_requests=self.token_requests,
            last_refresh_at=self.last_refresh_at,
            last_failure_at=self.last_failure_at,
            last_error=self.last_error,
            last_error_class=self.last_error_class,
            skew=skew,
            generation=generation,
        )

    def succeeded(self, level: int, now: float) -> None:
        self.fallback_level = level
        self.login_required = None
        self.refreshes += 1
        self.consecutive_failures = 0
        self.last_refresh_at = now

    def failed(self, exc: BaseException, now: float) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_failure_at = now
        cls = getattr(exc, "error_class", None)
        self.last_error = (
            f"{type(exc).__name__}: {exc}"
            if isinstance(exc, AuthpulseError)
            else type(exc).__name__
        )
        self.last_error_class = cls.value if cls is not None else None
        if isinstance(exc, LoginRequiredError):
            self.login_required = exc

    def report_installed(
        self,
        fetched: Fetched,
        reason: RefreshReason,
        cur: _Current,
        *,
        previous_level: int,
        adopted: bool,
        now: float,
        source: TokenSource,
    ) -> None:
        emit = self.emit
        emit(
            SessionEventKind.REFRESHED,
            reason=reason,
            generation=cur.generation,
            expires_in=round(cur.expires_at - now, 3),
            rotated=fetched.token.refresh_token is not None,
            level=fetched.level,
            adopted=adopted,
        )
        if fetched.level > 0 and fetched.level != previous_level:
            emit(
                SessionEventKind.FALLBACK_USED,
                level=fetched.level,
                source=_level_name(source, fetched.level),
            )
        elif fetched.level == 0 and previous_level > 0:
            emit(SessionEventKind.PRIMARY_RECOVERED, previous_level=previous_level)
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

    def report_failed(self, exc: BaseException, reason: RefreshReason, generation: int) -> None:
        if isinstance(exc, LoginRequiredError):
            self.emit(
                SessionEventKind.LOGIN_REQUIRED,
                cause=type(exc),
                has_login_url=exc.login_url is not None,
                reason=exc.reason,
            )
        self.emit(
            SessionEventKind.REFRESH_FAILED,
            cause=type(exc),
            reason=reason,
            error=type(exc).__name__,
            error_class=self.last_error_class,
            consecutive_failures=self.consecutive_failures,
        )
        log.warning(
            "token refresh failed: %s",
            self.last_error,
            extra={
                "authpulse_event": "refresh_failed",
                "authpulse_session": self.name,
                "authpulse_reason": reason,
                "authpulse_generation": generation,
                "authpulse_error": type(exc).__name__,
                "authpulse_error_class": self.last_error_class,
                "authpulse_consecutive_failures": self.consecutive_failures,
            },
        )

    def report_replaced(self, discarded: CorruptRecordError, *, written: bool) -> None:
        """Report that the unusable stored set was replaced by a fetched one."""
        self.emit(
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

    def report_hook_failed(self, exc: BaseException) -> None:
        self.emit(SessionEventKind.HOOK_FAILED, cause=type(exc), error=type(exc).__name__)
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


def _level_name(source: TokenSource, level: int) -> str:
    levels = getattr(source, "levels", None)
    if isinstance(levels, tuple) and 0 <= level < len(levels):
        return type(levels[level]).__name__
    return type(source).__name__


# The public names defined here show the module they are imported from.
for _public in (RefreshStats,):
    _public.__module__ = "authpulse"
del _public

"""What a :class:`~authpulse.Session` tells of itself: its health and the
signals behind it, its refresh counters, its breakers, and the hooks that
hear its events. Each answer comes from one of the session's collaborators."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.errors import ConfigurationError
from .._core.health import HealthReport, HealthSignals, compute_health
from .._core.policy import Freshness
from .._core.signals import LegacyListener, SessionEventHook
from .._runtime.breakers import BreakerRegistry
from .refresh_book import RefreshStats
from .session_config import STORE_KINDS
from .stats import RequestWindow

if TYPE_CHECKING:
    from .._runtime.clock import Clock
    from .coordination import Coordinator
    from .flight_state import _Current
    from .refresh_book import RefreshBook
    from .session_signals import SessionSignals

__all__ = ["SessionObservation"]


class SessionObservation:
    """The observation surface of :class:`~authpulse.Session` (a base holding
    no state: the session holds the collaborators declared below)."""

    __slots__ = ()

    if TYPE_CHECKING:
        clock: Clock
        on_request: Callable[[bool, float], None] | None
        _cur: _Current | None
        _closed: bool
        _coord: Coordinator | None
        _skew: float
        _generation: int
        _book: RefreshBook
        _signals: SessionSignals

    @property
    def fallback_level(self) -> int:
        """The level of the source chain that produced the current token (0: the primary).

        .. versionadded:: unreleased
        """
        return self._book.fallback_level

    @property
    def api_retries(self) -> int:
        """API requests of this session's clients retried so far.

        .. versionadded:: unreleased
        """
        return self._signals.api_retries

    def breaker_registries(self) -> tuple[BreakerRegistry, ...]:
        """The breaker registries guarding this session: its token endpoint's, then
        those of its API clients (read-only; for metrics and dashboards).

        .. versionadded:: unreleased
        """
        return self._signals.registries()

    def breaker_state(self) -> str | None:
        """The worst state of the breakers guarding this session's upstreams
        (the token endpoint and the API origins of its clients), or ``None``."""
        return self._signals.breaker_state()

    def _store_state(self, available: bool, error: str | None) -> None:
        self._book.emit(STORE_KINDS[available], error=error)

    def _watch_breakers(self, registry: BreakerRegistry) -> None:
        """Count ``registry``'s breakers in this session's health (clients call this)."""
        self._signals.watch(registry)

    def _api_event(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Retry, breaker and cache events of this session's clients."""
        self._signals.api_event(kind, fields)

    def request_window(self) -> RequestWindow:
        """Success rate, p95 latency and user-experience score of recent requests."""
        return self._signals.request_window()

    def _record_request(self, ok: bool, latency: float, ux_ok: bool) -> None:
        self._signals.record_request(ok, latency, ux_ok, self.on_request)

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
        return self._book.stats(self._skew, self._generation)

    def health_signals(self, now: float | None = None) -> HealthSignals:
        """The signals this session knows about (token and refresh outcome)."""
        return self._health_signals(self.clock.now() if now is None else now, None)

    def _health_signals(
        self, t: float, observed: tuple[str, bool | None, int] | None
    ) -> HealthSignals:
        """:meth:`health_signals` at ``t``, with what a manager observed besides
        (``(auth_state, heartbeat_ok, worker_errors)``) when it asks."""
        store_ok = None if self._coord is None else self._coord.store_ok
        return self._signals.gather(
            t,
            self._cur,
            self.freshness(t).value,
            self._book,
            closed=self._closed,
            store_available=store_ok,
            observed=observed,
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
        self._book.add(hook)

    @property
    def event_hooks(self) -> tuple[SessionEventHook, ...]:
        """The hooks registered with :meth:`add_event_hook` and :meth:`add_listener`
        (read-only; a listener appears as its adapter).

        .. versionadded:: unreleased
        """
        return self._book.hooks

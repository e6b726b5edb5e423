"""What a :class:`~authpulse.Session`'s health is computed from, beyond its
token and its refreshes: the breakers guarding it, the retries and stale
answers of its API clients, and the statistics of its requests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.health import HealthSignals, refresh_token_remaining
from .._core.signals import ApiEventKind, SessionEvent, api_kind
from .._runtime.breakers import BreakerRegistry, CircuitBreaker
from .stats import RequestStats, RequestWindow

if TYPE_CHECKING:
    from .._runtime.clock import Clock
    from .flight_state import _Current
    from .refresh_book import RefreshBook
    from .session_events import EventRelay

__all__ = ["SessionSignals"]

log = logging.getLogger("authpulse.session")

_BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}
#: stale cache answers count against health for this long (seconds)
_STALE_MEMORY = 300.0


class SessionSignals:
    """The health signals one session gathers from its upstreams and requests.

    ``breakers`` guards the token endpoint (``None``: no breaker); the
    registries of the session's API clients join with :meth:`watch`. The
    request statistics are created with the first request.
    """

    __slots__ = (
        "_api_breakers",
        "_events",
        "_requests",
        "_stale_served",
        "_window",
        "api_retries",
        "breakers",
        "clock",
        "introspected",
        "name",
    )

    def __init__(
        self,
        breakers: BreakerRegistry | None,
        *,
        clock: Clock,
        window: int,
        name: str,
        events: EventRelay,
    ) -> None:
        self.breakers = breakers
        self.clock = clock
        self.name = name
        self._events = events
        self._window = window
        self._api_breakers: list[BreakerRegistry] | None = None
        #: API requests of the session's clients retried so far
        self.api_retries = 0
        self._stale_served: list[float] | None = None
        self._requests: RequestStats | None = None
        #: ``(generation, active)``: what the IdP's introspection endpoint said of the
        #: access token of that generation (an introspection probe sets it)
        self.introspected: tuple[int, bool] | None = None

    # -- breakers ------------------------------------------------------------------

    def registries(self) -> tuple[BreakerRegistry, ...]:
        regs = () if self.breakers is None else (self.breakers,)
        return regs + tuple(self._api_breakers or ())

    def breaker_state(self) -> str | None:
        regs = ([self.breakers] if self.breakers is not None else []) + (self._api_breakers or [])
        worst: str | None = None
        for reg in regs:
            for st in reg.states().values():
                if _BREAKER_RANK[st.value] > _BREAKER_RANK.get(worst or "", -1):
                    worst = st.value
        return worst

    def token_breaker(self, source: object, name: str) -> CircuitBreaker | None:
        regs = self.breakers
        if regs is None:
            return None
        source_url = getattr(source, "token_url", None)  # "" until discovered (issuer=)
        return regs.get(source_url if isinstance(source_url, str) and source_url else name)

    def watch(self, registry: BreakerRegistry) -> None:
        if self._api_breakers is None:
            self._api_breakers = []
        if registry not in self._api_breakers:
            self._api_breakers.append(registry)

    # -- the API clients' events and the requests ------------------------------------

    def api_event(self, kind: str, fields: Mapping[str, Any]) -> None:
        api = api_kind(kind)
        if api is None:
            return  # not a kind this version knows: nothing counts it
        if api is ApiEventKind.RETRY_SCHEDULED:
            self.api_retries += 1
        elif api is ApiEventKind.STALE_SERVED:
            if self._stale_served is None:
                self._stale_served = []
            if len(self._stale_served) < 1000:
                self._stale_served.append(self.clock.now())
        self._events.send(SessionEvent.from_api(api, fields))

    def request_window(self) -> RequestWindow:
        stats = self._requests
        if stats is None:
            return RequestWindow(0, 0, None, None, None, None, None)
        return stats.snapshot()

    def record_request(
        self, ok: bool, latency: float, ux_ok: bool, hook: Callable[[bool, float], None] | None
    ) -> None:
        stats = self._requests
        if stats is None:
            stats = self._requests = RequestStats(self._window)
        stats.record(ok, latency, ux_ok=ux_ok)
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

    # -- gathering ---------------------------------------------------------------------

    def gather(
        self,
        t: float,
        cur: _Current | None,
        freshness: str,
        book: RefreshBook,
        *,
        closed: bool,
        store_available: bool | None,
        observed: tuple[str, bool | None, int] | None = None,
    ) -> HealthSignals:
        """The session's health signals at ``t``. ``observed`` is what a manager
        knows besides: ``(auth_state, heartbeat_ok, worker_errors)``."""
        remaining = rt_left = active = None
        said = self.introspected
        if cur is not None and said is not None and said[0] == cur.generation:
            active = said[1]
        if cur is not None:
            life = cur.token.lifetime
            remaining = max(cur.expires_at - t, 0.0) / life if life > 0 else 0.0
            rt_left = refresh_token_remaining(cur.token, cur.expires_at, t)
        w = self.request_window()
        stale = self._stale_served
        if stale:
            horizon = t - _STALE_MEMORY
            stale[:] = [x for x in stale if x >= horizon]
        return HealthSignals(
            freshness=freshness,
            has_token=cur is not None,
            remaining_fraction=remaining,
            consecutive_refresh_failures=book.consecutive_failures,
            seconds_since_refresh_failure=(
                None if book.last_failure_at is None else t - book.last_failure_at
            ),
            auth_state=observed[0]
            if observed is not None
            else "closed"
            if closed
            else "login_required"
            if book.login_required is not None
            else None,
            fallback_level=book.fallback_level,
            breaker_state=self.breaker_state(),
            store_available=store_available,
            stale_served=len(stale) if stale else 0,
            requests=w.window,
            success_rate=w.success_rate,
            p95_latency=w.p95_latency,
            baseline_latency=w.baseline_latency,
            heartbeat_ok=None if observed is None else observed[1],
            worker_errors=0 if observed is None else observed[2],
            refresh_token_remaining=rt_left,
            token_active=active,
        )

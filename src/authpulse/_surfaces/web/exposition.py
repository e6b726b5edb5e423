"""The dashboard's ``/metrics``: the Prometheus text exposition (0.0.4) of the
metrics catalogue's series, built from the dashboard's views of every session."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..._core.health import Band
from ..._core.model import SessionKind, SessionRecord, SessionStatus
from ..._fleet.manager import SessionManager
from ..._runtime.breakers import BreakerRegistry
from ...metrics._core import Counts, State, exposition, families, label_value, read_breakers
from .views import View

__all__ = ["metrics_text"]


def metrics_text(
    records: Iterable[SessionRecord],
    view: Callable[[SessionRecord], View],
    *,
    manager: SessionManager | None,
    counts: Counts,
    session_limit: int,
    now: float,
) -> str:
    """The exposition of ``records``: ``view`` gives (and samples) an open one's health,
    at most ``session_limit`` open sessions get per-session series."""
    state = State(owners=False)
    for kind in SessionKind:
        for status in SessionStatus:
            state.add("sessions", (status.value, kind.value), 0.0)
    for band in Band:
        state.add("health_band", (band.value,), 0.0)
    registries: list[BreakerRegistry] = []
    shown = 0
    for record in records:
        state.add("sessions", (record.status.value, record.kind.value), 1.0)
        if record.status.terminal:
            continue
        v = view(record)
        state.add("health_band", (v.report.band.value,), 1.0)
        if shown < session_limit:
            shown += 1
            label = (label_value(record.id),)
            state.set("session_health", label, v.report.score)
            if v.expires_at is not None:
                state.set("session_expiry", label, max(v.expires_at - now, 0.0))
        if v.live is not None:
            registries.extend(v.live.session.breaker_registries())
    read_breakers(state, registries)
    if manager is not None:
        state.add("manager_ticks", (), manager.tick_count)
        state.add("manager_tick_errors", (), manager.tick_errors)
        state.add("manager_workers", (), 1.0 if manager.running else 0.0)
    tallies, durations = counts.counted()
    return exposition(families(state, tallies, durations, watching=manager is not None))

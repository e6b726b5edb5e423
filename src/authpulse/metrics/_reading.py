"""Reading the observed metrics at collection time: a :class:`State` filled from
sessions, managers, circuit breakers and response caches. Costs O(sessions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from .._core.errors import AuthpulseError
from .._core.health import Band
from .._core.model import SessionKind
from .._http.cache import ResponseCache
from .._runtime.breakers import BreakerRegistry
from .._sessions.session import Session
from ._catalogue import SPECS, Labels
from ._labels import label_value, upstream_label
from ._watch import ManagerWatch

__all__ = ["BANDS", "State", "read_breakers", "read_cache", "read_manager", "read_sessions"]

#: every health band, in order (``health_band`` is published at 0 for the empty ones)
BANDS: Final = tuple(b.value for b in Band)
_BREAKER_STATES: Final = ("closed", "half_open", "open")


class State:
    """Values of the observed metrics at one instant: ``values[key][labels]``."""

    __slots__ = ("owners", "values")

    def __init__(self, owners: bool) -> None:
        self.owners = owners
        self.values: dict[str, dict[Labels, float]] = {}

    def add(self, key: str, labels: Labels, value: float) -> None:
        series = self.values.setdefault(key, {})
        series[labels] = series.get(labels, 0.0) + value

    def set(self, key: str, labels: Labels, value: float) -> None:
        self.values.setdefault(key, {})[labels] = value

    def labels(self, key: str) -> Labels:
        spec = SPECS[key]
        return (*spec.labels, "owner") if key == "sessions" and self.owners else spec.labels


def _registries(session: Session) -> list[BreakerRegistry]:
    return list(session.breaker_registries())


def _expires_in(session: Session) -> float | None:
    expires_at = session.expires_at
    if expires_at is None:
        return None
    return max(expires_at - session.clock.now(), 0.0)


def read_sessions(
    state: State, sessions: Iterable[tuple[Session, str]], registries: list[BreakerRegistry]
) -> None:
    """Sessions instrumented on their own, each with its ``session`` label; their
    breaker registries are added to ``registries`` (read once, by :func:`read_breakers`)."""
    sessions = list(sessions)
    if sessions:
        for band in BANDS:
            state.add("health_band", (band,), 0.0)
    for session, label in sessions:
        registries.extend(_registries(session))
        if session.closed:
            continue
        report = session.health()
        state.add("health_band", (report.band.value,), 1.0)
        state.set("session_health", (label,), report.score)
        expires = _expires_in(session)
        if expires is not None:
            state.set("session_expiry", (label,), expires)


def read_breakers(state: State, registries: Iterable[BreakerRegistry]) -> None:
    seen: set[int] = set()
    for reg in registries:
        if id(reg) in seen:
            continue
        seen.add(id(reg))
        for name, snap in reg.snapshots().items():
            upstream = upstream_label(name)
            for st in _BREAKER_STATES:
                state.add("breaker_state", (upstream, st), 1.0 if snap.state.value == st else 0.0)
            state.add("breaker_opens", (upstream,), snap.opens)
            state.add("breaker_rejected", (upstream,), snap.rejected)


def read_cache(state: State, name: str, cache: ResponseCache) -> None:
    s = cache.stats()
    labels = (name,)
    state.add("cache_hits", labels, s.hits)
    state.add("cache_misses", labels, s.misses)
    state.add("cache_stale_served", (name, "revalidate"), s.stale_served)
    state.add("cache_stale_served", (name, "error"), s.stale_if_error_served)
    state.add("cache_revalidations", labels, s.revalidations)
    state.add("cache_revalidation_errors", labels, s.revalidation_errors)
    state.add("cache_not_cached", labels, s.not_cached)
    state.add("cache_evictions", labels, s.evictions)
    state.add("cache_entries", labels, s.entries)
    state.add("cache_bytes", labels, s.bytes)


def read_manager(state: State, mw: ManagerWatch, registries: list[BreakerRegistry]) -> None:
    manager = mw.manager
    if manager is None:
        return
    live = manager.live_sessions()
    if mw.owners:
        for ms in live:
            r = ms.record
            state.add("sessions", (r.status.value, r.kind.value, label_value(r.owner)), 1.0)
    else:
        for kind in SessionKind:
            for status, n in manager.stats(kind=kind).by_status.items():
                state.add("sessions", (status, kind.value), n)
    if mw.health:
        for band in BANDS:
            state.add("health_band", (band,), 0.0)
    now = manager.clock.now()
    for ms in live:
        if mw.health and not ms.record.status.terminal:
            try:
                report = manager.health(ms.id, now=now)
            except AuthpulseError:  # purged meanwhile
                continue
            state.add("health_band", (report.band.value,), 1.0)
            if mw.session_ids:
                label = (label_value(ms.id),)
                state.set("session_health", label, report.score)
                expires = _expires_in(ms.session)
                if expires is not None:
                    state.set("session_expiry", label, expires)
        registries.extend(_registries(ms.session))
    state.add("manager_ticks", (), manager.tick_count)
    state.add("manager_tick_errors", (), manager.tick_errors)
    state.add("manager_workers", (), 1.0 if manager.running else 0.0)

"""The data behind the dashboard page: :class:`Dashboard`.

The facade keeps the public API and its arguments' checks; what it knows
about a session comes from :mod:`.views` (live or estimated, and the
history ring), the JSON from :mod:`.rows` and ``/metrics`` from
:mod:`.exposition`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..._core.errors import ConfigurationError, UsageError
from ..._core.health import Band
from ..._core.model import SessionRecord, SessionStatus
from ..._core.policy import RefreshPolicy
from ..._fleet.manager import ManagedSession, SessionManager
from ..._runtime.clock import Clock, SystemClock
from ..._stores.base import SessionStore, check_page
from ...metrics._core import Counts, ManagerWatch
from .exposition import metrics_text
from .rows import detail, parse_statuses, row
from .views import HealthHistory, View, live, rounded, stored_record, stored_records, view

__all__ = ["BAND_COLOURS", "Dashboard"]

#: The colour of each band on the page (``app.css`` uses the same values).
BAND_COLOURS: Mapping[str, str] = {
    Band.EXCELLENT.value: "#1a7f37",  # green, 80–100
    Band.GOOD.value: "#0969da",  # blue, 60–79
    Band.FAIR.value: "#d4a72c",  # yellow, 40–59
    Band.POOR.value: "#e16f24",  # orange, 20–39
    Band.CRITICAL.value: "#cf222e",  # red, 0–19
}

_OPEN = (SessionStatus.ACTIVE, SessionStatus.PAUSED)
_MAX_LIMIT = 1000


class Dashboard:
    """The data behind the page: sessions, health, history, metrics.

    ``manager`` gives the sessions live in this process (real health
    reports, force refresh, cancel); ``store`` (default: the manager's)
    gives every stored record — a session only in the store (another
    process's) gets a health *estimate* from its record and stored token,
    marked ``"live": false``. ``clock`` defaults to the manager's.

    A ring of up to ``history`` health samples is kept per session, one
    taken whenever the API computes a session's health (and by
    :meth:`sample`), skipping a sample that repeats the last score within
    ``sample_spacing`` seconds.
    """

    def __init__(
        self,
        manager: SessionManager | None = None,
        *,
        store: SessionStore | None = None,
        clock: Clock | None = None,
        policy: RefreshPolicy | None = None,
        history: int = 360,
        sample_spacing: float = 2.0,
        metrics_session_limit: int = 1000,
    ) -> None:
        if manager is not None and not isinstance(manager, SessionManager):
            raise ConfigurationError("manager must be a SessionManager")
        if manager is None and store is None:
            raise ConfigurationError("a Dashboard needs a SessionManager, a store, or both")
        if store is not None and not callable(getattr(store, "query", None)):
            raise ConfigurationError("store must be a SessionStore (see authpulse.open_store)")
        if isinstance(history, bool) or not isinstance(history, int) or history < 2:
            raise ConfigurationError("history must be an integer of at least 2")
        if not isinstance(sample_spacing, int | float) or not sample_spacing >= 0:
            raise ConfigurationError("sample_spacing must be a number of seconds >= 0")
        if not isinstance(metrics_session_limit, int) or metrics_session_limit < 0:
            raise ConfigurationError("metrics_session_limit must be an integer >= 0")
        self.manager = manager
        self.store: SessionStore
        if store is not None:
            self.store = store
        elif manager is not None:
            self.store = manager.store
        self.clock: Clock = clock or (manager.clock if manager is not None else SystemClock())
        self.policy = policy or (
            manager.policy if manager is not None and manager.policy else RefreshPolicy()
        )
        self.history = history
        self.sample_spacing = float(sample_spacing)
        self.metrics_session_limit = metrics_session_limit
        self._rings = HealthHistory()
        #: the event counters of ``/metrics`` (the metrics catalogue's), from now on
        self._counts = Counts()
        self._watch = (
            None
            if manager is None
            else ManagerWatch(manager, self._counts, session_ids=False, owners=False, health=False)
        )

    def __repr__(self) -> str:
        mode = "live" if self.manager is not None else "store only"
        return f"<Dashboard {mode}, {len(self._rings)} sessions sampled>"

    # ------------------------------------------------------------------ gathering

    def _live(self, session_id: str) -> ManagedSession | None:
        return live(self.manager, session_id)

    def _view(self, record: SessionRecord, now: float) -> View:
        return view(self.manager, self.store, self.policy, record, now)

    def _seen(self, record: SessionRecord, now: float) -> View:
        """The session's view, its score noted in the history."""
        v = self._view(record, now)
        self._note(record.id, now, v.report.score)
        return v

    def _note(self, session_id: str, at: float, score: int) -> None:
        self._rings.note(session_id, at, score, size=self.history, spacing=self.sample_spacing)

    def _history(self, session_id: str) -> list[dict[str, Any]]:
        return self._rings.samples(session_id)

    # ------------------------------------------------------------------ the API

    def sessions(
        self,
        *,
        status: Iterable[SessionStatus | str] | SessionStatus | str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> dict[str, Any]:
        """``GET /api/sessions``: one row per stored session (oldest first), a page."""
        check_page(limit, offset, min_limit=1, max_limit=_MAX_LIMIT)
        statuses = parse_statuses(status)
        now = self.clock.now()
        records = self.store.query(status=statuses, limit=limit, offset=offset)
        rows = [row(self._seen(record, now)) for record in records]
        return {
            "now": rounded(now),
            "limit": limit,
            "offset": offset,
            "count": len(rows),
            "sessions": rows,
        }

    def session(self, session_id: str) -> dict[str, Any]:
        """``GET /api/sessions/{id}``: the record, health with components, timeline,
        token metadata (never the tokens), refresh counters and the health history.
        Unknown id: :class:`SessionNotFoundError`."""
        now = self.clock.now()
        record = stored_record(self.store, session_id)
        v = self._seen(record, now)
        return detail(v, history=self._history(record.id), timeline=self.store.events(record.id))

    def summary(self, *, worst: int = 5) -> dict[str, Any]:
        """``GET /api/health``: counts by band (open sessions) and by status, the
        worst open sessions."""
        now = self.clock.now()
        bands = {b.value: 0 for b in Band}
        statuses = {s.value: 0 for s in SessionStatus}
        open_rows: list[tuple[int, str, dict[str, Any]]] = []
        seen: list[str] = []
        for record in stored_records(self.store):
            seen.append(record.id)
            statuses[record.status.value] += 1
            if record.status.terminal:
                continue
            v = self._seen(record, now)
            bands[v.report.band.value] += 1
            open_rows.append((v.report.score, record.id, row(v)))
        self._rings.forget_missing(seen)
        open_rows.sort(key=lambda t: (t[0], t[1]))
        scores = [t[0] for t in open_rows]
        return {
            "now": rounded(now),
            "total": len(seen),
            "open": len(open_rows),
            "live": sum(1 for t in open_rows if t[2]["live"]),
            "mean_score": rounded(sum(scores) / len(scores), 1) if scores else None,
            "bands": bands,
            "statuses": statuses,
            "worst": [t[2] for t in open_rows[: max(worst, 0)]],
        }

    def sample(self) -> int:
        """Take a health sample of every open session (and forget the history of
        purged ones); returns how many were sampled."""
        now = self.clock.now()
        count = 0
        seen: list[str] = []
        for record in stored_records(self.store):
            seen.append(record.id)
            if record.status in _OPEN:
                self._seen(record, now)
                count += 1
        self._rings.forget_missing(seen)
        return count

    def refresh(self, session_id: str) -> dict[str, Any]:
        """Force a refresh of a live session now. Raises :class:`SessionNotFoundError`,
        :class:`UsageError` (not live here, or ended), or the refresh's own error."""
        ms = self._actionable(session_id)
        ms.session.force_refresh()
        return self._after_action(ms)

    def cancel(
        self, session_id: str, reason: str = "cancelled from the dashboard"
    ) -> dict[str, Any]:
        """Cancel a live session (→ CANCELLED)."""
        ms = self._actionable(session_id)
        if self.manager is None:  # pragma: no cover - _actionable needs a manager
            raise UsageError("no manager")
        self.manager.cancel(session_id, reason)
        return self._after_action(ms)

    def _actionable(self, session_id: str) -> ManagedSession:
        record = stored_record(self.store, session_id)
        ms = self._live(session_id)
        if ms is None:
            raise UsageError(
                f"session {session_id!r} is not live in this process: only its own "
                "process can refresh or cancel it"
            )
        if record.status.terminal or ms.record.status.terminal:
            raise UsageError(f"session {session_id!r} has ended ({ms.record.status.value})")
        return ms

    def _after_action(self, ms: ManagedSession) -> dict[str, Any]:
        now = self.clock.now()
        return {"ok": True, "session": row(self._seen(ms.record, now))}

    # ------------------------------------------------------------------ /metrics

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition format (0.0.4).

        The series are those of :data:`authpulse.metrics.METRICS`, with the
        names, types and labels :mod:`authpulse.metrics.prometheus` publishes
        for the same manager: the session gauges cover every stored session
        (estimated for those not live here; per-session series for at most
        ``metrics_session_limit`` open sessions), breakers and ticks come
        from the manager, and the event counters count from the moment this
        dashboard was made.
        """
        now = self.clock.now()
        return metrics_text(
            stored_records(self.store),
            lambda record: self._seen(record, now),
            manager=self.manager,
            counts=self._counts,
            session_limit=self.metrics_session_limit,
            now=now,
        )


# The public names defined here show the module they are imported from.
for _public in (Dashboard,):
    _public.__module__ = "authpulse"
del _public

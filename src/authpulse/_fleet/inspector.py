"""Looking at a manager's sessions: health reports (live, or from what the
store knows), store-wide statistics and the JSON export. Reads only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core.errors import ConfigurationError
from .._core.health import HealthReport, compute_health
from .._core.health import stored_health as _stored_health
from .._core.model import SessionKind, SessionRecord
from .._core.policy import RefreshPolicy
from .._sessions.stats import Aggregates, SessionStats
from .._stores.base import SessionStore, StoredToken, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from .._sessions.session import Session
    from .manager import SessionManager

__all__ = ["export", "health", "stored_health", "stored_stats", "window_dict"]


def health(m: SessionManager, session_id: str, now: float | None) -> HealthReport:
    """:meth:`SessionManager.health`."""
    t = m.clock.now() if now is None else now
    if isinstance(session_id, str) and session_id not in m._registry.live:
        record = m.record(session_id)
        return stored_health(record, m.store.get_token(session_id), t, m.policy)
    ms = m.admin_get(session_id)
    state = ms.machine.health_state(t)
    if ms.record.status.terminal:
        state = "closed"
    worker_errors = (
        1
        if (
            m._last_tick_error_at is not None
            and t - m._last_tick_error_at < m.settings.worker_error_memory
        )
        else 0
    )
    return compute_health(ms.session._health_signals(t, (state, ms.heartbeat_ok, worker_errors)))


def stored_health(
    record: SessionRecord, stored: StoredToken | None, now: float, policy: RefreshPolicy | None
) -> HealthReport:
    """A health report from what the store knows about a session (the one
    estimate the manager, the dashboards and the CLI share)."""
    return _stored_health(
        auth_state=record.auth_state,
        token=None if stored is None else stored.token,
        skew=0.0 if stored is None else stored.skew,
        now=now,
        policy=policy or RefreshPolicy(),
        closed=record.status.terminal,
    )


def stored_stats(
    store: SessionStore, owner: str | None, kind: SessionKind | str | None
) -> SessionStats:
    """:meth:`SessionManager.stored_stats`."""
    try:
        k = SessionKind(kind) if kind is not None else None
    except ValueError:
        raise ConfigurationError(f"unknown kind {kind!r}") from None
    agg = Aggregates()
    for r in store.query(owner=owner, kind=k):
        agg.added(r)
    return agg.stats(owner=owner, kind=k)


def export(m: SessionManager, session_id: str) -> dict[str, Any]:
    """:meth:`SessionManager.export`."""
    record = m.record(session_id)
    out: dict[str, Any] = {"session": record.to_public_dict()}
    ms = m._registry.live.get(session_id)
    if ms is not None:
        out["health"] = m.health(session_id).to_dict()
        ts = ms.session.token_set
        out["token"] = (
            None
            if ts is None
            else {
                "token_type": ts.token_type,
                "scope": ts.scope,
                "issued_at": ts.issued_at,
                "expires_at": ts.expires_at,
                "has_refresh_token": ts.refresh_token is not None,
                "generation": ms.session.generation,
            }
        )
        out["auth_state"] = ms.machine.state.value
        out["requests"] = window_dict(ms.session)
    else:  # not loaded here: what the store knows
        out["auth_state"] = record.auth_state
        try:
            stored = m.store.get_token(session_id)
        except StoreUnavailableError:
            raise
        except StoreError as exc:  # unreadable (wrong key, corrupt): say so, go on
            out["token"] = None
            out["token_error"] = type(exc).__name__
        else:
            out["health"] = stored_health(record, stored, m.clock.now(), m.policy).to_dict()
            out["token"] = (
                None
                if stored is None
                else {
                    "token_type": stored.token.token_type,
                    "scope": stored.token.scope,
                    "issued_at": stored.token.issued_at,
                    "expires_at": stored.token.expires_at,
                    "has_refresh_token": stored.token.refresh_token is not None,
                    "stored_version": stored.version,
                    "updated_at": stored.updated_at,
                }
            )
    out["timeline"] = [e.to_dict() for e in m.store.events(session_id)]
    return out


def window_dict(session: Session) -> dict[str, Any]:
    w = session.request_window()
    return {
        "total": w.total,
        "window": w.window,
        "success_rate": w.success_rate,
        "ux_score": w.ux_score,
        "p95_latency": w.p95_latency,
        "mean_latency": w.mean_latency,
        "baseline_latency": w.baseline_latency,
    }

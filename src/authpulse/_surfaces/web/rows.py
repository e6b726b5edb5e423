"""The dashboard's JSON: a session's row, its detail page, and the status filter.

Every dict here is built from a :class:`~authpulse._surfaces.web.views.View`;
none carries a token or a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..._core.errors import ConfigurationError
from ..._core.events import Event
from ..._core.health import HealthReport, HealthSignals
from ..._core.model import SessionStatus
from .views import View, rounded

__all__ = ["detail", "parse_statuses", "row"]


def _component_dicts(report: HealthReport) -> list[dict[str, Any]]:
    return [{"name": c.name, "penalty": c.penalty, "reason": c.reason} for c in report.components]


def row(v: View) -> dict[str, Any]:
    """A session's row in the list, the summary and an action's answer."""
    r = v.record
    report = v.report
    worst = report.worst
    row: dict[str, Any] = {
        "id": r.id,
        "owner": r.owner,
        "kind": r.kind.value,
        "status": r.status.value,
        "open": not r.status.terminal,
        "auth_state": v.live.machine.state.value if v.live is not None else r.auth_state,
        "live": v.live is not None,
        "score": report.score,
        "band": report.band.value,
        "worst": None
        if worst is None
        else {"name": worst.name, "penalty": worst.penalty, "reason": worst.reason},
        "freshness": report.signals.freshness if report.signals.has_token else None,
        "expires_at": rounded(v.expires_at),
        "expires_in": None if v.expires_at is None else rounded(v.expires_at - v.now, 1),
        "created_at": rounded(r.created_at),
        "last_activity_at": rounded(r.last_activity_at),
        "ended_at": rounded(r.ended_at),
        "labels": list(r.labels),
        "refreshes": None,
        "refresh_failures": None,
        "consecutive_failures": None,
        "breaker": None,
        "last_error": None,
        "token_error": v.token_error,
    }
    errors: list[dict[str, Any]] = []
    if r.error is not None:
        errors.append(
            {
                "message": r.error.message,
                "error_class": r.error.error_class,
                "at": rounded(r.error.at),
            }
        )
    if v.live is not None:
        st = v.live.session.stats()
        row["refreshes"] = st.refreshes
        row["refresh_failures"] = st.failures
        row["consecutive_failures"] = st.consecutive_failures
        row["breaker"] = v.live.session.breaker_state()
        if st.last_error is not None:
            errors.append(
                {
                    "message": st.last_error,
                    "error_class": st.last_error_class,
                    "at": rounded(st.last_failure_at),
                }
            )
    if errors:
        row["last_error"] = max(errors, key=lambda e: e["at"] or 0.0)
    return row


def detail(v: View, *, history: list[dict[str, Any]], timeline: Sequence[Event]) -> dict[str, Any]:
    """``GET /api/sessions/{id}``: the record, health with components, timeline,
    token metadata (never the tokens), refresh counters and the health history."""
    now, report = v.now, v.report
    out: dict[str, Any] = {
        "now": rounded(now),
        "session": row(v),
        "record": v.record.to_public_dict(),
        "health": {
            "score": report.score,
            "band": report.band.value,
            "estimated": v.live is None,
            "components": _component_dicts(report),
            "signals": {
                k: (rounded(x) if isinstance(x, float) else x)
                for k, x in _signals_dict(report.signals).items()
            },
        },
        "token": None,
        "refresh": None,
        "requests": None,
        "history": history,
        "timeline": [e.to_dict() for e in timeline],
        "actions": {
            "refresh": v.live is not None and not v.record.status.terminal,
            "cancel": v.live is not None and not v.record.status.terminal,
        },
    }
    if v.expires_at is not None:
        out["token"] = {
            "issued_at": rounded(v.issued_at),
            "expires_at": rounded(v.expires_at),
            "expires_in": rounded(v.expires_at - now, 1),
        }
    if v.live is not None:
        s = v.live.session
        ts = s.token_set
        if ts is not None:
            out["token"] = {
                **(out["token"] or {}),
                "token_type": ts.token_type,
                "scope": ts.scope,
                "expires_at_source": ts.expires_at_source,
                "has_refresh_token": ts.refresh_token is not None,
                "generation": s.generation,
            }
        st = s.stats()
        out["refresh"] = {
            "refreshes": st.refreshes,
            "failures": st.failures,
            "consecutive_failures": st.consecutive_failures,
            "token_requests": st.token_requests,
            "last_refresh_at": rounded(st.last_refresh_at),
            "last_failure_at": rounded(st.last_failure_at),
            "last_error": st.last_error,
            "last_error_class": st.last_error_class,
            "skew": rounded(st.skew),
            "refresh_at": rounded(s.refresh_at),
        }
        w = s.request_window()
        out["requests"] = {
            "total": w.total,
            "window": w.window,
            "success_rate": rounded(w.success_rate, 4),
            "ux_score": rounded(w.ux_score, 1),
            "p95_latency": rounded(w.p95_latency, 4),
            "baseline_latency": rounded(w.baseline_latency, 4),
        }
    return out


def _signals_dict(s: HealthSignals) -> dict[str, Any]:
    return {name: getattr(s, name) for name in HealthSignals.__dataclass_fields__}


def parse_statuses(
    status: Iterable[SessionStatus | str] | SessionStatus | str | None,
) -> list[SessionStatus] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str | SessionStatus) else list(status)
    try:
        return [SessionStatus(s.upper() if isinstance(s, str) else s) for s in items]
    except ValueError:
        raise ConfigurationError(
            f"status must be one of {', '.join(s.value for s in SessionStatus)}"
        ) from None

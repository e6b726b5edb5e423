"""The web health dashboard: one page, a few JSON endpoints and ``/metrics``.

Standard library only (``http.server``); the page (``authpulse/web/``) is
plain HTML, CSS and JavaScript served from the package — no framework, no
build step, nothing fetched from elsewhere.

- :class:`Dashboard` turns a :class:`SessionManager` (sessions live in this
  process: real health, refresh and cancel) and/or a store (sessions of
  other processes: records, timelines and a health estimate from the stored
  record and token) into JSON-ready dicts and Prometheus text. It keeps a
  small ring of health samples per session for the history chart.
- :class:`DashboardServer` serves a dashboard on a ``ThreadingHTTPServer``
  in a background thread (tests, or embedding in an application).
- :func:`serve` is what ``authpulse serve`` runs: a store URL, a blocking
  server, Ctrl-C to stop.

Reads are open to whoever can reach the port (bound to 127.0.0.1 by
default, with a ``Host`` check against DNS rebinding); the two actions,
``POST /api/sessions/{id}/refresh`` and ``/cancel``, need
``Authorization: Bearer <admin_token>`` and are off (403) without one. No
response ever carries a token or a secret.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import re
import secrets
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._core.errors import AuthpulseError, ConfigurationError, UsageError
from .._core.health import Band, HealthReport, HealthSignals, stored_health
from .._core.model import SessionKind, SessionRecord, SessionStatus
from .._core.policy import RefreshPolicy, schedule
from .._fleet.manager import ManagedSession, SessionManager, SessionNotFoundError
from .._runtime.breakers import BreakerRegistry
from .._runtime.clock import Clock, SystemClock
from .._stores.base import SessionStore, StoreError, check_page
from .._stores.open import open_store
from ..metrics._core import (
    Counts,
    ManagerWatch,
    State,
    exposition,
    families,
    label_value,
    read_breakers,
)

__all__ = ["BAND_COLOURS", "Dashboard", "DashboardServer", "serve"]

log = logging.getLogger("authpulse.web")

#: The colour of each band on the page (``app.css`` uses the same values).
BAND_COLOURS: Mapping[str, str] = {
    Band.EXCELLENT.value: "#1a7f37",  # green, 80–100
    Band.GOOD.value: "#0969da",  # blue, 60–79
    Band.FAIR.value: "#d4a72c",  # yellow, 40–59
    Band.POOR.value: "#e16f24",  # orange, 20–39
    Band.CRITICAL.value: "#cf222e",  # red, 0–19
}

_OPEN = (SessionStatus.ACTIVE, SessionStatus.PAUSED)
_MIN_ADMIN_TOKEN = 16
_MAX_LIMIT = 1000


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _component_dicts(report: HealthReport) -> list[dict[str, Any]]:
    return [{"name": c.name, "penalty": c.penalty, "reason": c.reason} for c in report.components]


@dataclass(frozen=True, slots=True)
class _View:
    """What the dashboard knows about one session at one instant."""

    record: SessionRecord
    live: ManagedSession | None
    report: HealthReport
    expires_at: float | None  #: local clock
    issued_at: float | None
    now: float
    token_error: str | None = None  #: why the stored token set could not be read


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
        self._rings: dict[str, deque[tuple[float, int]]] = {}
        self._rings_lock = threading.Lock()
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
        if self.manager is None:
            return None
        try:
            return self.manager.admin_get(session_id)
        except (SessionNotFoundError, UsageError):
            return None  # unknown here, or stored by another process

    def _record(self, session_id: str) -> SessionRecord:
        record = self.store.get(session_id)
        if record is None:
            raise SessionNotFoundError(session_id)
        return record

    def _view(self, record: SessionRecord, now: float) -> _View:
        ms = self._live(record.id)
        if ms is not None and self.manager is not None:
            try:
                report = self.manager.health(record.id, now=now)
            except (SessionNotFoundError, UsageError):  # purged since it was listed
                return self._estimate(record, now)
            ts = ms.session.token_set
            skew = ms.session.stats().skew
            return _View(
                ms.record,
                ms,
                report,
                None if ts is None else ts.expires_at - skew,
                None if ts is None else ts.issued_at - skew,
                now,
            )
        return self._estimate(record, now)

    def _estimate(self, record: SessionRecord, now: float) -> _View:
        """Health of a session known only from the store: the manager's estimate
        (:func:`~authpulse._core.health.stored_health`) from the record and its stored token."""
        token_error: str | None = None
        try:
            stored = self.store.get_token(record.id)
        except AuthpulseError as exc:  # unreadable (encrypted with keys we lack, corrupt, down)
            stored, token_error = None, type(exc).__name__
        expires_at = issued_at = None
        if stored is not None:
            expires_at = schedule(stored.token, self.policy, skew=stored.skew).expires_at
            issued_at = stored.token.issued_at - stored.skew
        report = stored_health(
            auth_state=record.auth_state,
            token=None if stored is None else stored.token,
            skew=0.0 if stored is None else stored.skew,
            now=now,
            policy=self.policy,
            closed=record.status.terminal,
            readable=token_error is None,
        )
        return _View(record, None, report, expires_at, issued_at, now, token_error)

    def _note(self, session_id: str, at: float, score: int) -> None:
        with self._rings_lock:
            ring = self._rings.get(session_id)
            if ring is None:
                ring = self._rings[session_id] = deque(maxlen=self.history)
            elif ring:
                last_at, last_score = ring[-1]
                if last_score == score and at - last_at < self.sample_spacing:
                    return
                at = max(at, last_at)  # a history never goes back in time
            ring.append((at, score))

    def _history(self, session_id: str) -> list[dict[str, Any]]:
        with self._rings_lock:
            ring = list(self._rings.get(session_id, ()))
        return [{"at": _round(at), "score": score} for at, score in ring]

    def _forget_missing(self, present: Iterable[str]) -> None:
        keep = set(present)
        with self._rings_lock:
            for sid in [s for s in self._rings if s not in keep]:
                del self._rings[sid]

    def _records(
        self, statuses: Iterable[SessionStatus] | None = None, *, page: int = 500
    ) -> Iterable[SessionRecord]:
        """Every stored record (with ``statuses``), a page at a time."""
        offset = 0
        wanted = list(statuses) if statuses is not None else None
        while True:
            batch = self.store.query(status=wanted, limit=page, offset=offset)
            yield from batch
            if len(batch) < page:
                return
            offset += page

    # ------------------------------------------------------------------ rows

    def _row(self, v: _View) -> dict[str, Any]:
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
            "expires_at": _round(v.expires_at),
            "expires_in": None if v.expires_at is None else _round(v.expires_at - v.now, 1),
            "created_at": _round(r.created_at),
            "last_activity_at": _round(r.last_activity_at),
            "ended_at": _round(r.ended_at),
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
                    "at": _round(r.error.at),
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
                        "at": _round(st.last_failure_at),
                    }
                )
        if errors:
            row["last_error"] = max(errors, key=lambda e: e["at"] or 0.0)
        return row

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
        statuses = _statuses(status)
        now = self.clock.now()
        records = self.store.query(status=statuses, limit=limit, offset=offset)
        rows = []
        for record in records:
            v = self._view(record, now)
            self._note(record.id, now, v.report.score)
            rows.append(self._row(v))
        return {
            "now": _round(now),
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
        record = self._record(session_id)
        v = self._view(record, now)
        self._note(record.id, now, v.report.score)
        report = v.report
        out: dict[str, Any] = {
            "now": _round(now),
            "session": self._row(v),
            "record": v.record.to_public_dict(),
            "health": {
                "score": report.score,
                "band": report.band.value,
                "estimated": v.live is None,
                "components": _component_dicts(report),
                "signals": {
                    k: (_round(x) if isinstance(x, float) else x)
                    for k, x in _signals_dict(report.signals).items()
                },
            },
            "token": None,
            "refresh": None,
            "requests": None,
            "history": self._history(record.id),
            "timeline": [e.to_dict() for e in self.store.events(record.id)],
            "actions": {
                "refresh": v.live is not None and not v.record.status.terminal,
                "cancel": v.live is not None and not v.record.status.terminal,
            },
        }
        if v.expires_at is not None:
            out["token"] = {
                "issued_at": _round(v.issued_at),
                "expires_at": _round(v.expires_at),
                "expires_in": _round(v.expires_at - now, 1),
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
                "last_refresh_at": _round(st.last_refresh_at),
                "last_failure_at": _round(st.last_failure_at),
                "last_error": st.last_error,
                "last_error_class": st.last_error_class,
                "skew": _round(st.skew),
                "refresh_at": _round(s.refresh_at),
            }
            w = s.request_window()
            out["requests"] = {
                "total": w.total,
                "window": w.window,
                "success_rate": _round(w.success_rate, 4),
                "ux_score": _round(w.ux_score, 1),
                "p95_latency": _round(w.p95_latency, 4),
                "baseline_latency": _round(w.baseline_latency, 4),
            }
        return out

    def summary(self, *, worst: int = 5) -> dict[str, Any]:
        """``GET /api/health``: counts by band (open sessions) and by status, the
        worst open sessions."""
        now = self.clock.now()
        bands = {b.value: 0 for b in Band}
        statuses = {s.value: 0 for s in SessionStatus}
        open_rows: list[tuple[int, str, dict[str, Any]]] = []
        seen: list[str] = []
        for record in self._records():
            seen.append(record.id)
            statuses[record.status.value] += 1
            if record.status.terminal:
                continue
            v = self._view(record, now)
            self._note(record.id, now, v.report.score)
            bands[v.report.band.value] += 1
            open_rows.append((v.report.score, record.id, self._row(v)))
        self._forget_missing(seen)
        open_rows.sort(key=lambda t: (t[0], t[1]))
        scores = [t[0] for t in open_rows]
        return {
            "now": _round(now),
            "total": len(seen),
            "open": len(open_rows),
            "live": sum(1 for t in open_rows if t[2]["live"]),
            "mean_score": _round(sum(scores) / len(scores), 1) if scores else None,
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
        for record in self._records():
            seen.append(record.id)
            if record.status in _OPEN:
                self._note(record.id, now, self._view(record, now).report.score)
                count += 1
        self._forget_missing(seen)
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
        record = self._record(session_id)
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
        v = self._view(ms.record, now)
        self._note(ms.id, now, v.report.score)
        return {"ok": True, "session": self._row(v)}

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
        state = State(owners=False)
        for kind in SessionKind:
            for status in SessionStatus:
                state.add("sessions", (status.value, kind.value), 0.0)
        for band in Band:
            state.add("health_band", (band.value,), 0.0)
        registries: list[BreakerRegistry] = []
        shown = 0
        for record in self._records():
            state.add("sessions", (record.status.value, record.kind.value), 1.0)
            if record.status.terminal:
                continue
            v = self._view(record, now)
            self._note(record.id, now, v.report.score)
            state.add("health_band", (v.report.band.value,), 1.0)
            if shown < self.metrics_session_limit:
                shown += 1
                label = (label_value(record.id),)
                state.set("session_health", label, v.report.score)
                if v.expires_at is not None:
                    state.set("session_expiry", label, max(v.expires_at - now, 0.0))
            if v.live is not None:
                registries.extend(v.live.session.breaker_registries())
        read_breakers(state, registries)
        manager = self.manager
        if manager is not None:
            state.add("manager_ticks", (), manager.tick_count)
            state.add("manager_tick_errors", (), manager.tick_errors)
            state.add("manager_workers", (), 1.0 if manager.running else 0.0)
        counts, durations = self._counts.counted()
        return exposition(families(state, counts, durations, watching=manager is not None))


def _signals_dict(s: HealthSignals) -> dict[str, Any]:
    return {name: getattr(s, name) for name in HealthSignals.__dataclass_fields__}


def _statuses(
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


# ====================================================================== HTTP

_STATIC: Mapping[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
_SESSION_PATH = re.compile(r"^/api/sessions/([^/]{1,400})(?:/(refresh|cancel))?$")
_MAX_BODY = 64 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _load_assets() -> dict[str, bytes]:
    root = resources.files("authpulse") / "web"
    return {name: (root / name).read_bytes() for name, _ in set(_STATIC.values())}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = tuple(headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "authpulse-dashboard"
    sys_version = ""
    timeout = 30.0  # an idle keep-alive connection is dropped after this long
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s: " + format, self.address_string(), *args)

    def version_string(self) -> str:
        return self.server_version

    # -- answers -----------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        cache: str = "no-store",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _SECURITY_HEADERS:
            self.send_header(name, value)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by http.server itself (malformed request line, ...), as JSON."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line and headers anyway
        with contextlib.suppress(OSError):
            self._json(code, {"error": "bad_request", "message": message or "bad request"})

    # -- dispatch ----------------------------------------------------------------------

    def _handle(self) -> None:
        try:
            self._drain()
            self._check_host()
            self._route()
        except _HttpError as exc:
            self._json(
                exc.status, {"error": exc.error, "message": exc.message}, headers=exc.headers
            )
        except StoreError as exc:  # the store is down or locked: try again later
            log.warning("dashboard: the store failed (%s)", type(exc).__name__)
            self._json(
                503,
                {"error": "store_unavailable", "message": type(exc).__name__},
                headers=[("Retry-After", "5")],
            )
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            log.exception("dashboard: %s %s failed", self.command, self.path.split("?")[0])
            self.close_connection = True
            self._json(500, {"error": "internal", "message": type(exc).__name__})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle  # noqa: N815

    def _check_host(self) -> None:
        if not self.server.loopback_only:
            return
        host = self.headers.get("Host")
        if host is not None and not _is_loopback(_host_name(host)):
            # a page on another site whose name resolves to 127.0.0.1 (DNS rebinding)
            raise _HttpError(403, "forbidden_host", "this dashboard answers only to localhost")

    def _route(self) -> None:
        target = urlsplit(self.path)
        path, query = target.path, target.query
        if not path.startswith("/"):
            raise _HttpError(400, "bad_request", "the request target must be a path")
        if path in _STATIC:
            self._only("GET", "HEAD", query=query)
            name, content_type = _STATIC[path]
            self._send(200, self.server.assets[name], content_type, cache="no-cache")
            return
        dashboard = self.server.dashboard
        if path == "/api/sessions":
            self._only("GET", "HEAD")
            self._json(200, self._list(dashboard, query))
            return
        if path == "/api/health":
            self._only("GET", "HEAD", query=query)
            data = dashboard.summary()
            data["admin_enabled"] = self.server.admin_token is not None
            self._json(200, data)
            return
        if path == "/metrics":
            self._only("GET", "HEAD", query=query)
            self._send(200, dashboard.metrics().encode(), _METRICS_TYPE)
            return
        m = _SESSION_PATH.match(path)
        if m is None:
            raise _HttpError(404, "not_found", "no such page or endpoint")
        try:
            session_id, action = unquote(m.group(1), errors="strict"), m.group(2)
        except UnicodeDecodeError:
            raise _HttpError(404, "not_found", "no such session") from None
        if action is None:
            self._only("GET", "HEAD", query=query)
            self._json(200, self._call(lambda: dashboard.session(session_id), session_id))
            return
        self._only("POST", query=query)
        self._authorize()
        run = dashboard.refresh if action == "refresh" else dashboard.cancel
        self._json(200, self._call(lambda: run(session_id), session_id))

    def _only(self, *methods: str, query: str | None = None) -> None:
        if self.command not in methods:
            raise _HttpError(
                405,
                "method_not_allowed",
                f"{self.command} is not allowed here; use {' or '.join(methods)}",
                headers=[("Allow", ", ".join(methods))],
            )
        if query:
            raise _HttpError(400, "bad_request", "this endpoint takes no query parameters")

    def _list(self, dashboard: Dashboard, query: str) -> dict[str, Any]:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise _HttpError(400, "bad_request", "malformed query string") from None
        params: dict[str, list[str]] = {}
        for k, v in pairs:
            params.setdefault(k, []).append(v)
        unknown = sorted(set(params) - {"status", "limit", "offset"})
        if unknown:
            raise _HttpError(
                400, "bad_request", "unknown query parameter; allowed: status, limit, offset"
            )
        if len(params.get("limit", ())) > 1 or len(params.get("offset", ())) > 1:
            raise _HttpError(400, "bad_request", "limit and offset may be given once")
        try:
            limit = int(params["limit"][0]) if "limit" in params else 200
            offset = int(params["offset"][0]) if "offset" in params else 0
        except ValueError:
            raise _HttpError(400, "bad_request", "limit and offset must be integers") from None
        statuses = [s for v in params.get("status", ()) for s in v.split(",") if s] or None
        try:
            return dashboard.sessions(status=statuses, limit=limit, offset=offset)
        except ConfigurationError as exc:
            raise _HttpError(400, "bad_request", str(exc)) from None

    def _call(self, fn: Callable[[], dict[str, Any]], session_id: str) -> dict[str, Any]:
        try:
            return fn()
        except SessionNotFoundError:
            shown = session_id if len(session_id) <= 128 else session_id[:128] + "…"
            raise _HttpError(404, "not_found", f"no session with id {shown!r}") from None
        except UsageError as exc:
            raise _HttpError(409, "conflict", str(exc)) from None
        except StoreError:
            raise
        except AuthpulseError as exc:
            cls = getattr(exc, "error_class", None)
            raise _HttpError(
                502,
                "refresh_failed",
                f"{type(exc).__name__}"
                + (f" ({getattr(cls, 'value', cls)})" if cls is not None else ""),
            ) from None

    def _drain(self) -> None:
        """Read (and ignore) a request body, so the connection can serve the next
        request; nothing here takes a body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _HttpError(411, "length_required", "send a Content-Length, not chunks")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _HttpError(400, "bad_request", "bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            raise _HttpError(413, "too_large", "request body too large")
        if length:
            self.rfile.read(length)

    def _authorize(self) -> None:
        expected = self.server.admin_token
        if expected is None:
            raise _HttpError(
                403,
                "admin_disabled",
                "admin actions are off: start the dashboard with an admin token",
            )
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if origin is not None and host is not None and urlsplit(origin).netloc != host:
            raise _HttpError(403, "forbidden_origin", "cross-origin actions are refused")
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise _HttpError(
                401,
                "unauthorized",
                "a valid admin token is needed: Authorization: Bearer <token>",
                headers=[("WWW-Authenticate", 'Bearer realm="authpulse"')],
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # close() drops the connections and joins the threads itself
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        dashboard: Dashboard,
        admin_token: str | None,
        assets: dict[str, bytes],
    ) -> None:
        self.dashboard = dashboard
        self.admin_token = admin_token
        self.assets = assets
        self.loopback_only = _is_loopback(address[0])
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns[request] = threading.current_thread()
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("dashboard: connection from %s ended badly", client_address, exc_info=True)

    def drop_connections(self, timeout: float) -> None:
        with self._conns_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in conns:
            thread.join(timeout)


def _check_admin_token(token: str | None) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigurationError("admin_token must be a string")
    if len(token) < _MIN_ADMIN_TOKEN or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigurationError(
            f"admin_token must be at least {_MIN_ADMIN_TOKEN} printable characters without "
            "spaces (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


class DashboardServer:
    """Serve a dashboard over HTTP from a background thread.

    ``manager`` is a :class:`SessionManager` (or a ready :class:`Dashboard`);
    ``store`` adds a store's sessions (alone: a store-only dashboard).
    ``port=0`` picks a free port; :attr:`url` says which. ``admin_token``
    turns on the refresh and cancel actions. ``sample_interval`` (real
    seconds, ``None``: off) takes a health sample of every open session on
    a timer, so the history chart fills in while no page is open.

    >>> with DashboardServer(manager, admin_token=token) as server:
    ...     print(server.url)
    """

    def __init__(
        self,
        manager: SessionManager | Dashboard | None = None,
        *,
        store: SessionStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
        clock: Clock | None = None,
        sample_interval: float | None = 5.0,
    ) -> None:
        if isinstance(manager, Dashboard):
            if store is not None or clock is not None:
                raise ConfigurationError("pass store= and clock= to the Dashboard, not here")
            dashboard = manager
        else:
            dashboard = Dashboard(manager, store=store, clock=clock)
        if not isinstance(host, str) or not host:
            raise ConfigurationError("host must be a host name or an IP address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError("port must be an integer from 0 to 65535")
        if sample_interval is not None and not (
            isinstance(sample_interval, int | float) and sample_interval > 0
        ):
            raise ConfigurationError("sample_interval must be a positive number or None")
        self.dashboard = dashboard
        self.admin_token = _check_admin_token(admin_token)
        try:
            self._server = _Server((host, port), dashboard, self.admin_token, _load_assets())
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound_host, bound_port = self._server.server_address[:2]
        self.host = str(bound_host)
        self.port: int = int(bound_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"authpulse-dashboard-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._sampler: threading.Thread | None = None
        if sample_interval is not None:
            self._sampler = threading.Thread(
                target=self._sample_loop,
                args=(float(sample_interval),),
                name=f"authpulse-dashboard-sampler-{self.port}",
                daemon=True,
            )
            self._sampler.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        admin = "admin on" if self.admin_token else "admin off"
        return f"<DashboardServer {self.url} {state}, {admin}>"

    def _sample_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.dashboard.sample()
            except Exception:  # a sample must never stop the server
                log.exception("dashboard: health sampling failed")

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or ``timeout`` seconds pass)."""
        self._thread.join(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, stop the sampler. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._server.shutdown()
        self._thread.join(timeout)
        self._server.drop_connections(timeout)
        self._server.server_close()
        if self._sampler is not None:
            self._sampler.join(timeout)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    admin_token: str | None = None,
) -> None:
    """Serve the dashboard of the sessions in the store at ``store_url`` until
    interrupted (Ctrl-C). What ``authpulse serve`` runs.

    Sessions found only in the store get a health estimate from their record
    and stored token; refresh and cancel need the session's own process.
    """
    admin_token = _check_admin_token(admin_token)
    store = open_store(store_url)
    try:
        with DashboardServer(
            Dashboard(store=store), host=host, port=port, admin_token=admin_token
        ) as server:
            admin = "on" if admin_token else "off: no admin token"
            print(f"authpulse dashboard: {server.url}/  (admin actions {admin})", flush=True)
            if not _is_loopback(server.host):
                print(
                    f"warning: listening on {server.host}: anyone who can reach this port "
                    "can read the sessions' health",
                    file=sys.stderr,
                    flush=True,
                )
            with contextlib.suppress(KeyboardInterrupt):
                while not server.closed:
                    server.wait(0.5)
    finally:
        store.close()


# The public names defined here show the module they are imported from.
for _public in (
    Dashboard,
    DashboardServer,
):
    _public.__module__ = "authpulse"
del _public

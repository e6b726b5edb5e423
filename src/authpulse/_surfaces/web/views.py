"""What the dashboard knows about a session: a :class:`View` gathered from the
manager (live here) or from the store (an estimate), and the ring of health
samples kept per session for the history chart."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..._core.errors import AuthpulseError, UsageError
from ..._core.health import HealthReport, stored_health
from ..._core.model import SessionRecord, SessionStatus
from ..._core.policy import RefreshPolicy, schedule
from ..._fleet.manager import ManagedSession, SessionManager, SessionNotFoundError
from ..._stores.base import SessionStore

__all__ = [
    "HealthHistory",
    "View",
    "estimate",
    "live",
    "rounded",
    "stored_record",
    "stored_records",
    "view",
]


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for JSON; ``None`` for a missing or non-finite one."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


@dataclass(frozen=True, slots=True)
class View:
    """What the dashboard knows about one session at one instant."""

    record: SessionRecord
    live: ManagedSession | None
    report: HealthReport
    expires_at: float | None  #: local clock
    issued_at: float | None
    now: float
    token_error: str | None = None  #: why the stored token set could not be read


def live(manager: SessionManager | None, session_id: str) -> ManagedSession | None:
    """The session as live in ``manager``, or ``None``."""
    if manager is None:
        return None
    try:
        return manager.admin_get(session_id)
    except (SessionNotFoundError, UsageError):
        return None  # unknown here, or stored by another process


def stored_record(store: SessionStore, session_id: str) -> SessionRecord:
    """The stored record; :class:`SessionNotFoundError` if there is none."""
    record = store.get(session_id)
    if record is None:
        raise SessionNotFoundError(session_id)
    return record


def view(
    manager: SessionManager | None,
    store: SessionStore,
    policy: RefreshPolicy,
    record: SessionRecord,
    now: float,
) -> View:
    """The session live in ``manager`` (its real health), else the store's estimate."""
    ms = live(manager, record.id)
    if ms is not None and manager is not None:
        try:
            report = manager.health(record.id, now=now)
        except (SessionNotFoundError, UsageError):  # purged since it was listed
            return estimate(store, policy, record, now)
        ts = ms.session.token_set
        skew = ms.session.stats().skew
        return View(
            ms.record,
            ms,
            report,
            None if ts is None else ts.expires_at - skew,
            None if ts is None else ts.issued_at - skew,
            now,
        )
    return estimate(store, policy, record, now)


def estimate(store: SessionStore, policy: RefreshPolicy, record: SessionRecord, now: float) -> View:
    """Health of a session known only from the store: the manager's estimate
    (:func:`~authpulse._core.health.stored_health`) from the record and its stored token."""
    token_error: str | None = None
    try:
        stored = store.get_token(record.id)
    except AuthpulseError as exc:  # unreadable (encrypted with keys we lack, corrupt, down)
        stored, token_error = None, type(exc).__name__
    expires_at = issued_at = None
    if stored is not None:
        expires_at = schedule(stored.token, policy, skew=stored.skew).expires_at
        issued_at = stored.token.issued_at - stored.skew
    report = stored_health(
        auth_state=record.auth_state,
        token=None if stored is None else stored.token,
        skew=0.0 if stored is None else stored.skew,
        now=now,
        policy=policy,
        closed=record.status.terminal,
        readable=token_error is None,
    )
    return View(record, None, report, expires_at, issued_at, now, token_error)


def stored_records(
    store: SessionStore, statuses: Iterable[SessionStatus] | None = None, *, page: int = 500
) -> Iterable[SessionRecord]:
    """Every stored record (with ``statuses``), a page at a time."""
    offset = 0
    wanted = list(statuses) if statuses is not None else None
    while True:
        batch = store.query(status=wanted, limit=page, offset=offset)
        yield from batch
        if len(batch) < page:
            return
        offset += page


class HealthHistory:
    """A ring of ``(at, score)`` health samples per session, safe across threads."""

    def __init__(self) -> None:
        self._rings: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rings)

    def note(self, session_id: str, at: float, score: int, *, size: int, spacing: float) -> None:
        """Add a sample to a ring of at most ``size``, skipping one that repeats the
        last score within ``spacing`` seconds."""
        with self._lock:
            ring = self._rings.get(session_id)
            if ring is None:
                ring = self._rings[session_id] = deque(maxlen=size)
            elif ring:
                last_at, last_score = ring[-1]
                if last_score == score and at - last_at < spacing:
                    return
                at = max(at, last_at)  # a history never goes back in time
            ring.append((at, score))

    def samples(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            ring = list(self._rings.get(session_id, ()))
        return [{"at": rounded(at), "score": score} for at, score in ring]

    def forget_missing(self, present: Iterable[str]) -> None:
        """Drop the rings of sessions not in ``present``."""
        keep = set(present)
        with self._lock:
            for sid in [s for s in self._rings if s not in keep]:
                del self._rings[sid]

"""A manager's lifecycle protocols, each written once as a flow (see
``flow``): create, find, list, change, close, recover and clean up
sessions. ``SessionManager`` binds each one as a sync and an awaited method.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.model import (
    ErrorDetails,
    SessionKind,
    SessionMetadata,
    SessionRecord,
    SessionStatus,
    check_id,
    validate_labels,
)
from .._runtime.events import EventKind
from .._stores.base import StoreUnavailableError, VersionConflictError, check_page
from .errors import PermissionDenied, SessionClosedError, SessionNotFoundError
from .flow import Flow, drive, one_step
from .revocation import revoke_ended

if TYPE_CHECKING:
    from .._core.tokens import TokenSet
    from .._sessions.sources import TokenSource
    from .managed import ManagedSession
    from .manager import SessionManager
    from .probes import Probe

__all__ = [
    "Progress",
    "archive",
    "cancel",
    "cancel_stored",
    "cleanup",
    "close",
    "create_session",
    "ended_before",
    "get_session",
    "list_records",
    "pause",
    "purge",
    "record_activity",
    "recover",
    "resume",
    "stored_record",
    "update",
]

log = logging.getLogger("authpulse.manager")

#: ``progress(done, total)``: called after each session a bulk operation handled
Progress = Callable[[int, int], object]


def new_session_id() -> str:
    """A random session id: 16 URL-safe characters (96 bits) that never start with
    ``-``, so a command line never reads one as an option."""
    while True:
        sid = secrets.token_urlsafe(12)
        if not sid.startswith("-"):
            return sid


def create_session(
    m: SessionManager,
    owner: str,
    source: TokenSource,
    *,
    kind: SessionKind | str = SessionKind.USER,
    metadata: SessionMetadata | Mapping[str, Any] | None = None,
    labels: Iterable[str] = (),
    token: TokenSet | None = None,
    probe: Probe | None = None,
    on_token_update: Callable[[TokenSet], Any] | None = None,
    session_id: str | None = None,
) -> Flow[ManagedSession]:
    """Create an ACTIVE session for ``owner`` whose tokens come from ``source``.

    ``session_id`` (default: a random one) is 1 to 128 printable characters
    without whitespace or control characters (the rule of the store's lock
    names, so that every id can be refreshed); another raises
    :class:`ConfigurationError` and nothing is stored."""
    if not isinstance(owner, str) or not owner or len(owner) > 256:
        raise ConfigurationError("owner must be a non-empty string of at most 256 chars")
    try:
        kind = SessionKind(kind)
    except ValueError:
        raise ConfigurationError(
            f"kind must be one of {[k.value for k in SessionKind]}, not {kind!r}"
        ) from None
    sid = new_session_id() if session_id is None else check_id(session_id, "session_id")
    now = m.clock.now()
    record = SessionRecord(
        id=sid,
        owner=owner,
        kind=kind,
        status=SessionStatus.ACTIVE,
        created_at=now,
        last_activity_at=now,
        metadata=SessionMetadata.coerce(metadata),
        labels=validate_labels({"session", "active", *validate_labels(labels)}),
    )
    try:
        stored = yield from m._steps.put(record, None)
    except VersionConflictError:
        raise ConfigurationError(f"a session with id {sid!r} already exists") from None
    ms = m._registry.attach(
        stored, source, token=token, probe=probe, on_token_update=on_token_update
    )
    m._agg.added(stored)
    yield from m._timeline.publish(EventKind.SESSION_CREATED, stored, now, session_kind=kind.value)
    return ms


def _owned(
    m: SessionManager, session_id: str, owner: str | None, *, open_: bool = False
) -> Flow[ManagedSession]:
    """The live session ``session_id``, checked to belong to ``owner`` (unless
    None) and, with ``open_``, not to have ended."""
    ms = yield from m._registry.lookup(session_id)
    if owner is not None and ms.record.owner != owner:
        raise PermissionDenied(ms.id)
    if open_ and ms.record.status.terminal:
        raise SessionClosedError(ms.id, ms.record.status)
    return ms


def error_details(error: str | BaseException | None, now: float) -> ErrorDetails | None:
    """What :meth:`SessionManager.close` records of ``error``: no secret, only the
    message of an authpulse error and the class name of any other."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        cls = getattr(error, "error_class", None)
        text = (
            f"{type(error).__name__}: {error}"
            if isinstance(error, AuthpulseError)
            else type(error).__name__
        )
        return ErrorDetails(text[:500], getattr(cls, "value", None), now)
    if not isinstance(error, str):
        raise ConfigurationError("error must be a string or an exception")
    return ErrorDetails(error[:500], None, now)


def get_session(m: SessionManager, session_id: str, *, owner: str) -> Flow[ManagedSession]:
    """The session ``session_id`` if it belongs to ``owner``; else
    :class:`PermissionDenied` (or :class:`SessionNotFoundError`)."""
    ms = yield from m._registry.lookup(session_id)
    if ms.record.owner != owner:
        raise PermissionDenied(session_id)
    return ms


def stored_record(m: SessionManager, session_id: str) -> Flow[SessionRecord]:
    """The stored record (works for sessions not loaded in this process)."""
    r = (yield from m._steps.get(session_id)) if isinstance(session_id, str) else None
    if r is None:
        raise SessionNotFoundError(str(session_id))
    return r


def list_records(
    m: SessionManager,
    *,
    owner: str | None = None,
    status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
    kind: SessionKind | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Flow[list[SessionRecord]]:
    """Stored records, oldest first, filtered, one page at a time."""
    check_page(limit, offset)
    statuses: list[SessionStatus] | None
    try:
        if status is None:
            statuses = None
        elif isinstance(status, str):
            statuses = [SessionStatus(status.upper())]
        else:
            statuses = [SessionStatus(s.upper() if isinstance(s, str) else s) for s in status]
        kind_ = SessionKind(kind) if kind is not None else None
    except ValueError as exc:
        raise ConfigurationError(f"unknown status or kind: {exc}") from None
    found: list[SessionRecord] = yield from one_step(
        lambda: m.store.query(owner=owner, status=statuses, kind=kind_, limit=limit, offset=offset),
        lambda: m.store.aquery(
            owner=owner, status=statuses, kind=kind_, limit=limit, offset=offset
        ),
    )
    return found


def update(
    m: SessionManager,
    session_id: str,
    *,
    owner: str | None = None,
    phase: str | None = None,
    step: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    labels: Iterable[str] | None = None,
) -> Flow[SessionRecord]:
    """Change the phase, step, metadata (merged) or labels (replaced)."""
    ms = yield from _owned(m, session_id, owner, open_=True)
    for name, value in (("phase", phase), ("step", step)):
        if value is not None and (not isinstance(value, str) or len(value) > 256):
            raise ConfigurationError(f"{name} must be a string of at most 256 chars")
    new_labels = validate_labels(labels) if labels is not None else None
    now = m.clock.now()

    def change(r: SessionRecord) -> SessionRecord:
        return replace(
            r,
            phase=phase if phase is not None else r.phase,
            step=step if step is not None else r.step,
            metadata=r.metadata.merged(metadata) if metadata else r.metadata,
            labels=new_labels if new_labels is not None else r.labels,
            last_activity_at=now,
        )

    _, new = yield from m._steps.write(ms, change)
    yield from m._timeline.publish(EventKind.UPDATED, new, now, phase=new.phase, step=new.step)
    return new


def record_activity(
    m: SessionManager, session_id: str, *, owner: str | None = None
) -> Flow[SessionRecord]:
    """Note that the session's user did something (keeps it from idling out)."""
    ms = yield from _owned(m, session_id, owner, open_=True)
    now = m.clock.now()
    _, new = yield from m._steps.write(ms, lambda r: replace(r, last_activity_at=now))
    yield from m._timeline.publish(EventKind.ACTIVITY, new, now)
    return new


def pause(
    m: SessionManager, session_id: str, reason: str | None = None, *, owner: str | None = None
) -> Flow[SessionRecord]:
    """ACTIVE -> PAUSED. Paused sessions are not refreshed proactively."""
    ms = yield from _owned(m, session_id, owner)
    return (yield from m._timeline.set_status(ms, SessionStatus.PAUSED, reason=reason or "paused"))


def resume(m: SessionManager, session_id: str, *, owner: str | None = None) -> Flow[SessionRecord]:
    """PAUSED -> ACTIVE."""
    ms = yield from _owned(m, session_id, owner)
    rec = yield from m._timeline.set_status(ms, SessionStatus.ACTIVE)
    m._registry.schedule_lifecycle(ms)
    m._registry.schedule_refresh(ms)
    return rec


def close(
    m: SessionManager,
    session_id: str,
    status: SessionStatus | str = SessionStatus.COMPLETED,
    *,
    error: str | BaseException | None = None,
    owner: str | None = None,
) -> Flow[SessionRecord]:
    """End the session with a terminal status (COMPLETED by default)."""
    try:
        st = SessionStatus(status.upper() if isinstance(status, str) else status)
    except ValueError:
        raise ConfigurationError(f"unknown status {status!r}") from None
    if not st.terminal:
        raise ConfigurationError(f"close() needs a terminal status, not {st.value}")
    ms = yield from _owned(m, session_id, owner)
    yield from revoke_ended(m, ms, ms.record)
    return (yield from m._timeline.set_status(ms, st, error=error_details(error, m.clock.now())))


def cancel(
    m: SessionManager, session_id: str, reason: str | None = None, *, owner: str | None = None
) -> Flow[SessionRecord]:
    """End the session as CANCELLED."""
    ms = yield from _owned(m, session_id, owner)
    details = ErrorDetails(reason, None, m.clock.now()) if reason else None
    yield from revoke_ended(m, ms, ms.record)
    return (yield from m._timeline.set_status(ms, SessionStatus.CANCELLED, error=details))


def cancel_stored(
    m: SessionManager, session_id: str, reason: str | None = None
) -> Flow[SessionRecord]:
    """End a session as CANCELLED whether or not it is loaded in this process —
    for operators and tools working on a shared store. Without the live part
    only the stored record and timeline change; a process that holds the
    session live sees the new status at its next write. Raises
    :class:`SessionNotFoundError` or, for an ended session,
    :class:`SessionClosedError`."""
    record = yield from stored_record(m, session_id)
    if record.status.terminal:
        raise SessionClosedError(session_id, record.status)
    if reason is not None and not isinstance(reason, str):
        raise ConfigurationError("reason must be a string")
    details = ErrorDetails(reason[:500], None, m.clock.now()) if reason else None
    return (yield from m._timeline.set_status(session_id, SessionStatus.CANCELLED, error=details))


def recover(
    m: SessionManager,
    session_id: str,
    source: TokenSource | None = None,
    *,
    token: TokenSet | None = None,
    probe: Probe | None = None,
) -> Flow[ManagedSession]:
    """Bring a session back after a crash or restart: reload its record from the
    store, refuse it if it has ended, make it ACTIVE with fresh activity.

    In a new process the live part is gone: pass the session's ``source``
    (and the last ``token`` you persisted, if any).
    """
    record = yield from stored_record(m, session_id)
    if record.status.terminal:
        raise SessionClosedError(session_id, record.status)
    ms = m._registry.live.get(session_id)
    if ms is None and source is None and m._residency is not None:
        ms = yield from m._registry.lookup(session_id)  # hydrated with the factory's source
    if ms is None:
        if source is None:
            raise ConfigurationError(
                f"session {session_id!r} is not loaded in this process: pass its source"
            )
        # stored before ids were checked (or by another writer): it cannot name a lock
        check_id(session_id, "session_id")
        ms = m._registry.attach(record, source, token=token, probe=probe, on_token_update=None)
        m._agg.added(record)
    now = m.clock.now()

    def change(r: SessionRecord) -> SessionRecord:
        if r.status is SessionStatus.PAUSED:
            r = r.with_status(SessionStatus.ACTIVE, now=now)
        return replace(r, last_activity_at=now)

    old, new = yield from m._steps.write(ms, change)
    if old.status is not new.status:  # PAUSED -> ACTIVE, reported like resume()
        fields = {"from": old.status.value, "to": new.status.value, "reason": "recovered"}
        yield from m._timeline.publish(EventKind.STATUS_CHANGED, new, now, **fields)
        yield from m._timeline.publish(EventKind.RESUMED, new, now, **fields)
    m._registry.schedule_lifecycle(ms)
    yield from m._timeline.publish(EventKind.RECOVERED, new, now)
    return ms


def cleanup(
    m: SessionManager,
    max_age: float,
    *,
    now: float | None = None,
    include_stored: bool = False,
    progress: Progress | None = None,
) -> int:
    """Mark every open session created more than ``max_age`` seconds ago as
    TIMEOUT. Never deletes anything. Returns how many were marked.

    By default only sessions loaded in this process are considered; with
    ``include_stored`` every open session in the store is (an operator's
    cleanup of a shared store). ``progress(done, total)`` is called after
    each candidate."""
    if not isinstance(max_age, int | float) or max_age <= 0:
        raise ConfigurationError("max_age must be a positive number of seconds")
    t = m.clock.now() if now is None else now
    mine = m._registry.live.keys() | (m._residency.cold if m._residency else set())
    candidates = [
        r
        for r in m.store.query(status=[SessionStatus.ACTIVE, SessionStatus.PAUSED])
        if r.created_at <= t - max_age and (include_stored or r.id in mine)
    ]
    count = 0
    for done, r in enumerate(candidates, 1):
        try:
            drive(m._timeline.set_status(r.id, SessionStatus.TIMEOUT, reason="cleanup: max age"))
            count += 1
        except StoreUnavailableError:
            raise
        except AuthpulseError:
            log.debug(
                "cleanup skipped %s",
                r.id,
                extra={"authpulse_event": "cleanup_skipped", "authpulse_session": r.id},
            )
        if progress is not None:
            progress(done, len(candidates))
    return count


def ended_before(
    m: SessionManager, older_than: float, *, now: float | None = None
) -> Flow[list[SessionRecord]]:
    """The ended sessions that ended at least ``older_than`` seconds ago, oldest
    first: what :meth:`purge` and :meth:`archive` with the same argument touch."""
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, int | float)
        or not older_than >= 0
    ):
        raise ConfigurationError("older_than must be a non-negative number of seconds")
    t = m.clock.now() if now is None else now
    ended = yield from m._steps.query_status(s for s in SessionStatus if s.terminal)
    return [r for r in ended if r.ended_at is not None and r.ended_at <= t - older_than]


def purge(
    m: SessionManager,
    older_than: float,
    *,
    now: float | None = None,
    progress: Progress | None = None,
) -> Flow[int]:
    """Delete ended sessions that ended at least ``older_than`` seconds ago —
    the only way anything is deleted. Returns how many were deleted.
    ``progress(done, total)`` is called after each candidate."""
    t = m.clock.now() if now is None else now
    candidates = yield from ended_before(m, older_than, now=t)
    deleted = 0
    for done, r in enumerate(candidates, 1):
        live = m._registry.live.get(r.id)
        if live is not None:  # ended without a revocation (a timeout, or the setting was off)
            yield from revoke_ended(m, live, r)
        yield from m._timeline.publish(EventKind.PURGED, r, t)
        if (yield from m._steps.delete(r.id)):
            m._agg.removed(r)
            with m._registry.lock:
                m._registry.live.pop(r.id, None)
                if m._residency is not None:
                    m._residency.cold.discard(r.id)
                    m._residency.loaded.pop(r.id, None)
            deleted += 1
        if progress is not None:
            progress(done, len(candidates))
    return deleted


def archive(
    m: SessionManager,
    write: Callable[[dict[str, Any]], object],
    *,
    older_than: float = 0.0,
    include_archived: bool = False,
    now: float | None = None,
    progress: Progress | None = None,
) -> int:
    """Hand every ended session that ended at least ``older_than`` seconds ago,
    with its timeline, to ``write`` (one JSON-ready dict per session: ``session``,
    ``timeline``, ``archived_at``), then note an ``archived`` event on its
    timeline. Deletes nothing (see :meth:`purge`). Sessions archived before
    are skipped unless ``include_archived``. Returns how many were written.

    ``write`` runs before the event is recorded: if it raises, the session is
    not marked and the error propagates."""
    t = m.clock.now() if now is None else now
    candidates = m.ended_before(older_than, now=t)
    written = 0
    for done, r in enumerate(candidates, 1):
        timeline = m.store.events(r.id)
        if include_archived or not any(e.kind is EventKind.ARCHIVED for e in timeline):
            write(
                {
                    "archived_at": t,
                    "session": r.to_public_dict(),
                    "timeline": [e.to_dict() for e in timeline],
                }
            )
            drive(m._timeline.publish(EventKind.ARCHIVED, r, t))
            written += 1
        if progress is not None:
            progress(done, len(candidates))
    return written

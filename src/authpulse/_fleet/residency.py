"""Which sessions a manager holds in memory, with a source factory
(``SessionManager(store, sources=...)``): only those in use or with work due.

A session is *evicted* (made cold) when nobody used it for
``ManagerSettings.evict_after`` seconds and nothing is due for it within
``resident_horizon``: its token set is written to the store if the store has
none (a set given at creation; the refreshes write theirs), its earliest
deadline goes to the store's schedule (see ``_stores.schedule``), and the
manager forgets its live part. A cold session
is *hydrated* again from its stored record and token set, with a source made
by the factory, when it is looked up (``get``, ``admin_get``, ``recover``, the
lifecycle methods) or when its due time comes (the tick pops the schedule).

Each step is a flow (see ``flow``), driven sync or awaited like the rest of
the manager. Eviction re-checks, under the registry lock, that the session
was not used while its deadlines were written; a session used meanwhile
stays, and its stale schedule entry only wakes it early (harmless). Sessions
created with their own ``probe`` or ``on_token_update`` hook are never
evicted: the factory could not give them back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.model import (
    SessionKind,
    SessionMetadata,
    SessionRecord,
    SessionStatus,
    check_id,
    validate_labels,
)
from .._core.policy import schedule
from .._runtime.events import Event, EventKind, labels_for
from .._sessions.session_config import DEFAULT_POLICY
from .._stores.schedule import NewSession, ScheduleStore
from .flow import Flow, Op
from .lifecycle import new_session_id
from .plan import lifecycle_deadline

if TYPE_CHECKING:
    from .._core.tokens import TokenSet
    from .._sessions.sources import TokenSource
    from .managed import ManagedSession
    from .manager import SessionManager
    from .plan import TickCounts

__all__ = ["Residency", "SourceFactory", "create_sessions", "hydrate", "wake"]

log = logging.getLogger("authpulse.manager")

#: ``sources(record) -> TokenSource``: the source of a stored session, to hydrate it
SourceFactory = Callable[[SessionRecord], "TokenSource"]

#: sessions written to the store per batch by ``create_sessions``
_BATCH = 1000


class Residency:
    """The cold part of a manager: the factory, the ids of the sessions this
    manager counts but does not hold, the sessions it must keep, and until when
    a looked-up session is kept."""

    __slots__ = ("cold", "hold", "loaded", "pinned", "sources", "store")

    def __init__(self, sources: SourceFactory, store: object) -> None:
        if not callable(sources):
            raise ConfigurationError("sources must be a callable(record) -> TokenSource")
        if not isinstance(store, ScheduleStore):
            raise ConfigurationError(
                "sources= needs a store with a schedule (MemoryStore, SQLiteStore, RedisStore)"
            )
        self.sources = sources
        self.store: ScheduleStore = store
        self.cold: set[str] = set()
        self.pinned: set[str] = set()
        self.hold: dict[str, float] = {}
        #: the token set each hydrated session was given by the store (while resident)
        self.loaded: dict[str, TokenSet] = {}

    def attached(self, m: SessionManager, ms: ManagedSession, *, pinned: bool) -> None:
        """A session became live: keep it (pinned) or give it its eviction deadline."""
        if pinned:
            self.pinned.add(ms.id)
            return
        now = m.clock.now()
        m._registry.push(max(ms.last_activity() + m.settings.evict_after, now), ms.id, "evict")

    def held(self, m: SessionManager, ms: ManagedSession) -> None:
        """``ms`` was looked up: it counts as used now."""
        self.hold[ms.id] = m.clock.now() + m.settings.evict_after


def next_due(m: SessionManager, ms: ManagedSession) -> float | None:
    """The earliest instant at which the worker has something to do for ``ms``."""
    s = m.settings
    found = [lifecycle_deadline(ms.record, ms.last_activity(), s)]
    at = ms.session.refresh_at
    if at is not None and ms.record.status is SessionStatus.ACTIVE:
        found.append(at - s.refresh_lead)
    if ms.probe is not None and ms.record.status is SessionStatus.ACTIVE:
        found.append((ms.heartbeat_at or m.clock.now()) + s.heartbeat_interval)
    return min((t for t in found if t is not None), default=None)


def consider(m: SessionManager, ms: ManagedSession, now: float, counts: TickCounts) -> Flow[None]:
    """An ``evict`` deadline came: evict ``ms``, or give it a later one."""
    res, reg, s = m._residency, m._registry, m.settings
    if res is None or ms.id in res.pinned:
        return
    idle = ms.last_activity()
    until = max(idle + s.evict_after, res.hold.get(ms.id, -math.inf))
    if now < until:
        reg.push(until, ms.id, "evict")
        return
    due = next_due(m, ms)
    if due is not None and due <= now + s.resident_horizon:
        reg.push(max(due, now), ms.id, "evict")  # after that work is done
        return
    store, sid = m.store, ms.id
    current = ms.session.token_set
    if current is not None and res.loaded.get(sid) is not current:  # else stored already
        stored = yield Op(lambda: store.get_token(sid), lambda: store.aget_token(sid))
        if stored is None:  # a set given at creation; a stored one is as new or newer
            yield Op(lambda: store.put_token(sid, current), lambda: store.aput_token(sid, current))
    sched = res.store
    if due is None:
        yield Op(lambda: sched.remove_due(sid), lambda: sched.aremove_due(sid))
    else:
        yield from _put_due(sched, sid, due)
    with reg.lock:
        used = ms.last_activity() != idle or res.hold.get(sid, -math.inf) > now
        if reg.live.get(sid) is not ms or used:
            reg.push(now + s.evict_after, sid, "evict")  # used meanwhile: it stays
            return
        del reg.live[sid]
        res.hold.pop(sid, None)
        res.loaded.pop(sid, None)
        res.cold.add(sid)
    counts.n["evicted"] += 1


def hydrate(
    m: SessionManager, session_id: str, *, for_work: bool = False
) -> Flow[ManagedSession | None]:
    """The live session ``session_id``, made from the store if it is cold;
    ``None`` if it is not stored (or, ``for_work``, if it has ended). Unless
    ``for_work`` (the tick's), it counts as used."""
    res, reg = m._residency, m._registry
    ms = reg.live.get(session_id)
    if ms is not None or res is None:
        return ms
    store = m.store
    record = yield Op(lambda: store.get(session_id), lambda: store.aget(session_id))
    if record is None or (for_work and record.status.terminal):
        return None
    stored = yield Op(lambda: store.get_token(session_id), lambda: store.aget_token(session_id))
    check_id(session_id, "session_id")
    source = res.sources(record)
    with reg.lock:
        ms = reg.live.get(session_id)
        if ms is None:  # nobody hydrated it meanwhile
            token = stored.token if stored is not None else None
            ms = reg.attach(record, source, token=token, probe=None, on_token_update=None)
            if token is not None:
                res.loaded[session_id] = token
            if session_id in res.cold:
                res.cold.discard(session_id)
            else:  # stored by someone else: counted from now on, as recover() does
                m._agg.added(record)
        if not for_work:
            res.held(m, ms)
    return ms


def wake(m: SessionManager, now: float, counts: TickCounts) -> Flow[None]:
    """Hydrate the cold sessions due at ``now`` (at most ``wake_limit``), so that
    their deadlines are in the heap for this tick."""
    res = m._residency
    if res is None:
        return
    sched, limit = res.store, m.settings.wake_limit
    due = yield Op(lambda: sched.pop_due(now, limit), lambda: sched.apop_due(now, limit))
    for sid, at in due:
        if sid in m._registry.live:
            continue  # resident: its deadlines are in the heap already
        try:
            if (yield from hydrate(m, sid, for_work=True)) is not None:
                counts.n["hydrated"] += 1
        except AuthpulseError as exc:
            counts.n["errors"] += 1
            log.warning(
                "could not load session %s (%s)",
                sid,
                type(exc).__name__,
                extra={"authpulse_event": "hydrate_failed", "authpulse_session": sid},
            )
            try:  # due again next tick
                yield from _put_due(sched, sid, at)
            except AuthpulseError:
                continue


def _put_due(sched: ScheduleStore, sid: str, at: float) -> Flow[None]:
    yield Op(lambda: sched.put_due(sid, at), lambda: sched.aput_due(sid, at))


def any_cold_due(m: SessionManager, now: float) -> Flow[bool]:
    """Whether the store's schedule has a session due at ``now`` (one index read)."""
    res = m._residency
    if res is None:
        return False
    sched = res.store
    due = yield Op(lambda: sched.peek_due(now, 1), lambda: sched.apeek_due(now, 1))
    return bool(due)


def first_due(m: SessionManager, record: SessionRecord, token: TokenSet | None) -> float | None:
    """When a new cold session is first due: its lifecycle deadline, or earlier
    its token's refresh (at the earliest the jitter may put it)."""
    s = m.settings
    found = [lifecycle_deadline(record, record.last_activity_at, s)]
    if token is not None:
        policy = m.policy or DEFAULT_POLICY
        at = schedule(token, policy, u=1.0).refresh_at  # the widest jitter: the earliest
        found.append(at - s.refresh_lead)
    return min((t for t in found if t is not None), default=None)


def create_sessions(
    m: SessionManager,
    sessions: Iterable[tuple[str, TokenSet | None]],
    *,
    kind: SessionKind | str = SessionKind.USER,
    metadata: SessionMetadata | Mapping[str, Any] | None = None,
    labels: Iterable[str] = (),
) -> Flow[list[str]]:
    """Create ACTIVE sessions, one per ``(owner, token)``, stored in batches and
    left cold (see :meth:`SessionManager.create_sessions`)."""
    res = m._residency
    if res is None:
        raise ConfigurationError("create_sessions() needs a manager with sources=")
    try:
        kind = SessionKind(kind)
    except ValueError:
        raise ConfigurationError(f"unknown kind {kind!r}") from None
    meta = SessionMetadata.coerce(metadata)
    tags = validate_labels({"session", "active", *validate_labels(labels)})
    ids: list[str] = []
    batch: list[NewSession] = []
    for owner, token in sessions:
        if not isinstance(owner, str) or not owner or len(owner) > 256:
            raise ConfigurationError("owner must be a non-empty string of at most 256 chars")
        now = m.clock.now()
        record = SessionRecord(
            id=new_session_id(),
            owner=owner,
            kind=kind,
            status=SessionStatus.ACTIVE,
            created_at=now,
            last_activity_at=now,
            metadata=meta,
            labels=tags,
        )
        event = Event(
            kind=EventKind.SESSION_CREATED,
            at=now,
            session_id=record.id,
            owner=owner,
            labels=labels_for(EventKind.SESSION_CREATED),
            fields={"session_kind": kind.value},
        )
        batch.append(NewSession(record, token, first_due(m, record, token), event))
        if len(batch) >= _BATCH:
            ids += yield from _store_batch(m, res, batch)
            batch = []
    if batch:
        ids += yield from _store_batch(m, res, batch)
    return ids


def _store_batch(m: SessionManager, res: Residency, batch: list[NewSession]) -> Flow[list[str]]:
    sched = res.store
    yield Op(lambda: sched.create_many(batch), lambda: sched.acreate_many(batch))
    for new in batch:
        m._agg.added(new.record)
        res.cold.add(new.record.id)
        if new.event is not None:
            m.events.publish(new.event)
    return [n.record.id for n in batch]

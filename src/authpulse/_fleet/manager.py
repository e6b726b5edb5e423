"""``SessionManager``: many sessions, their lifecycle, one worker.

A managed session pairs a stored :class:`SessionRecord` (status, owner,
metadata, timestamps: what survives a restart) with a live part in this
process: its token :class:`Session`, its auth :class:`StateMachine`, its
request statistics and its last heartbeat.

Lifecycle changes are pure record transformations (``_model``) applied with
optimistic concurrency on the store. The worker keeps every deadline in a
heap, so a tick costs O(sessions due), not O(sessions).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .._core.errors import AuthpulseError, ConfigurationError, UsageError
from .._core.health import HealthReport
from .._core.model import (
    ErrorDetails,
    SessionKind,
    SessionRecord,
    SessionStatus,
)
from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._core.signals import SessionEvent, SessionEventKind, journal_entry
from .._core.state import (
    AuthEvent,
    AuthState,
    Guards,
    IllegalTransition,
    StateMachine,
    Transition,
    auth_event_for,
)
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event, EventBus, EventKind, JsonlJournal, labels_for
from .._sessions.session import Session
from .._sessions.sources import TokenSource
from .._sessions.stats import Aggregates, SessionStats
from .._stores.base import (
    MemoryStore,
    SessionStore,
    VersionConflictError,
)
from . import inspector
from . import lifecycle as _life
from . import worker as _worker
from .errors import PermissionDenied, SessionClosedError, SessionNotFoundError
from .flow import EventLanes, Flow, adrive, drive, one_step
from .managed import ManagedSession
from .plan import (
    Deadlines,
    Kind,
    ManagerSettings,
    TickReport,
    lifecycle_deadline,
)
from .probes import HttpProbe, Probe
from .worker import Worker

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport

__all__ = [
    "HttpProbe",
    "ManagedSession",
    "ManagerSettings",
    "PermissionDenied",
    "Probe",
    "SessionClosedError",
    "SessionManager",
    "SessionNotFoundError",
    "TickReport",
]

log = logging.getLogger("authpulse.manager")


_T = TypeVar("_T")


_AUTH_STATES = {s.value: s for s in AuthState}
#: session events after which the next refresh is scheduled again
_RESCHEDULES = frozenset({SessionEventKind.REFRESHED, SessionEventKind.LOGIN_COMPLETED})
# aliases: inside SessionManager the name ``list`` is the method
_Records = list[SessionRecord]
_Events = list[Event]


_P = ParamSpec("_P")


def _sync(
    flow: Callable[Concatenate[SessionManager, _P], Flow[_T]], name: str | None = None
) -> Callable[Concatenate[SessionManager, _P], _T]:
    """The sync method ``name`` of a manager flow: every step made with the sync
    store API."""

    @functools.wraps(flow)
    def method(self: SessionManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return drive(flow(self, *args, **kwargs))

    method.__name__ = name or flow.__name__.lstrip("_")
    method.__qualname__ = f"SessionManager.{method.__name__}"
    return method


def _async(
    flow: Callable[Concatenate[SessionManager, _P], Flow[_T]], name: str | None = None
) -> Callable[Concatenate[SessionManager, _P], Awaitable[_T]]:
    """The awaited method of a manager flow: every step awaited, so the event loop
    never waits on the store. Session events queued before it (by awaited
    refreshes) are handled first, and those it causes before it returns."""

    @functools.wraps(flow)
    async def method(self: SessionManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        await self._lanes.settle()
        try:
            return await adrive(flow(self, *args, **kwargs))
        finally:
            await self._lanes.settle()

    name = name or flow.__name__.lstrip("_")
    method.__name__ = "a" + name
    method.__qualname__ = f"SessionManager.a{name}"
    method.__doc__ = f"Awaited :meth:`{name}`: the same steps, the store I/O awaited."
    return method


class SessionManager:
    """Many sessions: create, find, change, close, observe, maintain.

    >>> manager = SessionManager()
    >>> ms = manager.create_session("alice", RefreshTokenGrant(...))
    >>> with manager:                       # starts the worker thread; stops and joins it
    ...     ms.client(base_url=API).get("/me")

    ``tick(now)`` runs one maintenance pass and is public, so tests drive
    the manager with a fake clock. ``start()`` runs ticks on ONE background
    thread (``astart()``: one task) for all sessions.
    """

    def __init__(
        self,
        store: SessionStore | None = None,
        *,
        clock: Clock | None = None,
        settings: ManagerSettings | None = None,
        policy: RefreshPolicy | None = None,
        retry: TokenRetry | None = None,
        transport: AnyTransport | None = None,
        async_transport: AnyAsyncTransport | None = None,
        probe: Probe | None = None,
        journal: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.store: SessionStore = store if store is not None else MemoryStore()
        self.clock: Clock = clock or SystemClock()
        self.settings = settings or ManagerSettings()
        self.policy = policy
        self.retry = retry
        self.probe = probe
        self.events = EventBus()
        self._transport = transport
        self._async_transport = async_transport
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._live: dict[str, ManagedSession] = {}
        self._lanes = EventLanes()
        self._lock = threading.RLock()
        self._deadlines = Deadlines()
        self._agg = Aggregates()
        self._journal = JsonlJournal(journal) if journal else None
        if self._journal is not None:
            self.events.subscribe(self._journal)
        self._worker = Worker(self.tick, self.atick, self.settings)
        self.tick_count = 0
        self.tick_errors = 0
        self._last_tick_error_at: float | None = None
        self.last_tick: TickReport | None = None

    def __repr__(self) -> str:
        running = "running" if self.running else "stopped"
        return f"<SessionManager {len(self._live)} live sessions, worker {running}>"

    # ================================================================ create / get

    def _attach(
        self,
        record: SessionRecord,
        source: TokenSource,
        *,
        token: TokenSet | None,
        probe: Probe | None,
        on_token_update: Callable[[TokenSet], Any] | None,
    ) -> ManagedSession:
        session = Session(
            source,
            token=token,
            policy=self.policy,
            retry=self.retry,
            clock=self.clock,
            transport=self._transport,
            async_transport=self._async_transport,
            on_token_update=on_token_update,
            name=record.id,
            rng=self._rng,
            identity=f"session:{record.id}",  # the cache never serves one session to another
            store=self.store,
            store_key=record.id,
            request_window=self.settings.request_window,
        )
        machine = StateMachine(
            now=self.clock.now(),
            initial=_AUTH_STATES.get(record.auth_state, AuthState.FRESH),
        )
        ms = ManagedSession(self, record, session, machine, probe or self.probe)
        session.add_event_hook(ms._on_event)
        session.on_request = ms._on_request
        with self._lock:
            self._live[record.id] = ms
        self._schedule_lifecycle(ms)
        if token is not None:
            self._schedule_refresh(ms)
        if ms.probe is not None:
            self._push(self.clock.now() + self.settings.heartbeat_interval, record.id, "heartbeat")
        return ms

    def _lookup(self, session_id: str) -> Flow[ManagedSession]:
        if not isinstance(session_id, str):
            raise SessionNotFoundError(repr(session_id))
        ms = self._live.get(session_id)
        if ms is None:
            if (yield from self._get(session_id)) is not None:
                raise UsageError(
                    f"session {session_id!r} is stored but not loaded in this "
                    "process; call recover() with its source"
                )
            raise SessionNotFoundError(session_id)
        return ms

    def admin_get(self, session_id: str) -> ManagedSession:
        """The session ``session_id`` whoever owns it (for operators and tools)."""
        return drive(self._lookup(session_id))

    def live_sessions(self) -> tuple[ManagedSession, ...]:
        """A snapshot of the sessions loaded in this process (created or recovered
        here), whoever owns them (for operators, metrics and dashboards).

        .. versionadded:: unreleased
        """
        with self._lock:
            return tuple(self._live.values())

    # ================================================================ lifecycle

    # -- store steps: each one store call, sync or awaited

    def _get(self, session_id: str) -> Flow[SessionRecord | None]:
        return (
            yield from one_step(
                lambda: self.store.get(session_id), lambda: self.store.aget(session_id)
            )
        )

    def _put(self, record: SessionRecord, expected: int | None) -> Flow[SessionRecord]:
        return (
            yield from one_step(
                lambda: self.store.put(record, expected_version=expected),
                lambda: self.store.aput(record, expected_version=expected),
            )
        )

    def _delete(self, session_id: str) -> Flow[bool]:
        return (
            yield from one_step(
                lambda: self.store.delete(session_id), lambda: self.store.adelete(session_id)
            )
        )

    def _query_status(self, statuses: Iterable[SessionStatus]) -> Flow[_Records]:
        st = [*statuses]
        return (
            yield from one_step(
                lambda: self.store.query(status=st), lambda: self.store.aquery(status=st)
            )
        )

    def _write(
        self, target: ManagedSession | str, change: Callable[[SessionRecord], SessionRecord]
    ) -> Flow[tuple[SessionRecord, SessionRecord]]:
        """Apply ``change`` with optimistic concurrency; retry on a version conflict.

        ``target`` is a live session (its record and the aggregates follow), or
        the id of a stored one that is not live here: the aggregates are left
        alone, they count the sessions this manager created or recovered."""
        ms = target if isinstance(target, ManagedSession) else None
        session_id = ms.id if ms is not None else str(target)
        for _ in range(8):
            current = yield from self._get(session_id)
            if current is None:
                if ms is None:
                    raise SessionNotFoundError(session_id)
                current = ms.record
            new = change(current)
            try:
                stored = yield from self._put(new, current.version)
            except VersionConflictError:
                continue
            if ms is not None:
                ms._record = stored
                self._agg.changed(current, stored)
            return current, stored
        raise UsageError(f"session {session_id!r} is being changed too often to update")

    def _owner_check(self, ms: ManagedSession, owner: str | None) -> None:
        if owner is not None and ms.record.owner != owner:
            raise PermissionDenied(ms.id)

    def _open(self, ms: ManagedSession) -> None:
        if ms.record.status.terminal:
            raise SessionClosedError(ms.id, ms.record.status)

    def _error_details(self, error: str | BaseException | None) -> ErrorDetails | None:
        if error is None:
            return None
        now = self.clock.now()
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

    _STATUS_EVENT: Mapping[SessionStatus, EventKind] = {
        SessionStatus.ACTIVE: EventKind.RESUMED,
        SessionStatus.PAUSED: EventKind.PAUSED,
    }

    def _set_status(
        self,
        target: ManagedSession | str,
        status: SessionStatus,
        *,
        error: ErrorDetails | None = None,
        reason: str | None = None,
    ) -> Flow[SessionRecord]:
        """A lifecycle change: through the live part if the session is loaded here,
        else on the stored record alone (same record, same events)."""
        ms = target if isinstance(target, ManagedSession) else self._live.get(target)
        session_id = ms.id if ms is not None else str(target)
        now = self.clock.now()

        def change(r: SessionRecord) -> SessionRecord:
            if ms is None and r.status.terminal:
                raise SessionClosedError(session_id, r.status)
            return r.with_status(status, now=now, error=error, reason=reason)

        old, new = yield from self._write(ms if ms is not None else session_id, change)
        fields: dict[str, Any] = {"from": old.status.value, "to": new.status.value}
        if reason:
            fields["reason"] = reason
        if error is not None:
            fields["error"] = error.message
            if error.error_class:
                fields["error_class"] = error.error_class
        kind = self._STATUS_EVENT.get(new.status, EventKind.CLOSED)
        yield from self._publish_flow(EventKind.STATUS_CHANGED, new, now, **fields)
        yield from self._publish_flow(kind, new, now, **fields)
        if ms is not None and status.terminal:
            yield from self._fire_flow(ms, AuthEvent.CLOSE)
            ms.session.close(wait=False)
        return new

    # ================================================================ observe

    def health(self, session_id: str, *, now: float | None = None) -> HealthReport:
        """The health report of one session (see docs/health.md).

        For a session that is stored but not loaded in this process, the report
        is computed from what the store knows: the lifecycle status, the last
        persisted auth state and the stored token set's expiry (request,
        heartbeat, breaker and worker signals are unknown and cost nothing).
        """
        return inspector.health(self, session_id, now)

    def stored_stats(
        self, *, owner: str | None = None, kind: SessionKind | str | None = None
    ) -> SessionStats:
        """Like :meth:`stats`, over every session in the store rather than those this
        manager created or recovered — for tools working on a shared store. It
        reads every matching record (O(sessions)); request counts and response
        times live in the processes that made the requests, so they are not
        included."""
        return inspector.stored_stats(self.store, owner, kind)

    def stats(
        self, *, owner: str | None = None, kind: SessionKind | str | None = None
    ) -> SessionStats:
        """Totals by status, success rate, durations, response times, failures."""
        try:
            k = SessionKind(kind) if kind is not None else None
        except ValueError:
            raise ConfigurationError(f"unknown kind {kind!r}") from None
        return self._agg.stats(owner=owner, kind=k)

    def timeline(self, session_id: str) -> _Events:
        """The session's events, oldest first (bounded by the store)."""
        self.record(session_id)
        return self.store.events(session_id)

    def export(self, session_id: str) -> dict[str, Any]:
        """Everything known about a session, JSON-ready, secrets excluded.

        For a session not loaded in this process: the record, the stored token
        set's metadata and a health report from stored data (see :meth:`health`);
        a token set that cannot be read is reported as ``token_error``."""
        return inspector.export(self, session_id)

    def export_json(self, session_id: str) -> str:
        return json.dumps(self.export(session_id), indent=2, sort_keys=True)

    def subscribe(
        self, callback: Callable[[Event], None], *, kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (or those of ``kinds``)."""
        return self.events.subscribe(callback, kinds=kinds)

    # ================================================================ events

    def _dispatch(self, flow: Flow[None]) -> None:
        """Run a flow started by a session listener: at once without an event loop
        on this thread, else queued on the loop's lane (its store I/O awaited)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            drive(flow)
        else:
            self._lanes.push(loop, flow)

    def _publish(
        self, event_kind: EventKind, record: SessionRecord, at: float, **fields: Any
    ) -> None:
        self._dispatch(self._publish_flow(event_kind, record, at, **fields))

    def _publish_flow(
        self, event_kind: EventKind, record: SessionRecord, at: float, **fields: Any
    ) -> Flow[None]:
        clean = {
            k: v for k, v in fields.items() if v is None or isinstance(v, str | int | float | bool)
        }
        event = Event(
            kind=event_kind,
            at=at,
            session_id=record.id,
            owner=record.owner,
            labels=labels_for(event_kind),
            fields=clean,
        )
        try:
            yield from one_step(
                lambda: self.store.append_event(record.id, event),
                lambda: self.store.aappend_event(record.id, event),
            )
        except AuthpulseError:
            log.warning(
                "could not append to the timeline of %s",
                record.id,
                extra={
                    "authpulse_event": "timeline_append_failed",
                    "authpulse_session": record.id,
                    "authpulse_kind": event_kind.value,
                },
            )
        self.events.publish(event)

    def _fire(self, ms: ManagedSession, event: AuthEvent, *, now: float | None = None) -> None:
        t = self.clock.now() if now is None else now
        tr = self._transition(ms, event, t)
        if tr is not None:
            self._dispatch(self._transitioned(ms, event, tr, t))

    def _fire_flow(
        self, ms: ManagedSession, event: AuthEvent, *, now: float | None = None
    ) -> Flow[None]:
        t = self.clock.now() if now is None else now
        tr = self._transition(ms, event, t)
        if tr is not None:
            yield from self._transitioned(ms, event, tr, t)

    def _transition(self, ms: ManagedSession, event: AuthEvent, t: float) -> Transition | None:
        """Fire ``event`` on the session's state machine (no I/O); None if illegal."""
        guards = Guards(token_valid=ms.session.freshness(t).value != "expired")
        with self._lock:
            try:
                return ms.machine.fire(event, now=t, guards=guards)
            except IllegalTransition:
                log.debug(
                    "ignored %s in state %s",
                    event.value,
                    ms.machine.state.value,
                    extra={
                        "authpulse_event": "transition_ignored",
                        "authpulse_session": ms.id,
                        "authpulse_kind": event.value,
                        "authpulse_state": ms.machine.state.value,
                    },
                )
                return None

    def _transitioned(
        self, ms: ManagedSession, event: AuthEvent, tr: Transition, t: float
    ) -> Flow[None]:
        """Publish and persist a transition that changed the state."""
        if tr.changed:
            yield from self._publish_flow(
                EventKind.STATE_CHANGED,
                ms.record,
                t,
                **{"from": tr.from_state.value, "to": tr.to_state.value, "event": event.value},
            )
            if ms.record.auth_state != tr.to_state.value and not ms.record.status.terminal:
                try:
                    yield from self._write(ms, lambda r: replace(r, auth_state=tr.to_state.value))
                except AuthpulseError:
                    log.debug(
                        "could not persist auth state of %s",
                        ms.id,
                        extra={
                            "authpulse_event": "auth_state_not_persisted",
                            "authpulse_session": ms.id,
                        },
                    )
            if tr.to_state in ms.machine.limits and ms.machine.stuck_after is not None:
                self._push(ms.machine.stuck_after + 1e-6, ms.id, "stuck")

    def _on_session_event(self, ms: ManagedSession, event: SessionEvent) -> None:
        now = self.clock.now()
        fired = auth_event_for(event)
        if fired is not None:
            self._fire(ms, fired, now=now)
        entry = journal_entry(event)
        if entry is not None:
            self._publish(entry[0], ms.record, now, **entry[1])
        if event.kind in _RESCHEDULES:
            self._schedule_refresh(ms)

    def _on_request(self, ms: ManagedSession, ok: bool, latency: float) -> None:
        ms.last_request_at = self.clock.now()
        self._agg.request(ms.record, latency)

    # ================================================================ worker

    def _push(self, when: float, session_id: str, kind: Kind) -> None:
        self._deadlines.push(when, session_id, kind)

    def _schedule_lifecycle(self, ms: ManagedSession) -> None:
        when = lifecycle_deadline(ms.record, ms.last_activity(), self.settings)
        if when is not None:
            self._push(when, ms.id, "lifecycle")

    def _schedule_refresh(self, ms: ManagedSession) -> None:
        at = ms.session.refresh_at
        if at is not None and ms.record.status is SessionStatus.ACTIVE:
            self._push(at - self.settings.refresh_lead, ms.id, "refresh")

    def due_count(self, now: float | None = None) -> int:
        """How many deadline entries are due at ``now`` (O(due) with the heap)."""
        return self._deadlines.due_count(self.clock.now() if now is None else now)

    # -- running the worker ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the worker is running (one told to stop is not, even while it
        finishes a tick that outlived :meth:`stop`'s timeout)."""
        return self._worker.running

    def start(self) -> None:
        """Start the ONE worker thread that ticks every ``tick_interval`` seconds.

        Raises :class:`UsageError` while a worker runs, or while a stopped one is
        still finishing its last tick: there is never a second worker."""
        self._worker.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the worker and wait for it at most ``timeout`` seconds (``None``:
        as long as it takes); close the refresh pool.

        Returns within ``timeout`` even when refreshes or probes hang: refreshes
        not yet started are cancelled, and a tick still running finishes on its
        own (the worker exits after it; :meth:`start` refuses until then)."""
        self._worker.stop(timeout)

    async def astart(self) -> None:
        """Start the ONE worker task on the running loop (see :meth:`start`)."""
        await self._worker.astart()

    async def astop(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109 (as stop())
        """Stop the worker task and wait for it at most ``timeout`` seconds; a
        tick still running then is cancelled (refreshes it started go on for
        their other waiters: a session's refresh never dies with its caller)."""
        await self._worker.astop(timeout)

    def shutdown(self) -> None:
        """Stop the worker, close every session's HTTP clients and the store.
        Sessions keep their status: a persistent store lets :meth:`recover` resume them."""
        self.stop()
        for ms in list(self._live.values()):
            ms.session.close()
        if self._journal is not None:
            self._journal.close()
        self.store.close()

    async def ashutdown(self) -> None:
        """Async twin of :meth:`shutdown`: awaits queued session events, the
        sessions' and the store's ``aclose()``."""
        await self.astop()
        await self._lanes.settle()
        for ms in list(self._live.values()):
            await ms.session.aclose()
        if self._journal is not None:
            self._journal.close()
        await self.store.aclose()

    def __enter__(self) -> SessionManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> SessionManager:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ashutdown()

    # ================================================================ the two faces
    # Each protocol above is one flow; these are its sync and awaited methods.

    cleanup = _life.cleanup
    archive = _life.archive
    record = _sync(_life.stored_record, "record")
    ended_before = _sync(_life.ended_before)
    create_session = _sync(_life.create_session)
    acreate_session = _async(_life.create_session)
    get = _sync(_life.get_session, "get")
    aget = _async(_life.get_session, "get")
    list = _sync(_life.list_records, "list")
    alist = _async(_life.list_records, "list")
    record_activity = _sync(_life.record_activity)
    arecord_activity = _async(_life.record_activity)
    update = _sync(_life.update)
    aupdate = _async(_life.update)
    pause = _sync(_life.pause)
    apause = _async(_life.pause)
    resume = _sync(_life.resume)
    aresume = _async(_life.resume)
    close = _sync(_life.close)
    aclose = _async(_life.close)
    cancel = _sync(_life.cancel)
    acancel = _async(_life.cancel)
    cancel_stored = _sync(_life.cancel_stored)
    acancel_stored = _async(_life.cancel_stored)
    recover = _sync(_life.recover)
    arecover = _async(_life.recover)
    purge = _sync(_life.purge)
    apurge = _async(_life.purge)
    tick = _sync(_worker.tick)
    atick = _async(_worker.tick)


# The public names defined here show the module they are imported from.
for _public in (SessionManager,):
    _public.__module__ = "authpulse"
del _public

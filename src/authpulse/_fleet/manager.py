"""``SessionManager``: many sessions, their lifecycle, one worker.

A managed session pairs a stored :class:`SessionRecord` (status, owner,
metadata, timestamps: what survives a restart) with a live part in this
process: its token :class:`Session`, its auth :class:`StateMachine`, its
request statistics and its last heartbeat.

Lifecycle changes are pure record transformations (``_core.model``) applied with
optimistic concurrency on the store. The worker keeps every deadline in a
heap, so a tick costs O(sessions due), not O(sessions). With a source factory
(``sources=``) only the sessions in use or with work due stay in memory; the
others wait in the store's schedule (``residency``).

``SessionManager`` is the facade: the live sessions are held by ``registry``,
the store calls made by ``steps``, events published by ``timeline``, and each
protocol (``lifecycle``, ``worker``) is one flow bound as a sync and an awaited
method (``faces``).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._core.errors import ConfigurationError
from .._core.health import HealthReport
from .._core.model import SessionKind
from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._core.signals import SessionEvent
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event, EventBus, EventKind, JsonlJournal
from .._sessions.stats import Aggregates, SessionStats
from .._stores.base import MemoryStore, SessionStore
from . import inspector
from . import lifecycle as _life
from . import residency as _residency
from . import worker as _worker
from .errors import PermissionDenied, SessionClosedError, SessionNotFoundError
from .faces import async_method as _async
from .faces import sync_method as _sync
from .flow import EventLanes, drive
from .managed import ManagedSession
from .plan import ManagerSettings, TickReport
from .probes import HttpProbe, Probe
from .registry import Registry
from .steps import StoreSteps
from .timeline import Timeline
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

# an alias: inside SessionManager the name ``list`` is the method
_Events = list[Event]


class SessionManager:
    """Many sessions: create, find, change, close, observe, maintain.

    >>> manager = SessionManager()
    >>> ms = manager.create_session("alice", RefreshTokenGrant(...))
    >>> with manager:                       # starts the worker thread; stops and joins it
    ...     ms.client(base_url=API).get("/me")

    ``tick(now)`` runs one maintenance pass and is public, so tests drive
    the manager with a fake clock. ``start()`` runs ticks on ONE background
    thread (``astart()``: one task) for all sessions.

    ``sources(record) -> TokenSource`` lets the manager rebuild a session's
    source from its stored record (the refresh token is in the stored token
    set, so one factory can serve every user of one OAuth client). With it,
    sessions nobody used for ``settings.evict_after`` seconds and with nothing
    due within ``settings.resident_horizon`` are evicted to the store, and
    loaded again when looked up or when their work is due (docs/manager.md).
    Without it every session stays in memory.
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
        sources: _residency.SourceFactory | None = None,
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
        self._lanes = EventLanes()
        self._agg = Aggregates()
        self._steps = StoreSteps(self.store, self._agg)
        self._residency = None if sources is None else _residency.Residency(sources, self.store)
        self._registry = Registry(self)
        self._timeline = Timeline(self.events, self._steps, self._registry, self._lanes, self.clock)
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
        return f"<SessionManager {len(self._registry.live)} live sessions, worker {running}>"

    # ================================================================ find

    def admin_get(self, session_id: str) -> ManagedSession:
        """The session ``session_id`` whoever owns it (for operators and tools)."""
        ms = self._registry.live.get(session_id) if isinstance(session_id, str) else None
        return ms if ms is not None else drive(self._registry.lookup(session_id))

    def live_sessions(self) -> tuple[ManagedSession, ...]:
        """A snapshot of the sessions loaded in this process (created or recovered
        here), whoever owns them (for operators, metrics and dashboards).

        .. versionadded:: unreleased
        """
        return self._registry.snapshot()

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

    # ================================================================ session hooks

    def _on_session_event(self, ms: ManagedSession, event: SessionEvent) -> None:
        self._timeline.on_session_event(ms, event)

    def _on_request(self, ms: ManagedSession, ok: bool, latency: float) -> None:
        ms.last_request_at = self.clock.now()
        self._agg.request(ms.record, latency)

    # ================================================================ worker

    def due_count(self, now: float | None = None) -> int:
        """How many deadline entries of the live sessions are due at ``now``
        (O(due) with the heap; cold sessions wait in the store's schedule)."""
        return self._registry.deadlines.due_count(self.clock.now() if now is None else now)

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
        for ms in self._registry.snapshot():
            ms.session.close()
        if self._journal is not None:
            self._journal.close()
        self.store.close()

    async def ashutdown(self) -> None:
        """Async twin of :meth:`shutdown`: awaits queued session events, the
        sessions' and the store's ``aclose()``."""
        await self.astop()
        await self._lanes.settle()
        for ms in self._registry.snapshot():
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
    create_sessions = _sync(_residency.create_sessions)
    acreate_sessions = _async(_residency.create_sessions)
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

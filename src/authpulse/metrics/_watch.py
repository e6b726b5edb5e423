"""The watches: a session listener that counts events and pairs each refresh's
start with its end (for spans and durations), and the watch on a manager that
puts one on each of its sessions, present and future. What they see goes to a
backend's :class:`Sink`."""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.signals import SessionEvent, SessionEventKind
from .._fleet.manager import ManagedSession, SessionManager
from .._runtime.events import Event, EventKind
from .._sessions.session import Session
from ._catalogue import Labels
from ._labels import increments, label_value, manager_increments

__all__ = ["ManagerWatch", "SessionWatch", "Sink"]


class Sink(Protocol):
    """What a backend does with what a :class:`SessionWatch` sees."""

    def count(self, key: str, labels: Labels) -> None: ...

    def started(self, watch: SessionWatch, reason: str) -> object: ...

    def ended(
        self,
        watch: SessionWatch,
        outcome: str,
        fields: Mapping[str, Any],
        handle: object,
        duration: float | None,
    ) -> None: ...

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None: ...


@dataclass(slots=True)
class _Open:
    reason: str
    started: float
    handle: object


#: refreshes a watch remembers as started and not ended (one is the norm: single flight)
_MAX_OPEN = 8


class SessionWatch:
    """A session listener: counts its events and pairs each refresh's start and end.

    Thread-safe: a refresh starts in the caller's thread and ends in the
    refresh thread or task. Starts and ends are paired first-in first-out
    by reason (``refreshed`` with reason ``initial`` comes from
    ``set_token`` and has no start).
    """

    __slots__ = ("__weakref__", "_lock", "_open", "_session", "active", "label", "sink")

    def __init__(self, sink: Sink, session: Session, label: str | None) -> None:
        self.sink = sink
        self.label = label
        self.active = True
        self._session = weakref.ref(session)
        self._lock = threading.Lock()
        self._open: deque[_Open] | None = None

    @property
    def session(self) -> Session | None:
        return self._session()

    def __call__(self, event: SessionEvent) -> None:
        if not self.active:
            return
        for key, labels in increments(event):
            self.sink.count(key, labels)
        kind, fields = event.kind, event.fields
        if kind is SessionEventKind.REFRESH_STARTED:
            self._start(label_value(fields.get("reason")))
        elif kind is SessionEventKind.REFRESHED:
            self._end("success", fields)
        elif kind is SessionEventKind.REFRESH_FAILED:
            self._end("failure", fields)
        elif kind is SessionEventKind.RETRY:
            with self._lock:
                handle = self._open[0].handle if self._open else None
            self.sink.retried(self, fields, handle)

    def _start(self, reason: str) -> None:
        handle = self.sink.started(self, reason)
        dropped: _Open | None = None
        with self._lock:
            if self._open is None:
                self._open = deque()
            if len(self._open) >= _MAX_OPEN:
                dropped = self._open.popleft()
            self._open.append(_Open(reason, time.monotonic(), handle))
        if dropped is not None:
            self.sink.ended(self, "abandoned", {"reason": dropped.reason}, dropped.handle, None)

    def _end(self, outcome: str, fields: Mapping[str, Any]) -> None:
        reason = label_value(fields.get("reason"))
        found: _Open | None = None
        with self._lock:
            pending = self._open
            if pending:
                for item in pending:
                    if item.reason == reason:
                        found = item
                        break
                if found is not None:
                    pending.remove(found)
        if found is None:
            self.sink.ended(self, outcome, fields, None, None)
        else:
            self.sink.ended(self, outcome, fields, found.handle, time.monotonic() - found.started)


_WATCHED_KINDS: Final = frozenset(
    {
        EventKind.SESSION_CREATED,
        EventKind.RECOVERED,
        EventKind.STATUS_CHANGED,
        EventKind.HEARTBEAT,
    }
)


class ManagerWatch:
    """Watches a :class:`SessionManager`: a :class:`SessionWatch` on each of its
    sessions (present and future) and counters for its lifecycle events."""

    def __init__(
        self,
        manager: SessionManager,
        sink: Sink,
        *,
        session_ids: bool,
        owners: bool,
        health: bool,
        skip: Callable[[Session], bool] | None = None,
    ) -> None:
        if not isinstance(manager, SessionManager):
            raise ConfigurationError("instrument_manager needs an authpulse.SessionManager")
        self._manager = weakref.ref(manager)
        #: sessions not to watch (instrumented on their own on the same registry)
        self._skip = skip
        self.sink = sink
        self.session_ids = bool(session_ids)
        self.owners = bool(owners)
        self.health = bool(health)
        self.active = True
        self._watches: weakref.WeakKeyDictionary[Session, SessionWatch] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        # subscribe first, then attach to the sessions already there: none is missed
        self._unsubscribe = manager.subscribe(self._on_event, kinds=_WATCHED_KINDS)
        for ms in manager.live_sessions():
            self._attach(ms)

    @property
    def manager(self) -> SessionManager | None:
        return self._manager()

    def watches(self, session: Session) -> bool:
        with self._lock:
            return session in self._watches

    def _attach(self, ms: ManagedSession) -> None:
        session = ms.session
        if self._skip is not None and self._skip(session):
            return
        with self._lock:
            if not self.active or session in self._watches:
                return
            watch = SessionWatch(self.sink, session, ms.id if self.session_ids else None)
            self._watches[session] = watch
        session.add_event_hook(watch)

    def _on_event(self, event: Event) -> None:
        if not self.active:
            return
        for key, labels in manager_increments(event):
            self.sink.count(key, labels)
        if event.kind in (EventKind.SESSION_CREATED, EventKind.RECOVERED):
            manager = self._manager()
            if manager is not None and event.session_id is not None:
                try:
                    ms = manager.admin_get(event.session_id)
                except AuthpulseError:
                    return
                self._attach(ms)

    def stop(self) -> None:
        self.active = False
        self._unsubscribe()
        with self._lock:
            watches = list(self._watches.values())
        for w in watches:
            w.active = False

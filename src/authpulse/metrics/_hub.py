"""The :class:`Hub`: the sessions, managers and caches instrumented on one
Prometheus registry or OpenTelemetry meter provider, read at collection time."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from .._core.errors import ConfigurationError
from .._fleet.manager import SessionManager
from .._http.cache import ResponseCache
from .._runtime.breakers import BreakerRegistry
from .._sessions.session import Session
from ._handles import Instrumentation
from ._labels import MAX_LABEL, session_label
from ._reading import State, read_breakers, read_cache, read_manager, read_sessions
from ._watch import ManagerWatch, SessionWatch, Sink

__all__ = ["Hub"]


@dataclass(slots=True)
class _SessionSource:
    label: str
    watch: SessionWatch
    handle: Instrumentation


@dataclass(slots=True)
class _CacheSource:
    name: str
    handle: Instrumentation


class Hub:
    """The sessions, managers and caches instrumented on one registry (or meter provider).

    Thread-safe. Its lock guards the bookkeeping only; it is never held
    while sessions, breakers or caches are read, so a breaker transition
    noticed during a collection (which fires session listeners) cannot
    deadlock.
    """

    integration = "metrics"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: weakref.WeakKeyDictionary[Session, _SessionSource] = (
            weakref.WeakKeyDictionary()
        )
        self._managers: weakref.WeakKeyDictionary[
            SessionManager, tuple[ManagerWatch, Instrumentation]
        ] = weakref.WeakKeyDictionary()
        self._caches: weakref.WeakKeyDictionary[ResponseCache, _CacheSource] = (
            weakref.WeakKeyDictionary()
        )

    # -- bookkeeping ---------------------------------------------------------------

    @property
    def owners(self) -> bool:
        with self._lock:
            return any(mw.owners for mw, _ in self._managers.values())

    def add_session(self, session: Session, name: str | None, sink: Sink) -> Instrumentation:
        label = session_label(session, name)
        with self._lock:
            existing = self._sessions.get(session)
            if existing is not None:
                if existing.label != label:
                    raise ConfigurationError(
                        f"this session is already instrumented here as {existing.label!r}"
                    )
                return existing.handle
            if any(src.label == label for src in self._sessions.values()):
                raise ConfigurationError(
                    f"another session is already instrumented here as {label!r}: pass name="
                )
            if any(mw.watches(session) for mw, _ in self._managers.values()):
                raise ConfigurationError(
                    "this session is already instrumented here through its SessionManager"
                )
            watch = SessionWatch(sink, session, label)
            ref = weakref.ref(session)
            handle = Instrumentation(f"session {label!r}", lambda: self._drop_session(ref))
            self._sessions[session] = _SessionSource(label, watch, handle)
        session.add_event_hook(watch)
        return handle

    def _drop_session(self, ref: weakref.ref[Session]) -> None:
        session = ref()
        if session is None:
            return
        with self._lock:
            src = self._sessions.pop(session, None)
        if src is not None:
            src.watch.active = False

    def add_manager(
        self,
        manager: SessionManager,
        sink: Sink,
        *,
        session_ids: bool,
        owners: bool,
        health: bool,
    ) -> Instrumentation:
        if not isinstance(manager, SessionManager):
            raise ConfigurationError("instrument_manager needs an authpulse.SessionManager")
        with self._lock:
            existing = self._managers.get(manager)
            if existing is not None:
                mw, handle = existing
                if (mw.session_ids, mw.owners, mw.health) != (
                    bool(session_ids),
                    bool(owners),
                    bool(health),
                ):
                    raise ConfigurationError(
                        "this manager is already instrumented here with other options"
                    )
                return handle
            others = {m.owners for m, _ in self._managers.values()}
            if others and others != {bool(owners)}:
                raise ConfigurationError(
                    "every manager instrumented on one registry must use the same owners= "
                    "option (the label set of authpulse_sessions depends on it)"
                )
            mw = ManagerWatch(
                manager,
                sink,
                session_ids=session_ids,
                owners=owners,
                health=health,
                skip=self._sessions.__contains__,  # no lock: one dictionary lookup
            )
            ref = weakref.ref(manager)
            handle = Instrumentation("manager", lambda: self._drop_manager(ref))
            self._managers[manager] = (mw, handle)
        return handle

    def _drop_manager(self, ref: weakref.ref[SessionManager]) -> None:
        manager = ref()
        if manager is None:
            return
        with self._lock:
            entry = self._managers.pop(manager, None)
        if entry is not None:
            entry[0].stop()

    def add_cache(self, cache: ResponseCache, name: str) -> Instrumentation:
        if not isinstance(cache, ResponseCache):
            raise ConfigurationError("instrument_cache needs an authpulse.ResponseCache")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_LABEL:
            raise ConfigurationError(f"name must be a string of 1 to {MAX_LABEL} characters")
        with self._lock:
            existing = self._caches.get(cache)
            if existing is not None:
                if existing.name != name:
                    raise ConfigurationError(
                        f"this cache is already instrumented here as {existing.name!r}"
                    )
                return existing.handle
            if any(src.name == name for src in self._caches.values()):
                raise ConfigurationError(
                    f"another cache is already instrumented here as {name!r}: pass name="
                )
            ref = weakref.ref(cache)
            handle = Instrumentation(f"cache {name!r}", lambda: self._drop_cache(ref))
            self._caches[cache] = _CacheSource(name, handle)
        return handle

    def _drop_cache(self, ref: weakref.ref[ResponseCache]) -> None:
        cache = ref()
        if cache is not None:
            with self._lock:
                self._caches.pop(cache, None)

    @property
    def watching(self) -> bool:
        """Whether any session or manager is instrumented (event counters are relevant)."""
        with self._lock:
            return bool(self._sessions) or bool(self._managers)

    # -- reading ---------------------------------------------------------------------

    def read(self) -> State:
        """The observed metrics, now. Costs O(sessions) — at collection time only."""
        with self._lock:
            sessions = [(s, src.label) for s, src in self._sessions.items()]
            managers = [mw for mw, _ in self._managers.values()]
            caches = [(c, src.name) for c, src in self._caches.items()]
        state = State(owners=any(mw.owners for mw in managers))
        registries: list[BreakerRegistry] = []
        read_sessions(state, sessions, registries)
        for mw in managers:
            read_manager(state, mw, registries)
        read_breakers(state, registries)
        for cache, name in caches:
            read_cache(state, name, cache)
        return state

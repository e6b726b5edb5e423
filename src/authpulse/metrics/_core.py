"""What the Prometheus and OpenTelemetry integrations share; no optional import here.

- :data:`METRICS`: the catalogue (one :class:`MetricSpec` per metric, with
  its Prometheus and OpenTelemetry names and its labels);
- :func:`increments`: which counters a session listener event moves;
- :class:`SessionWatch`: a session listener that counts events and pairs
  ``refresh_started`` with ``refreshed`` / ``refresh_failed`` (for spans and
  durations), calling a backend's :class:`Sink`;
- :class:`ManagerWatch`: attaches a :class:`SessionWatch` to every session of
  a manager (present and future) and counts the manager's own events;
- :class:`Hub`: the instrumented sessions, managers and caches of one
  Prometheus registry or OpenTelemetry meter provider, read at collection
  time by :meth:`Hub.read`.

Label values are drawn from closed vocabularies (reasons, error classes,
states, bands), from origins (``https://api.example.com:443``: no path, no
query, no user-info) or from names the user chose. Session ids and owners
appear only when the user opts in. Nothing here ever reads a token.
"""

from __future__ import annotations

import bisect
import importlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.errors import MissingExtraError as _MissingExtraError
from .._core.health import Band
from .._core.model import SessionKind
from .._core.signals import SessionEvent, SessionEventKind
from .._fleet.manager import ManagedSession, SessionManager
from .._http.cache import ResponseCache
from .._runtime.breakers import BreakerRegistry
from .._runtime.events import Event, EventKind
from .._sessions.session import Session

__all__ = [
    "METRICS",
    "Counts",
    "Family",
    "Histogram",
    "Hub",
    "Instrumentation",
    "ManagerWatch",
    "MetricSpec",
    "MissingExtraError",
    "SessionWatch",
    "Sink",
    "State",
    "combined",
    "exposition",
    "families",
    "increments",
    "label_value",
    "read_breakers",
    "require",
    "session_label",
]

MetricType = Literal["counter", "gauge", "histogram"]
Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its names, type, labels and meaning.

    ``name`` is the Prometheus name (a counter is exposed as ``name_total``);
    ``otel`` the OpenTelemetry instrument name. ``observed`` metrics are
    read from the instrumented objects at collection time; the others are
    counted from events as they happen.
    """

    key: str
    name: str
    otel: str
    type: MetricType
    labels: Labels
    help: str
    unit: str = "1"
    observed: bool = False


def _event(key: str, name: str, otel: str, labels: Labels, help: str, unit: str) -> MetricSpec:
    return MetricSpec(key, name, otel, "counter", labels, help, unit)


def _seen(
    key: str, name: str, otel: str, type: MetricType, labels: Labels, help: str, unit: str = "1"
) -> MetricSpec:
    return MetricSpec(key, name, otel, type, labels, help, unit, observed=True)


#: Every metric, in documentation order.
METRICS: Final[tuple[MetricSpec, ...]] = (
    # -- counted from session events ------------------------------------------------
    _event(
        "refreshes",
        "authpulse_token_refreshes",
        "authpulse.token.refreshes",
        ("reason",),
        "Token sets installed (successful refreshes; reason 'initial' is set_token).",
        "{refresh}",
    ),
    _event(
        "refresh_failures",
        "authpulse_token_refresh_failures",
        "authpulse.token.refresh_failures",
        ("reason", "error_class"),
        "Token refreshes that failed, by reason and error class.",
        "{refresh}",
    ),
    MetricSpec(
        "refresh_duration",
        "authpulse_token_refresh_duration_seconds",
        "authpulse.token.refresh.duration",
        "histogram",
        ("reason", "outcome"),
        "Wall-clock time from the start of a refresh to its outcome.",
        "s",
    ),
    _event(
        "token_retries",
        "authpulse_token_retries",
        "authpulse.token.retries",
        ("error_class",),
        "Token endpoint attempts that failed and were retried, by error class.",
        "{retry}",
    ),
    _event(
        "api_retries",
        "authpulse_api_retries",
        "authpulse.api.retries",
        ("upstream", "error_class"),
        "API requests retried by authpulse.Client, by upstream origin and error class.",
        "{retry}",
    ),
    _event(
        "api_gave_up",
        "authpulse_api_gave_up",
        "authpulse.api.gave_up",
        ("upstream", "reason", "error_class"),
        "API calls that ended on a transient failure (retries spent, deadline, budget, breaker).",
        "{call}",
    ),
    _event(
        "api_budget_exhausted",
        "authpulse_api_retry_budget_exhausted",
        "authpulse.api.retry_budget_exhausted",
        ("upstream",),
        "API retries refused because the upstream's retry budget was spent.",
        "{retry}",
    ),
    _event(
        "api_stale_served",
        "authpulse_api_stale_served",
        "authpulse.api.stale_served",
        ("mode",),
        "Stale cached answers a session's client served instead of an upstream failure.",
        "{response}",
    ),
    _event(
        "breaker_transitions",
        "authpulse_breaker_transitions",
        "authpulse.breaker.transitions",
        ("upstream", "state"),
        "Circuit breaker transitions of a session's API clients, by the state entered.",
        "{transition}",
    ),
    _event(
        "fallback_used",
        "authpulse_fallback_used",
        "authpulse.fallback.used",
        ("level",),
        "Times a session moved to a fallback level of its FallbackChain.",
        "{event}",
    ),
    _event(
        "primary_recovered",
        "authpulse_fallback_primary_recovered",
        "authpulse.fallback.primary_recovered",
        (),
        "Times a session went back to the primary level of its FallbackChain.",
        "{event}",
    ),
    _event(
        "login_required",
        "authpulse_login_required",
        "authpulse.login_required",
        (),
        "Times a session reached the end of its fallback chain: a new login is needed.",
        "{event}",
    ),
    _event(
        "store_unavailable",
        "authpulse_store_unavailable",
        "authpulse.store.unavailable",
        (),
        "Times a session found its shared store unavailable (it refreshes locally meanwhile).",
        "{event}",
    ),
    _event(
        "hook_failures",
        "authpulse_token_update_hook_failures",
        "authpulse.token.update_hook_failures",
        (),
        "on_token_update hooks that raised (the new token was installed anyway).",
        "{event}",
    ),
    # -- counted from manager events --------------------------------------------------
    _event(
        "sessions_created",
        "authpulse_sessions_created",
        "authpulse.sessions.created",
        ("kind",),
        "Sessions created by a SessionManager, by kind.",
        "{session}",
    ),
    _event(
        "status_changes",
        "authpulse_session_status_changes",
        "authpulse.session.status_changes",
        ("status",),
        "Lifecycle status changes of managed sessions, by the status entered.",
        "{change}",
    ),
    _event(
        "heartbeats",
        "authpulse_heartbeats",
        "authpulse.heartbeats",
        ("outcome",),
        "Heartbeat probes of managed sessions, by outcome (ok, failed).",
        "{probe}",
    ),
    # -- read at collection time --------------------------------------------------------
    _seen(
        "sessions",
        "authpulse_sessions",
        "authpulse.sessions",
        "gauge",
        ("status", "kind"),
        "Managed sessions by lifecycle status and kind (and owner, if enabled).",
        "{session}",
    ),
    _seen(
        "health_band",
        "authpulse_sessions_by_health_band",
        "authpulse.sessions.health_band",
        "gauge",
        ("band",),
        "Open sessions by health band (excellent, good, fair, poor, critical).",
        "{session}",
    ),
    _seen(
        "session_health",
        "authpulse_session_health_score",
        "authpulse.session.health_score",
        "gauge",
        ("session",),
        "Health score of a session, 0 to 100.",
    ),
    _seen(
        "session_expiry",
        "authpulse_session_token_expires_in_seconds",
        "authpulse.session.token.expires_in",
        "gauge",
        ("session",),
        "Seconds until a session's access token expires (0 once expired).",
        "s",
    ),
    _seen(
        "breaker_state",
        "authpulse_breaker_state",
        "authpulse.breaker.state",
        "gauge",
        ("upstream", "state"),
        "Circuit breakers per upstream in each state (1/0 for a single breaker).",
        "{breaker}",
    ),
    _seen(
        "breaker_opens",
        "authpulse_breaker_opens",
        "authpulse.breaker.opens",
        "counter",
        ("upstream",),
        "Times the circuit breakers of an upstream opened.",
        "{event}",
    ),
    _seen(
        "breaker_rejected",
        "authpulse_breaker_rejected_calls",
        "authpulse.breaker.rejected_calls",
        "counter",
        ("upstream",),
        "Calls refused by an open circuit breaker, per upstream.",
        "{call}",
    ),
    _seen(
        "cache_hits",
        "authpulse_cache_hits",
        "authpulse.cache.hits",
        "counter",
        ("cache",),
        "Fresh answers served from a response cache.",
        "{response}",
    ),
    _seen(
        "cache_misses",
        "authpulse_cache_misses",
        "authpulse.cache.misses",
        "counter",
        ("cache",),
        "Cacheable requests that went upstream.",
        "{request}",
    ),
    _seen(
        "cache_stale_served",
        "authpulse_cache_stale_served",
        "authpulse.cache.stale_served",
        "counter",
        ("cache", "mode"),
        "Stale answers served: while revalidating (revalidate) or on an upstream failure (error).",
        "{response}",
    ),
    _seen(
        "cache_revalidations",
        "authpulse_cache_revalidations",
        "authpulse.cache.revalidations",
        "counter",
        ("cache",),
        "Background revalidations started.",
        "{request}",
    ),
    _seen(
        "cache_revalidation_errors",
        "authpulse_cache_revalidation_errors",
        "authpulse.cache.revalidation_errors",
        "counter",
        ("cache",),
        "Background revalidations that failed.",
        "{request}",
    ),
    _seen(
        "cache_not_cached",
        "authpulse_cache_not_cached",
        "authpulse.cache.not_cached",
        "counter",
        ("cache",),
        "Answers not stored (uncacheable, or the request bypassed the cache).",
        "{response}",
    ),
    _seen(
        "cache_evictions",
        "authpulse_cache_evictions",
        "authpulse.cache.evictions",
        "counter",
        ("cache",),
        "Entries evicted to respect the cache's bounds.",
        "{entry}",
    ),
    _seen(
        "cache_entries",
        "authpulse_cache_entries",
        "authpulse.cache.entries",
        "gauge",
        ("cache",),
        "Entries in a response cache.",
        "{entry}",
    ),
    _seen(
        "cache_bytes",
        "authpulse_cache_size_bytes",
        "authpulse.cache.size",
        "gauge",
        ("cache",),
        "Bytes held by a response cache.",
        "By",
    ),
    _seen(
        "manager_ticks",
        "authpulse_manager_ticks",
        "authpulse.manager.ticks",
        "counter",
        (),
        "Maintenance ticks run by SessionManager workers.",
        "{tick}",
    ),
    _seen(
        "manager_tick_errors",
        "authpulse_manager_tick_errors",
        "authpulse.manager.tick_errors",
        "counter",
        (),
        "Maintenance ticks that raised (logged; the worker keeps running).",
        "{tick}",
    ),
    _seen(
        "manager_workers",
        "authpulse_manager_worker_running",
        "authpulse.manager.worker_running",
        "gauge",
        (),
        "SessionManager workers running (1 per running manager).",
        "{worker}",
    ),
)

SPECS: Final[Mapping[str, MetricSpec]] = {s.key: s for s in METRICS}

#: bucket upper bounds of the refresh duration histogram, seconds
DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_BANDS: Final = tuple(b.value for b in Band)
_BREAKER_STATES: Final = ("closed", "half_open", "open")
_MAX_LABEL = 200


# ---------------------------------------------------------------------------- errors


class MissingExtraError(_MissingExtraError):
    """An integration was used but its package is not installed.

    ``package`` is what is missing; ``extra`` the authpulse extra that
    installs it (``pip install 'authpulse[extra]'``). A kind of
    :class:`authpulse.MissingExtraError`.
    """

    def __init__(self, integration: str, package: str, extra: str) -> None:
        self.integration = integration
        self.package = package
        super().__init__(
            f"authpulse.metrics.{integration} needs the {package!r} package: "
            f"install the {extra!r} extra (pip install 'authpulse[{extra}]')",
            feature=f"authpulse.metrics.{integration}",
            extra=extra,
        )


def require(modules: Iterable[str], *, integration: str, package: str, extra: str) -> None:
    """Import ``modules`` or raise :class:`MissingExtraError`."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(integration, package, extra) from exc


# ---------------------------------------------------------------------------- labels


def label_value(value: object, default: str = "unknown") -> str:
    """A label value: a short string, "unknown" for a missing one."""
    if value is None or value == "":
        return default
    text = value if isinstance(value, str) else str(value)
    return text[:_MAX_LABEL]


def _upstream(value: object) -> str:
    """An upstream label: an origin as the breaker registry keys it, user-info removed."""
    text = label_value(value)
    if "://" in text and "@" in text:
        scheme, rest = text.split("://", 1)
        text = f"{scheme}://{rest.rsplit('@', 1)[1]}"
    return text


def increments(event: SessionEvent) -> list[tuple[str, Labels]]:
    """The event counters moved by one session event."""
    get = event.fields.get
    match event.kind:
        case SessionEventKind.REFRESHED:
            return [("refreshes", (label_value(get("reason")),))]
        case SessionEventKind.REFRESH_FAILED:
            return [
                ("refresh_failures", (label_value(get("reason")), label_value(get("error_class"))))
            ]
        case SessionEventKind.RETRY:
            return [("token_retries", (label_value(get("error_class")),))]
        case SessionEventKind.API_RETRY_SCHEDULED:
            return [("api_retries", (_upstream(get("upstream")), label_value(get("error_class"))))]
        case SessionEventKind.API_GAVE_UP:
            return [
                (
                    "api_gave_up",
                    (
                        _upstream(get("upstream")),
                        label_value(get("reason")),
                        label_value(get("error_class")),
                    ),
                )
            ]
        case SessionEventKind.API_BUDGET_EXHAUSTED:
            return [("api_budget_exhausted", (_upstream(get("upstream")),))]
        case SessionEventKind.API_STALE_SERVED:
            return [("api_stale_served", (label_value(get("mode")),))]
        case SessionEventKind.API_BREAKER_STATE:
            return [("breaker_transitions", (_upstream(get("upstream")), label_value(get("to"))))]
        case SessionEventKind.FALLBACK_USED:
            return [("fallback_used", (label_value(get("level")),))]
    simple = _SIMPLE.get(event.kind)
    return [(simple, ())] if simple is not None else []


_SIMPLE: Final[Mapping[SessionEventKind, str]] = {
    SessionEventKind.PRIMARY_RECOVERED: "primary_recovered",
    SessionEventKind.LOGIN_REQUIRED: "login_required",
    SessionEventKind.STORE_UNAVAILABLE: "store_unavailable",
    SessionEventKind.HOOK_FAILED: "hook_failures",
}


def manager_increments(event: Event) -> list[tuple[str, Labels]]:
    """The event counters moved by one manager event."""
    kind = event.kind
    if kind is EventKind.SESSION_CREATED:
        return [("sessions_created", (label_value(event.fields.get("session_kind")),))]
    if kind is EventKind.STATUS_CHANGED:
        return [("status_changes", (label_value(event.fields.get("to")),))]
    if kind is EventKind.HEARTBEAT:
        return [("heartbeats", ("ok" if event.fields.get("ok") else "failed",))]
    return []


def _is_managed(session: Session) -> bool:
    hooks = session.event_hooks
    return any(isinstance(getattr(fn, "__self__", None), ManagedSession) for fn in hooks)


def session_label(session: Session, name: str | None) -> str:
    """The ``session`` label of a session instrumented on its own.

    ``name`` if given, else the session's ``name`` — except for a session a
    :class:`SessionManager` owns, whose name is its id: ids are labels only
    when the user asks (``name=``, or ``instrument_manager(session_ids=True)``).
    """
    if not isinstance(session, Session):
        raise ConfigurationError("instrument_session needs an authpulse.Session")
    if name is not None:
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_LABEL:
            raise ConfigurationError(f"name must be a string of 1 to {_MAX_LABEL} characters")
        return name
    if _is_managed(session):
        raise ConfigurationError(
            "this session belongs to a SessionManager and is named by its id: pass name= "
            "to label it, or use instrument_manager(manager, session_ids=True)"
        )
    return session.name[:_MAX_LABEL]


# ---------------------------------------------------------------------------- handles


class Instrumentation:
    """What an ``instrument_*`` call returns. :meth:`remove` stops it (idempotent).

    Counters already exported keep their values; observed metrics of the
    removed object disappear from the next collection.
    """

    __slots__ = ("_lock", "_on_remove", "what")

    def __init__(self, what: str, on_remove: Callable[[], None]) -> None:
        self.what = what
        self._on_remove: Callable[[], None] | None = on_remove
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Instrumentation {self.what} {'active' if self.active else 'removed'}>"

    @property
    def active(self) -> bool:
        return self._on_remove is not None

    def remove(self) -> None:
        with self._lock:
            fn, self._on_remove = self._on_remove, None
        if fn is not None:
            fn()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def combined(handles: list[Instrumentation]) -> Instrumentation:
    """One handle for several (``remove()`` removes them all)."""
    if len(handles) == 1:
        return handles[0]

    def remove() -> None:
        for h in handles:
            h.remove()

    return Instrumentation(" + ".join(h.what for h in handles), remove)


# ---------------------------------------------------------------------------- watching


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


# ---------------------------------------------------------------------------- reading


class State:
    """Values of the observed metrics at one instant: ``values[key][labels]``."""

    __slots__ = ("owners", "values")

    def __init__(self, owners: bool) -> None:
        self.owners = owners
        self.values: dict[str, dict[Labels, float]] = {}

    def add(self, key: str, labels: Labels, value: float) -> None:
        series = self.values.setdefault(key, {})
        series[labels] = series.get(labels, 0.0) + value

    def set(self, key: str, labels: Labels, value: float) -> None:
        self.values.setdefault(key, {})[labels] = value

    def labels(self, key: str) -> Labels:
        spec = SPECS[key]
        return (*spec.labels, "owner") if key == "sessions" and self.owners else spec.labels


def _registries(session: Session) -> list[BreakerRegistry]:
    return list(session.breaker_registries())


def _expires_in(session: Session) -> float | None:
    expires_at = session.expires_at
    if expires_at is None:
        return None
    return max(expires_at - session.clock.now(), 0.0)


def read_breakers(state: State, registries: Iterable[BreakerRegistry]) -> None:
    seen: set[int] = set()
    for reg in registries:
        if id(reg) in seen:
            continue
        seen.add(id(reg))
        for name, snap in reg.snapshots().items():
            upstream = _upstream(name)
            for st in _BREAKER_STATES:
                state.add("breaker_state", (upstream, st), 1.0 if snap.state.value == st else 0.0)
            state.add("breaker_opens", (upstream,), snap.opens)
            state.add("breaker_rejected", (upstream,), snap.rejected)


def _read_cache(state: State, name: str, cache: ResponseCache) -> None:
    s = cache.stats()
    labels = (name,)
    state.add("cache_hits", labels, s.hits)
    state.add("cache_misses", labels, s.misses)
    state.add("cache_stale_served", (name, "revalidate"), s.stale_served)
    state.add("cache_stale_served", (name, "error"), s.stale_if_error_served)
    state.add("cache_revalidations", labels, s.revalidations)
    state.add("cache_revalidation_errors", labels, s.revalidation_errors)
    state.add("cache_not_cached", labels, s.not_cached)
    state.add("cache_evictions", labels, s.evictions)
    state.add("cache_entries", labels, s.entries)
    state.add("cache_bytes", labels, s.bytes)


def _read_manager(state: State, mw: ManagerWatch, registries: list[BreakerRegistry]) -> None:
    manager = mw.manager
    if manager is None:
        return
    live = manager.live_sessions()
    if mw.owners:
        for ms in live:
            r = ms.record
            state.add("sessions", (r.status.value, r.kind.value, label_value(r.owner)), 1.0)
    else:
        for kind in SessionKind:
            for status, n in manager.stats(kind=kind).by_status.items():
                state.add("sessions", (status, kind.value), n)
    if mw.health:
        for band in _BANDS:
            state.add("health_band", (band,), 0.0)
    now = manager.clock.now()
    for ms in live:
        if mw.health and not ms.record.status.terminal:
            try:
                report = manager.health(ms.id, now=now)
            except AuthpulseError:  # purged meanwhile
                continue
            state.add("health_band", (report.band.value,), 1.0)
            if mw.session_ids:
                label = (label_value(ms.id),)
                state.set("session_health", label, report.score)
                expires = _expires_in(ms.session)
                if expires is not None:
                    state.set("session_expiry", label, expires)
        registries.extend(_registries(ms.session))
    state.add("manager_ticks", (), manager.tick_count)
    state.add("manager_tick_errors", (), manager.tick_errors)
    state.add("manager_workers", (), 1.0 if manager.running else 0.0)


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
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_LABEL:
            raise ConfigurationError(f"name must be a string of 1 to {_MAX_LABEL} characters")
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
        if sessions:
            for band in _BANDS:
                state.add("health_band", (band,), 0.0)
        for session, label in sessions:
            registries.extend(_registries(session))
            if session.closed:
                continue
            report = session.health()
            state.add("health_band", (report.band.value,), 1.0)
            state.set("session_health", (label,), report.score)
            expires = _expires_in(session)
            if expires is not None:
                state.set("session_expiry", (label,), expires)
        for mw in managers:
            _read_manager(state, mw, registries)
        read_breakers(state, registries)
        for cache, name in caches:
            _read_cache(state, name, cache)
        return state


# ---------------------------------------------------------------------------- counting


class Histogram:
    """Bucket counts and sums per label set (cumulated only when read)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self.bounds, value)] += 1
        series[1][0] += value

    def snapshot(self) -> dict[Labels, tuple[list[tuple[str, float]], float]]:
        out: dict[Labels, tuple[list[tuple[str, float]], float]] = {}
        for labels, (counts, total) in self._series.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
            out[labels] = (buckets, total[0])
        return out


#: event counters by key and labels, and refresh-duration buckets by labels
Durations = dict[Labels, tuple[list[tuple[str, float]], float]]


class Counts:
    """A :class:`Sink` that keeps the event counters and refresh durations in memory.

    The Prometheus collector and the dashboard's ``/metrics`` both count this way.
    """

    def __init__(self) -> None:
        self._counts_lock = threading.Lock()
        self._counts: dict[str, dict[Labels, float]] = {}
        self._durations = Histogram(DURATION_BUCKETS)

    def count(self, key: str, labels: Labels) -> None:
        with self._counts_lock:
            series = self._counts.setdefault(key, {})
            series[labels] = series.get(labels, 0.0) + 1.0

    def started(self, watch: SessionWatch, reason: str) -> object:
        return None

    def ended(
        self,
        watch: SessionWatch,
        outcome: str,
        fields: Mapping[str, Any],
        handle: object,
        duration: float | None,
    ) -> None:
        if duration is not None:
            with self._counts_lock:
                self._durations.observe((label_value(fields.get("reason")), outcome), duration)

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None:
        return None

    def counted(self) -> tuple[dict[str, dict[Labels, float]], Durations]:
        """A copy of the counters and of the duration buckets."""
        with self._counts_lock:
            return {k: dict(v) for k, v in self._counts.items()}, self._durations.snapshot()


# ---------------------------------------------------------------------------- families


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family ready to expose: its spec, label names and samples.

    ``values`` maps label values to a number (counters, gauges); a histogram
    has ``buckets`` instead: label values to (cumulative buckets, sum).
    """

    spec: MetricSpec
    labels: Labels
    values: Mapping[Labels, float]
    buckets: Durations | None = None


def families(
    state: State,
    counts: Mapping[str, Mapping[Labels, float]],
    durations: Durations,
    *,
    watching: bool,
) -> Iterator[Family]:
    """The catalogue's families that have samples, in catalogue order.

    The one rule for what is published: observed metrics from ``state``,
    counted ones from ``counts``; an unlabelled counter is published at 0 as
    soon as something is watched; the histogram once it has an observation.
    """
    for spec in METRICS:
        if spec.type == "histogram":
            if durations:
                yield Family(spec, spec.labels, {}, durations)
            continue
        values = state.values.get(spec.key) if spec.observed else counts.get(spec.key)
        if not values and watching and not spec.observed and not spec.labels:
            values = {(): 0.0}  # unlabelled counters exist from the start
        if values:
            yield Family(spec, state.labels(spec.key), values)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _sample(name: str, names: Iterable[str], values: Iterable[str], value: float) -> str:
    labelled = sorted(zip(names, values, strict=True))  # by name, as prometheus-client does
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in labelled)
    return f"{name}{{{pairs}}} {_number(value)}" if pairs else f"{name} {_number(value)}"


def exposition(fams: Iterable[Family]) -> str:
    """``fams`` in the Prometheus text format 0.0.4, named as prometheus-client names them.

    A counter ``authpulse_x`` is the family ``authpulse_x_total``.
    """
    lines: list[str] = []
    for fam in fams:
        spec = fam.spec
        name = f"{spec.name}_total" if spec.type == "counter" else spec.name
        help_text = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {spec.type}")
        if fam.buckets is not None:
            for values, (buckets, total) in sorted(fam.buckets.items()):
                count = 0.0
                for le, n in buckets:
                    names = (*fam.labels, "le")
                    lines.append(_sample(f"{name}_bucket", names, (*values, le), n))
                    count = n
                lines.append(_sample(f"{name}_count", fam.labels, values, count))
                lines.append(_sample(f"{name}_sum", fam.labels, values, total))
            continue
        for values, value in sorted(fam.values.items()):
            lines.append(_sample(name, fam.labels, values, value))
    return "\n".join(lines) + "\n" if lines else ""


# The public names defined here show the module they are imported from.
for _public in (
    Instrumentation,
    MetricSpec,
    MissingExtraError,
):
    _public.__module__ = "authpulse.metrics"
del _public

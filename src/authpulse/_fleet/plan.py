"""What a manager's worker has due at ``now``: the settings, the deadline heap
and the lifecycle rules. No I/O and no clock reads: ``now`` is an argument.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Literal

from .._core.errors import ConfigurationError
from .._core.model import SessionRecord, SessionStatus

if TYPE_CHECKING:
    from .manager import ManagedSession

__all__ = [
    "Deadlines",
    "Kind",
    "LifecycleStep",
    "ManagerSettings",
    "TickCounts",
    "TickReport",
    "lifecycle_deadline",
    "lifecycle_step",
]

Kind = Literal["lifecycle", "refresh", "heartbeat", "stuck", "evict"]


def _opt_positive(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise ConfigurationError(f"ManagerSettings.{name} must be a positive number or None")


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """Defaults from the source documents; every interval is in seconds.

    ``None`` disables a rule.
    """

    tick_interval: float = 60.0  #: maintenance tick
    heartbeat_interval: float = 300.0  #: heartbeat probes
    idle_timeout: float | None = 1800.0  #: no activity this long: ACTIVE -> PAUSED
    max_lifetime: float | None = 86400.0  #: older than this: -> TIMEOUT
    stale_timeout: float | None = 86400.0  #: no activity at all this long: -> TIMEOUT
    refresh_concurrency: int = 4  #: proactive refreshes run at once by a tick
    refresh_lead: float = 0.0  #: refresh this much before the token turns stale
    request_window: int = 100  #: requests kept per session for success rate and p95
    worker_error_memory: float = 600.0  #: a failed tick lowers health this long
    #: close, cancel and purge revoke the grant at the IdP (a grant with a revocation_url)
    revoke_on_close: bool = True
    #: with ``sources=``: a session nobody used this long, with nothing due within
    #: ``resident_horizon``, is evicted to the store (see docs/manager.md)
    evict_after: float = 900.0
    resident_horizon: float = 300.0  #: with ``sources=``: see ``evict_after``
    wake_limit: int = 10_000  #: with ``sources=``: cold sessions a tick loads at most

    def __post_init__(self) -> None:
        for name in ("tick_interval", "heartbeat_interval"):
            _opt_positive(name, getattr(self, name))
        for name in ("idle_timeout", "max_lifetime", "stale_timeout"):
            _opt_positive(name, getattr(self, name))
        for name in ("evict_after", "resident_horizon"):
            _opt_positive(name, getattr(self, name))
        if not isinstance(self.wake_limit, int) or not 1 <= self.wake_limit <= 100_000:
            raise ConfigurationError("ManagerSettings.wake_limit must be an int from 1 to 100000")
        if self.refresh_concurrency < 1 or self.request_window < 1:
            raise ConfigurationError("refresh_concurrency and request_window must be >= 1")
        if self.refresh_lead < 0:
            raise ConfigurationError("refresh_lead must be >= 0")
        if not isinstance(self.revoke_on_close, bool):
            raise ConfigurationError("ManagerSettings.revoke_on_close must be a boolean")


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one maintenance tick did."""

    at: float
    due: int = 0
    paused: int = 0
    timed_out: int = 0
    refreshed: int = 0
    refresh_failures: int = 0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    recovered: int = 0
    errors: int = 0
    hydrated: int = 0  #: cold sessions loaded from the store because work was due
    evicted: int = 0  #: sessions made cold


COUNTS = tuple(f.name for f in fields(TickReport) if f.name != "at")


@dataclass
class TickCounts:
    """A tick's counters (named as :class:`TickReport`'s) and what it must run."""

    n: collections.Counter[str] = field(default_factory=collections.Counter)
    refresh: list[ManagedSession] = field(default_factory=list)
    probe: list[ManagedSession] = field(default_factory=list)

    def report(self, at: float) -> TickReport:
        # only the counters that moved: an idle tick builds no mapping at all
        return TickReport(at, **self.n) if self.n else TickReport(at)


class Deadlines:
    """Every session deadline in one heap, so a tick costs O(sessions due)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, str, Kind]] = []
        self._seq = itertools.count()

    def push(self, when: float, session_id: str, kind: Kind) -> None:
        with self._lock:
            heapq.heappush(self._heap, (when, next(self._seq), session_id, kind))

    def any_due(self, now: float) -> bool:
        """Whether an entry is due at ``now`` (O(1))."""
        with self._lock:
            heap = self._heap
            return bool(heap) and heap[0][0] <= now

    def due_count(self, now: float) -> int:
        """How many entries are due at ``now`` (O(due))."""
        with self._lock:
            heap = self._heap
            return sum(1 for e in heap if e[0] <= now) if heap and heap[0][0] <= now else 0

    def pop_due(self, now: float) -> list[tuple[str, Kind]]:
        """Pop every entry due at ``now``, oldest first; each (session, kind) once
        (a later entry for the same pair is a stale duplicate)."""
        out: list[tuple[str, Kind]] = []
        seen: set[tuple[str, Kind]] = set()
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, _, sid, kind = heapq.heappop(heap)
                if (sid, kind) not in seen:
                    seen.add((sid, kind))
                    out.append((sid, kind))
        return out


def lifecycle_deadline(
    record: SessionRecord, last_activity: float, settings: ManagerSettings
) -> float | None:
    """When the lifecycle rules next apply to a session (None: never)."""
    if record.status.terminal:
        return None
    cands = []
    if settings.max_lifetime is not None:
        cands.append(record.created_at + settings.max_lifetime)
    if settings.stale_timeout is not None:
        cands.append(last_activity + settings.stale_timeout)
    if settings.idle_timeout is not None and record.status is SessionStatus.ACTIVE:
        cands.append(last_activity + settings.idle_timeout)
    return min(cands) if cands else None


@dataclass(frozen=True, slots=True)
class LifecycleStep:
    """A status change the lifecycle rules call for."""

    status: SessionStatus
    reason: str
    error: str | None = None  #: the error message (TIMEOUT only)


def lifecycle_step(
    record: SessionRecord, last_activity: float, settings: ManagerSettings, now: float
) -> LifecycleStep | None:
    """What the lifecycle rules do to a session at ``now``: time it out (past its
    lifetime, or stale), pause it (idle), or nothing."""
    s = settings
    if s.max_lifetime is not None and now >= record.created_at + s.max_lifetime:
        return LifecycleStep(SessionStatus.TIMEOUT, "max lifetime", "maximum lifetime reached")
    if s.stale_timeout is not None and now >= last_activity + s.stale_timeout:
        return LifecycleStep(SessionStatus.TIMEOUT, "stale", "no activity")
    if (
        s.idle_timeout is not None
        and record.status is SessionStatus.ACTIVE
        and now >= last_activity + s.idle_timeout
    ):
        return LifecycleStep(SessionStatus.PAUSED, "idle")
    return None


# The public names defined here show the module they are imported from.
for _public in (
    ManagerSettings,
    TickReport,
):
    _public.__module__ = "authpulse"
del _public

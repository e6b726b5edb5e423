"""Rolling request statistics and lifecycle aggregates, updated in O(1)."""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .._core.model import SessionKind, SessionRecord, SessionStatus

__all__ = ["Aggregates", "RequestStats", "RequestWindow", "SessionStats", "refresh_counts"]


def refresh_counts(succeeded: int, failed: int) -> str:
    """Refresh counts in the one wording every surface prints:
    ``"5 attempted, 2 succeeded, 3 failed"``, where attempted = succeeded + failed.

    An attempt is one refresh as its callers see it (the first fetch and an
    adoption of a set a peer stored included), however many token endpoint
    calls its retries made.
    """
    return f"{succeeded + failed} attempted, {succeeded} succeeded, {failed} failed"


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """A snapshot of a session's recent requests."""

    total: int  #: requests ever recorded
    window: int  #: requests in the rolling window
    success_rate: float | None  #: in the window
    ux_score: float | None  #: share of calls with no auth failure and no refresh wait, 0–100
    p95_latency: float | None
    mean_latency: float | None
    baseline_latency: float | None


#: most requests recorded without the lock before they are folded into the sums
_MAX_PENDING = 32


class RequestStats:
    """Outcome and latency of a session's recent requests.

    ``record`` is O(1) and takes no lock: it appends the outcome to a queue
    (appends are atomic), which is folded, in order, into running sums over
    a fixed-size ring under the lock when it grows long or when a snapshot
    is taken. The p95 is computed from the ring only when asked for, and
    cached until the next record. The baseline is a slow moving average of
    successful latencies.
    """

    __slots__ = (
        "_baseline",
        "_fail",
        "_lat",
        "_lock",
        "_p95",
        "_pending",
        "_sum",
        "_total",
        "_ux_bad",
        "_window",
    )

    def __init__(self, window: int = 100) -> None:
        self._window: deque[tuple[bool, bool, float]] = deque(maxlen=window)
        self._pending: deque[tuple[bool, bool, float]] = deque()
        self._lock = threading.Lock()
        self._fail = 0
        self._ux_bad = 0
        self._sum = 0.0
        self._total = 0
        self._baseline: float | None = None
        self._p95: float | None = None
        self._lat: int = window

    def record(self, ok: bool, latency: float, *, ux_ok: bool = True) -> None:
        """Record one request: did it succeed, how long did it take, and did it
        reach the user without an auth failure or a wait for a refresh."""
        latency = latency if latency >= 0 and math.isfinite(latency) else 0.0
        pending = self._pending
        pending.append((ok, ux_ok, latency))
        if len(pending) >= _MAX_PENDING:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Fold the queued requests into the ring and the sums (under the lock)."""
        pending, w = self._pending, self._window
        while pending:
            ok, ux_ok, latency = pending.popleft()
            if len(w) == w.maxlen:
                old_ok, old_ux, old_lat = w[0]
                self._fail -= not old_ok
                self._ux_bad -= not old_ux
                self._sum -= old_lat
            w.append((ok, ux_ok, latency))
            self._fail += not ok
            self._ux_bad += not ux_ok
            self._sum += latency
            self._total += 1
            self._p95 = None
            if ok:
                b = self._baseline
                self._baseline = latency if b is None else b + 0.05 * (latency - b)

    def snapshot(self) -> RequestWindow:
        with self._lock:
            self._fold()
            n = len(self._window)
            if n == 0:
                return RequestWindow(self._total, 0, None, None, None, None, self._baseline)
            if self._p95 is None:
                lats = sorted(x[2] for x in self._window)
                self._p95 = lats[min(n - 1, math.ceil(0.95 * n) - 1)]
            return RequestWindow(
                total=self._total,
                window=n,
                success_rate=1.0 - self._fail / n,
                ux_score=100.0 * (1.0 - self._ux_bad / n),
                p95_latency=self._p95,
                mean_latency=max(self._sum, 0.0) / n,
                baseline_latency=self._baseline,
            )


@dataclass(slots=True)
class _Bucket:
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    ended: int = 0
    duration_sum: float = 0.0
    #: created with the first failed session: most owners never have one
    failures: Counter[str] | None = None
    requests: int = 0
    latency_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionStats:
    """Statistics over a set of sessions (a manager, an owner, a kind)."""

    total: int
    active: int
    paused: int
    by_status: dict[str, int]
    success_rate: float | None  #: COMPLETED / ended sessions
    completion_rate: float | None  #: COMPLETED / total
    average_duration: float | None  #: seconds, ended sessions
    average_response_time: float | None  #: seconds, over every recorded request
    requests: int
    failure_distribution: dict[str, int]  #: error class (or status) -> count

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Aggregates:
    """Counters per (owner, kind), updated on every change in O(1).

    ``stats(owner=, kind=)`` sums the matching buckets: O(owners × kinds),
    independent of the number of sessions.
    """

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, SessionKind], _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, r: SessionRecord) -> _Bucket:
        key = (r.owner, r.kind)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket()
        return b

    def added(self, r: SessionRecord) -> None:
        with self._lock:
            b = self._bucket(r)
            b.total += 1
            b.by_status[r.status.value] += 1
            if r.status.terminal:
                self._ended(b, r)

    def changed(self, old: SessionRecord, new: SessionRecord) -> None:
        if old.status is new.status:
            return
        with self._lock:
            b = self._bucket(new)
            b.by_status[old.status.value] -= 1
            b.by_status[new.status.value] += 1
            if new.status.terminal and not old.status.terminal:
                self._ended(b, new)

    def removed(self, r: SessionRecord) -> None:
        with self._lock:
            b = self._bucket(r)
            b.total -= 1
            b.by_status[r.status.value] -= 1
            if r.status.terminal and r.ended_at is not None:
                b.ended -= 1
                b.duration_sum -= r.ended_at - r.created_at
                if r.status is not SessionStatus.COMPLETED and b.failures is not None:
                    b.failures[self._failure_key(r)] -= 1

    def request(self, r: SessionRecord, latency: float) -> None:
        with self._lock:
            b = self._bucket(r)
            b.requests += 1
            b.latency_sum += latency

    @staticmethod
    def _failure_key(r: SessionRecord) -> str:
        if r.error is not None and r.error.error_class:
            return r.error.error_class
        return r.status.value.lower()

    def _ended(self, b: _Bucket, r: SessionRecord) -> None:
        b.ended += 1
        if r.ended_at is not None:
            b.duration_sum += r.ended_at - r.created_at
        if r.status is not SessionStatus.COMPLETED:
            if b.failures is None:
                b.failures = Counter()
            b.failures[self._failure_key(r)] += 1

    def stats(self, *, owner: str | None = None, kind: SessionKind | None = None) -> SessionStats:
        total = ended = requests = 0
        dur = lat = 0.0
        by_status: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        with self._lock:
            for (o, k), b in self._buckets.items():
                if (owner is not None and o != owner) or (kind is not None and k is not kind):
                    continue
                total += b.total
                ended += b.ended
                dur += b.duration_sum
                requests += b.requests
                lat += b.latency_sum
                by_status.update(b.by_status)
                if b.failures:
                    failures.update(b.failures)
        completed = by_status.get(SessionStatus.COMPLETED.value, 0)
        return SessionStats(
            total=total,
            active=by_status.get(SessionStatus.ACTIVE.value, 0),
            paused=by_status.get(SessionStatus.PAUSED.value, 0),
            by_status={s.value: by_status.get(s.value, 0) for s in SessionStatus},
            success_rate=completed / ended if ended else None,
            completion_rate=completed / total if total else None,
            average_duration=dur / ended if ended else None,
            average_response_time=lat / requests if requests else None,
            requests=requests,
            failure_distribution={k: v for k, v in sorted(failures.items()) if v},
        )


# The public names defined here show the module they are imported from.
for _public in (
    RequestWindow,
    SessionStats,
):
    _public.__module__ = "authpulse"
del _public

"""Request statistics: O(1) records without a lock, the same figures as recording under one."""

from __future__ import annotations

import math
import threading

from hypothesis import given
from hypothesis import strategies as st

from _support import CountingLock
from authpulse._sessions.stats import _MAX_PENDING, RequestStats

_REQUESTS = st.lists(
    st.tuples(
        st.booleans(), st.floats(-1, 5) | st.just(math.nan) | st.just(math.inf), st.booleans()
    ),
    max_size=300,
)


@given(requests=_REQUESTS, window=st.integers(1, 120))
def test_the_snapshot_is_that_of_the_requests_in_order(
    requests: list[tuple[bool, float, bool]], window: int
) -> None:
    stats = RequestStats(window)
    for ok, latency, ux_ok in requests:
        stats.record(ok, latency, ux_ok=ux_ok)
    snap = stats.snapshot()
    clean = [(ok, lat if lat >= 0 and math.isfinite(lat) else 0.0, ux) for ok, lat, ux in requests]
    recent = clean[-window:]
    baseline = None
    for ok, lat, _ in clean:
        if ok:
            baseline = lat if baseline is None else baseline + 0.05 * (lat - baseline)
    assert snap.total == len(requests)
    assert snap.window == len(recent)
    assert snap.baseline_latency == baseline
    if not recent:
        assert snap.success_rate is None
        assert snap.p95_latency is None
        return
    n = len(recent)
    assert snap.success_rate is not None
    assert snap.mean_latency is not None
    assert math.isclose(snap.success_rate, sum(ok for ok, _, _ in recent) / n, abs_tol=1e-9)
    assert snap.ux_score is not None
    assert math.isclose(snap.ux_score, 100 * sum(ux for _, _, ux in recent) / n, abs_tol=1e-9)
    assert math.isclose(snap.mean_latency, sum(lat for _, lat, _ in recent) / n, abs_tol=1e-9)
    lats = sorted(lat for _, lat, _ in recent)
    assert snap.p95_latency == lats[min(n - 1, math.ceil(0.95 * n) - 1)]


def test_a_record_takes_the_lock_once_per_queue_length() -> None:
    stats = RequestStats()
    lock = stats._lock = CountingLock()  # type: ignore[assignment]
    for _ in range(_MAX_PENDING - 1):
        stats.record(True, 0.01)
    assert lock.taken == 0
    for _ in range(3 * _MAX_PENDING):
        stats.record(True, 0.01)
    assert lock.taken == 3
    assert len(stats._pending) < _MAX_PENDING


def _record_many(stats: RequestStats) -> None:
    for i in range(999):
        stats.record(i % 3 != 0, 0.001)


def test_records_from_many_threads_are_all_counted() -> None:
    stats = RequestStats(window=50)
    threads = [threading.Thread(target=_record_many, args=(stats,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert snap.total == 8 * 999
    assert snap.window == 50

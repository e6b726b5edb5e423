"""Smoke test of benchmarks/stores.py at its smallest size: counts, never times."""

from __future__ import annotations

import sys
from pathlib import Path

# ``benchmarks`` lives next to ``tests``, not in src/: make it importable
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest
from benchmarks import stores

import authpulse


def test_counting_store_counts_the_lock_operations_too() -> None:
    counting = stores.CountingStore(authpulse.MemoryStore())
    lock = counting.lock("refresh:x", ttl=5)
    assert lock.acquire(timeout=0)
    lock.release()
    assert counting.get_token("x") is None
    assert dict(counting.calls) == {"lock": 1, "lock_try": 1, "lock_release": 1, "get_token": 1}
    assert counting.total() == 3


@pytest.mark.slow
def test_stores_benchmark_smallest_size() -> None:
    section = stores.run(
        hot_calls=50,
        hot_blocks=2,
        refreshes=3,
        processes=2,
        threads=4,
        calls=1,
        repeats=2,
        latency=0.005,
    )
    assert section.key == "stores"
    assert len(section.rows) == 7
    assert section.headers == ["measurement", "memory", "SQLite", "Redis"]
    data = section.data
    for name, hot in data["hot"].items():
        if hot is not None:
            assert hot[1] == 0, name  # the valid-token path never touches the store
    for name, refresh in data["refresh"].items():
        if refresh is not None:
            assert refresh[1] == 4, name  # lock_try, get_token, put_token, lock_release
    assert data["hot"]["memory"] is not None
    assert data["hot"]["SQLite"] is not None
    assert data["stampede"]["memory"] is None
    for name, storm in data["stampede"].items():
        if storm is not None:
            assert storm["token_calls"] == [1, 1], name
            assert storm["requests"] == 2 * 4 * 1 * 2, name
            assert storm["failures"] == 0, (name, storm["kinds"])
            assert storm["reuse_detected"] == 0, name

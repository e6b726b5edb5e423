"""Smoke test of the benchmark suite (benchmarks/).

Every benchmark runs at its smallest size, with a 5 ms token endpoint, and
its *counts* are checked: token calls, failed requests, requests served.
Timings are never asserted: the suite measures them, it does not judge
them here. The loop-gap case needs a Redis (``REDIS_URL`` or ``redis-server``):
without one it is skipped, unless ``CI=true``. The whole module takes a few
seconds.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import authpulse
from _redis import require_redis_server

# ``benchmarks`` lives next to ``tests``, not in src/: make it importable
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import logins, loop_gap, million, overhead, run, stale, stall, stampede
from benchmarks._common import machine_info

LATENCY = 0.005
THREADS, PER_THREAD, COROS = 4, 2, 6
LIBRARIES = ["authpulse", "authpulse auth only", "authlib", "httpx-auth"]
if overhead._httpx2() is not None:
    LIBRARIES.append(overhead.ON_HTTPX2)


@pytest.fixture(scope="module")
def overhead_result() -> overhead.OverheadResult:
    return overhead.measure(blocks=1, per_block=3, warmup=0)


@pytest.fixture(scope="module")
def stampede_rows() -> list[stampede.Row]:
    return stampede.measure(
        threads=THREADS,
        per_thread=PER_THREAD,
        coroutines=COROS,
        repeats=1,
        latency=LATENCY,
        warmup=False,
    )


@pytest.fixture(scope="module")
def stall_rows() -> list[stall.Row]:
    return stall.measure(reps=1, latency=LATENCY, warmup=False)


@pytest.fixture(scope="module")
def stale_results() -> dict[str, stale.ModeResult]:
    return stale.measure(rounds=1, warmup=0, latency=LATENCY)


def test_overhead_every_client_sends_every_request(
    overhead_result: overhead.OverheadResult,
) -> None:
    for mode in ("sync", "async"):
        pairs = overhead_result.pairs[mode]
        assert sorted(pairs) == sorted(LIBRARIES)
        for stats in pairs.values():
            assert len(stats.a_ns) == len(stats.b_ns) == 1
            assert stats.non_200 == 0
        # one wiring check each, then 3 requests per block; a raw client is timed
        # once per library paired with it (authlib gets raw httpx2 when it runs on
        # that fork); authpulse and httpx-auth fetched one token (a POST)
        expected = {
            "authpulse": 1 + 1 + 3,
            "authpulse auth only": 1 + 3,
            "authlib": 1 + 3,
            "httpx-auth": 1 + 1 + 3,
        }
        if overhead.ON_HTTPX2 in LIBRARIES:  # its own session fetched its token
            expected[overhead.ON_HTTPX2] = 1 + 1 + 3
        for baseline in set(overhead_result.baselines.values()):
            paired = sum(b == baseline for b in overhead_result.baselines.values())
            expected[baseline] = 1 + paired * 3
        assert overhead_result.requests_served[mode] == expected
    section = overhead.section(overhead_result)
    assert len(section.rows) == 2 * len(LIBRARIES)


def test_stampede_authpulse_makes_one_token_call_and_fails_nothing(
    stampede_rows: list[stampede.Row],
) -> None:
    assert len(stampede_rows) == 2 * len(stampede.SYNC_RIGS)
    for row in stampede_rows:
        (r,) = row.runs
        assert r.outcome.requests == (THREADS * PER_THREAD if row.mode == "sync" else COROS)
        if row.library == "authpulse":
            assert r.token_calls == 1, row
            assert r.outcome.failures == 0, (row, r.outcome.kinds)
            assert r.reuse_detected == 0
        if row.library.startswith("raw"):
            assert r.token_calls == 0
            assert r.outcome.failures == 0
    section = stampede.section(
        stampede_rows, threads=THREADS, per_thread=PER_THREAD, coroutines=COROS, latency=LATENCY
    )
    assert len(section.rows) == len(stampede_rows)


def test_stall_each_repetition_refreshes_once(stall_rows: list[stall.Row]) -> None:
    by_label = {row.label.split(" ")[0]: row for row in stall_rows}
    assert set(by_label) == {"idle", "authpulse", "authlib", "httpx-auth", "raw"}
    for name in ("authpulse", "authlib", "httpx-auth"):
        row = by_label[name]
        assert [s.token_calls for s in row.samples] == [1]
        assert row.outcome.failures == 0
        assert row.outcome.requests == 1
    assert [s.token_calls for s in by_label["raw"].samples] == [0]
    assert by_label["idle"].outcome.requests == 0
    assert len(stall.section(stall_rows, latency=LATENCY).rows) == 5


def test_stale_one_background_refresh_per_round_and_no_failure(
    stale_results: dict[str, stale.ModeResult],
) -> None:
    assert set(stale_results) == {"sync", "async"}
    for r in stale_results.values():
        assert r.token_calls == 1
        assert r.refreshes == 1
        assert r.failures == 0
        assert len(r.stale_ns) == len(r.fresh_ns) >= 1
        assert r.stale_batch_sizes == [len(r.stale_ns)]
    section = stale.section(stale_results, rounds=1, warmup=0, latency=LATENCY)
    assert len(section.rows) == 2


def test_loop_gap_every_call_ran_and_did_what_it_should() -> None:
    if not os.environ.get("REDIS_URL"):
        require_redis_server()  # skips without one (fails with CI=true)
    # a 2 ms proxy: the counts are the same as at 20 ms, the run is ten times shorter
    result = loop_gap.measure(reps=1, delay=0.002, warmup=False)
    assert result is not None
    calls = [c.key for c in loop_gap.CALLS]
    for key in [loop_gap.FLOOR, *calls]:
        for mode in loop_gap.MODES:
            row = result.row(key, mode)
            assert row.outcome.requests == 1, (key, mode)
            assert row.outcome.failures == 0, (key, mode, row.outcome.kinds)
            assert len(row.samples) == 1, (key, mode)
    for key in calls:
        trips = result.row(key, "awaited").samples[0].round_trips
        if key == "get":
            assert trips == 0  # a live session: no store call
        else:
            assert trips > 0, key  # the store was reached through the proxy
    assert result.row(loop_gap.FLOOR, "awaited").samples[0].round_trips == 0
    assert result.reuse_detected == 0
    section = loop_gap.section(result)
    assert section.key == "loop_gap"
    assert len(section.rows) == 1 + len(calls)
    assert len(section.data["rows"]) == 2 * (1 + len(calls))


def test_loop_gap_takes_the_gaps_that_overlap_a_call() -> None:
    ticker = loop_gap.Ticker()
    ticker.wakes = [0, 10, 20, 90, 100, 110]
    assert ticker.max_gap(25, 30) == 70  # inside one gap
    assert ticker.max_gap(95, 105) == 10
    assert ticker.max_gap(5, 15) == 10
    assert ticker.max_gap(0, 200) == 70  # no wake-up after the end: the gaps up to the last


def test_loop_gap_proxied_url_keeps_credentials_db_and_query() -> None:
    assert (
        loop_gap._proxied("redis://user:pw@db.example:6380/3?namespace=x", 4242)
        == "redis://user:pw@127.0.0.1:4242/3?namespace=x"
    )
    assert loop_gap._proxied("redis://localhost/0", 1) == "redis://127.0.0.1:1/0"


def test_logins_every_fetch_got_a_token_and_every_token_run_printed_it() -> None:
    try:
        result = logins.measure(fetches=2, warmup=1, discoveries=2, processes=1)
    except logins.IdPUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real IdP is needed here: {exc}")
        pytest.skip(str(exc))
    for method in logins.METHODS:
        got = result.fetches[method, "authpulse"]
        assert (got.calls, got.ok, got.errors) == (2, 2, {}), method
        key = (method, "authlib")
        # authlib either fetched every token or could not be set up for the method at all
        assert (key in result.fetches) != (key in result.unsupported), key
        if key in result.fetches:
            got = result.fetches[key]
            assert (got.calls, got.ok, got.errors) == (2, 2, {}), key
    assert ("client_secret_post", "authlib") in result.fetches
    assert set(result.discovery) == {"first fetch", "cache hit"}
    for got in result.discovery.values():
        assert (got.calls, got.ok) == (2, 2)
    # every process exited 0 and printed one line: the stored token, or nothing for a floor
    assert len(result.processes) == len(logins.FLOORS) + len(logins.STORES)
    for label, got in result.processes.items():
        assert (got.calls, got.ok, got.errors) == (1, 1, {}), label
    section = logins.section(result)
    assert section.key == "logins"
    assert len(section.rows) == 2 * len(logins.METHODS) + 2 + len(result.processes)


def test_million_leaves_every_session_cold_but_the_due_ones(tmp_path: Path) -> None:
    r = million.measure(
        lambda c: authpulse.SQLiteStore(tmp_path / "m.db", clock=c), 300, idle_ticks=3, lookups=5
    )
    assert r["resident_created"] == 0
    assert (r["due"], r["hydrated"], r["paused"]) == (3, 3, 3)
    assert r["resident_after"] == 0
    assert r["rss_created_mb"] > 0


def test_report_files(
    tmp_path: Path,
    overhead_result: overhead.OverheadResult,
    stampede_rows: list[stampede.Row],
    stall_rows: list[stall.Row],
    stale_results: dict[str, stale.ModeResult],
) -> None:
    sections = [
        overhead.section(overhead_result),
        stampede.section(
            stampede_rows, threads=THREADS, per_thread=PER_THREAD, coroutines=COROS, latency=LATENCY
        ),
        stall.section(stall_rows, latency=LATENCY),
        stale.section(stale_results, rounds=1, warmup=0, latency=LATENCY),
    ]
    machine = machine_info()
    md, js = run.write_results(
        tmp_path,
        run.render(sections, machine, mode="smoke", command="pytest", seconds=0.0),
        run.as_json(sections, machine, mode="smoke", command="pytest", seconds=0.0),
    )
    text = md.read_text(encoding="utf-8")
    assert machine["cpu"] in text
    assert text.count("\n## ") == 4
    data = json.loads(js.read_text(encoding="utf-8"))
    assert list(data["sections"]) == ["overhead", "stampede", "stall", "stale"]
    assert not list(tmp_path.glob("*.tmp"))


def test_charts_render_minimal_data(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import charts

    ratio = {"median_ratio": 1.1, "ratio_q1": 1.05, "ratio_q3": 1.2, "baseline": "raw httpx"}
    run_ = {"token_calls": 1, "wall_ns": 100_000_000}
    data = {
        "machine": {"date": "today", "cpu": "cpu", "python": "CPython"},
        "sections": {
            "overhead": {
                "data": {
                    "target_ratio": 1.05,
                    "results": [
                        {"mode": m, "library": lib, **ratio}
                        for m in ("sync", "async")
                        for lib in ("authpulse", "authlib")
                    ],
                }
            },
            "stampede": {
                "data": {
                    "threads": 2,
                    "requests_per_thread": 2,
                    "coroutines": 4,
                    "token_latency_s": 0.005,
                    "rows": [
                        {
                            "mode": m,
                            "library": "authpulse",
                            "grant": "refresh_token",
                            "runs": [run_],
                        }
                        for m in ("sync", "async")
                    ],
                }
            },
            "stall": {
                "data": {
                    "tick_s": 0.001,
                    "token_latency_s": 0.005,
                    "rows": [{"label": "authpulse", "max_gap_ns": [2_000_000, 3_000_000]}],
                }
            },
        },
    }
    paths = charts.render(data, tmp_path)
    assert [p.name for p in paths] == ["overhead.png", "stampede.png", "stall.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 150_000

"""A million sessions in one SessionManager on SQLite and on Redis, only the due
and used ones resident (``SessionManager(store, sources=...)``).

Per store:

- create: ``create_sessions`` of N sessions, each with its own token set (the
  refresh token in it, as one factory serves every user of one OAuth client),
  stored cold in batches: sessions per second;
- resident sessions and the process's RSS (``VmRSS``) after the creation;
- idle tick: a tick with nothing due (one read of the store's schedule), median;
- a tick with 1 % due: 1 % of the sessions idle out at once, so the tick loads
  them from the store (hydrates), pauses each (a record write and two
  timeline events), and the next tick evicts them again;
- a lookup of a cold session (``admin_get``: hydrated from the store), median.

Redis runs at ``REDIS_URL``, else on a private ``redis-server`` (none: that row
is skipped). The fake clock spreads the creations so the 1 % is well defined.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import authpulse
from authpulse.testing import FakeClock, FakeIdP
from benchmarks._common import Section
from benchmarks.stores import _with_namespace, redis_url

now_ns = time.perf_counter_ns

IDLE = 1800.0  #: the idle timeout: what comes due in the 1 % tick
BATCH = 1000
#: fake seconds between two creations: N sessions span N * STEP seconds
STEP = 0.001


def rss_mb() -> float:
    """The process's resident set size, from /proc/self/status (MB; 0 if unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _token(clock: FakeClock, i: int) -> authpulse.TokenSet:
    return authpulse.TokenSet(
        access_token=SecretStr(f"at-{i:07d}-" + "x" * 32),
        refresh_token=SecretStr(f"rt-{i:07d}-" + "y" * 32),
        issued_at=clock.now(),
        expires_at=clock.now() + 2 * 86400,  # not due during the run
    )


def _entries(clock: FakeClock, n: int) -> Iterator[tuple[str, authpulse.TokenSet]]:
    for i in range(n):
        clock.advance(STEP)
        yield f"user-{i % 1000}", _token(clock, i)


def measure(
    make: Callable[[FakeClock], Any], n: int, *, idle_ticks: int = 200, lookups: int = 200
) -> dict[str, float]:
    """The figures of one store; ``make(clock)`` opens it on the run's fake clock."""
    clock = FakeClock()
    store = make(clock)
    idp = FakeIdP(clock=clock)

    def sources(record: authpulse.SessionRecord) -> authpulse.RefreshTokenGrant:
        return authpulse.RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=None)

    settings = authpulse.ManagerSettings(
        idle_timeout=IDLE, evict_after=60.0, resident_horizon=60.0, wake_limit=max(n // 100, 1)
    )
    m = authpulse.SessionManager(
        store, clock=clock, transport=idp.transport, settings=settings, sources=sources, seed=1
    )
    gc.collect()
    rss0 = rss_mb()
    start = clock.now()
    t0 = now_ns()
    ids = m.create_sessions(_entries(clock, n))
    create_s = (now_ns() - t0) / 1e9
    gc.collect()
    rss1 = rss_mb()
    resident_created = len(m.live_sessions())

    idle: list[float] = []
    for _ in range(idle_ticks):
        t0 = now_ns()
        m.tick()
        idle.append((now_ns() - t0) / 1e3)

    # 1 %: the first n/100 sessions idle out (created STEP apart from ``start``)
    due_n = max(n // 100, 1)
    clock.advance(start + due_n * STEP + IDLE - clock.now())
    t0 = now_ns()
    report = m.tick()
    due_ms = (now_ns() - t0) / 1e6
    resident_due = len(m.live_sessions())
    rss2 = rss_mb()
    clock.advance(1.0)
    t0 = now_ns()
    again = m.tick()
    evict_ms = (now_ns() - t0) / 1e6
    resident_after = len(m.live_sessions())

    look: list[float] = []
    for sid in ids[-lookups:]:
        t0 = now_ns()
        m.admin_get(sid)
        look.append((now_ns() - t0) / 1e3)
    m.shutdown()
    return {
        "sessions": n,
        "create_s": create_s,
        "create_rate": n / create_s,
        "resident_created": resident_created,
        "rss_before_mb": rss0,
        "rss_created_mb": rss1,
        "rss_due_mb": rss2,
        "idle_tick_us": statistics.median(idle),
        "idle_tick_p99_us": sorted(idle)[int(len(idle) * 0.99) - 1] if idle else 0.0,
        "due": due_n,
        "due_tick_ms": due_ms,
        "hydrated": report.hydrated,
        "paused": report.paused,
        "resident_due": resident_due,
        "evict_tick_ms": evict_ms,
        "evicted": again.evicted,
        "resident_after": resident_after,
        "lookup_us": statistics.median(look),
    }


def run(sessions: int = 1_000_000) -> Section:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="authpulse-million-") as tmp:
        path = Path(tmp) / "million.db"
        results["SQLite"] = measure(lambda c: authpulse.SQLiteStore(path, clock=c), sessions)
        with redis_url(Path(tmp)) as url:
            if url is not None:
                where = _with_namespace(url)
                results["Redis"] = measure(lambda c: authpulse.RedisStore(where, clock=c), sessions)
    rows = [
        [
            name,
            f"{r['sessions']:,.0f}",
            f"{r['create_rate']:,.0f}/s ({r['create_s']:.0f} s)",
            f"{r['resident_created']:,.0f}",
            f"{r['rss_created_mb'] - r['rss_before_mb']:,.0f} MB "
            f"(total {r['rss_created_mb']:,.0f})",
            f"{r['idle_tick_us']:,.1f} µs",
            f"{r['due_tick_ms']:,.0f} ms ({r['hydrated']:,.0f} loaded, {r['paused']:,.0f} paused)",
            f"{r['resident_due']:,.0f} → {r['resident_after']:,.0f}",
            f"{r['lookup_us']:,.0f} µs",
        ]
        for name, r in results.items()
    ]
    notes = [
        "RSS: VmRSS of the benchmark process after the creation, less before it; a cold "
        "session costs its id in the manager's set of counted sessions and its share of the "
        "aggregates, nothing else.",
        "idle tick: median of 200 ticks with nothing due (one indexed read of the store's "
        "schedule: SQLite `schedule.due_at`, Redis `ZRANGEBYSCORE ... LIMIT 0 1`).",
        "1 % tick: hydrates the due sessions (record and token set read, a source from the "
        "factory), pauses them (record write, two events); the next tick evicts them again "
        "(resident: after the 1 % tick → after the next).",
    ]
    if "Redis" not in results:
        notes.append("Redis: skipped (no REDIS_URL and no redis-server).")
    return Section(
        key="million",
        title=f"A million sessions: {sessions:,} per manager, only the due ones resident",
        intro="`SessionManager(store, sources=factory)`: sessions live in the store; the worker "
        "finds what is due in the store's schedule.",
        headers=[
            "store",
            "sessions",
            "create",
            "resident",
            "RSS",
            "idle tick",
            "tick, 1 % due",
            "resident (due → next)",
            "cold lookup",
        ],
        rows=rows,
        notes=notes,
        data={"results": results},
    )

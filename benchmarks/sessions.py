"""Many sessions in one SessionManager (memory store).

- create: cost per ``create_session`` (each with its own refresh-token grant
  and a live token, as a backend holding one session per user would);
- memory: bytes allocated per session (tracemalloc, in a separate pass);
- tick with nothing due, and with 1 % of the sessions due (idle -> PAUSED);
- health(): cost per call on a session with recorded requests.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

from pydantic import SecretStr

import authpulse
from authpulse.testing import FakeClock, FakeIdP
from benchmarks._common import Section

now_ns = time.perf_counter_ns


def _token(clock: FakeClock) -> authpulse.TokenSet:
    return authpulse.TokenSet(
        access_token=SecretStr("at_" + "x" * 40),
        refresh_token=SecretStr("rt_" + "y" * 40),
        issued_at=clock.now(),
        expires_at=clock.now() + 3600,
    )


def _fill(
    manager: authpulse.SessionManager, idp: FakeIdP, clock: FakeClock, n: int
) -> list[authpulse.ManagedSession]:
    out = []
    for i in range(n):
        grant = authpulse.RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=f"rt-{i}"
        )
        out.append(manager.create_session(f"user-{i}", grant, token=_token(clock)))
    return out


def _manager(clock: FakeClock, idp: FakeIdP) -> authpulse.SessionManager:
    return authpulse.SessionManager(clock=clock, transport=idp.transport, seed=1)


def _memory_per_session(n: int) -> tuple[float, float]:
    """(bytes per session in all, bytes of the caller's own grant and token set)."""
    clock = FakeClock()
    idp = FakeIdP(clock=clock)
    manager = _manager(clock, idp)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sessions = _fill(manager, idp, clock, n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    # what the caller brings: a grant and a token set per session, made the same way
    own_before = tracemalloc.get_traced_memory()[0]
    own = [
        (
            authpulse.RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=f"rt-{i}"),
            _token(clock),
        )
        for i in range(n)
    ]
    gc.collect()
    own_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(sessions) == n
    assert len(own) == n
    manager.shutdown()
    return (after - before) / n, (own_after - own_before) / n


def run(*, sessions: int = 100_000, memory_sessions: int = 20_000, reps: int = 200) -> Section:
    clock = FakeClock()
    idp = FakeIdP(clock=clock)
    manager = _manager(clock, idp)

    due = max(sessions // 100, 1)
    # 1 % of the sessions are created first; they will be idle when the rest are not
    t0 = now_ns()
    early = _fill(manager, idp, clock, due)
    clock.advance(29 * 60)
    _fill(manager, idp, clock, sessions - due)
    create_us = (now_ns() - t0) / sessions / 1000

    # nothing due: the heap's top deadline is in the future
    idle_ticks = []
    for _ in range(reps):
        t = now_ns()
        report = manager.tick()
        idle_ticks.append(now_ns() - t)
        assert report.due == 0
    idle_ms = statistics.median(idle_ticks) / 1e6

    # 1 % due: the early sessions pass the 30-minute idle timeout
    clock.advance(2 * 60)
    t = now_ns()
    report = manager.tick()
    due_ms = (now_ns() - t) / 1e6
    assert report.paused == due, report
    assert all(ms.status is authpulse.SessionStatus.PAUSED for ms in early)

    # health() on a session with a full request window
    target = manager.list(status="ACTIVE", limit=1)[0]
    live = manager.admin_get(target.id)
    for i in range(100):
        live.session._record_request(i % 10 != 0, 0.01 + i * 1e-4, True)
    manager.health(target.id)
    samples = []
    for _ in range(reps):
        t = now_ns()
        for _ in range(100):
            manager.health(target.id)
        samples.append((now_ns() - t) / 100)
    health_us = statistics.median(samples) / 1000
    session_samples = []
    for _ in range(reps):
        t = now_ns()
        for _ in range(100):
            live.session.health()
        session_samples.append((now_ns() - t) / 100)
    session_health_us = statistics.median(session_samples) / 1000
    manager.shutdown()

    per_session, callers = _memory_per_session(memory_sessions)
    overhead = per_session - callers

    rows = [
        ["create_session", f"{create_us:.1f} µs per session", "-"],
        ["memory, all in", f"{per_session / 1024:.2f} KiB per session", "≤ 2 KiB"],
        [
            "memory, without the caller's grant and token set",
            f"{overhead / 1024:.2f} KiB per session",
            "≤ 2 KiB",
        ],
        ["tick, nothing due", f"{idle_ms * 1000:.1f} µs", "≤ 1 ms"],
        [f"tick, 1 % due ({due} idle -> PAUSED)", f"{due_ms:.1f} ms", "-"],
        ["manager.health(id)", f"{health_us:.1f} µs", "≤ 20 µs"],
        ["session.health()", f"{session_health_us:.1f} µs", "-"],
    ]
    return Section(
        key="sessions",
        title=f"Many sessions: {sessions:,} in one SessionManager (memory store)",
        intro=(
            "Each session has its own refresh-token grant and a live token. Memory is "
            f"measured with tracemalloc over {memory_sessions:,} sessions in a separate pass; "
            "tick and health() figures are medians."
        ),
        headers=["operation", "measured", "target"],
        rows=rows,
        data={
            "sessions": sessions,
            "create_us": create_us,
            "bytes_per_session": per_session,
            "bytes_callers_objects": callers,
            "bytes_manager_overhead": overhead,
            "tick_idle_ms": idle_ms,
            "tick_due_ms": due_ms,
            "due": due,
            "health_us": health_us,
            "session_health_us": session_health_us,
        },
    )


if __name__ == "__main__":
    print(run().table())

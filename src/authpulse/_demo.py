"""The embedded demo: a fake IdP and API in-process, tokens that expire
every few seconds, an IdP outage and a key rotation, and a client that must
never see a failure.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from ._clock import Clock, SystemClock
from ._manager import ManagerSettings, SessionManager
from ._policy import RefreshPolicy
from ._retry import TokenRetry
from ._sources import RefreshTokenGrant
from .testing import FakeAPI, FakeIdP, Fault

__all__ = ["DemoSummary", "run_demo"]


@dataclass(frozen=True)
class DemoSummary:
    """What happened during a demo run."""

    seconds: float
    calls: int
    failed: int
    refreshes: int
    refresh_failures: int
    token_calls: int
    replays_after_401: int
    reuse_detected: int
    final_score: int
    lowest_score: int
    ux_score: float | None


def run_demo(
    duration: float = 20.0,
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
    calls_per_second: int = 20,
    access_ttl: float = 6.0,
) -> DemoSummary:
    """Run the scenario for ``duration`` seconds of ``clock`` time and print a
    line per second. With a :class:`~authpulse.testing.FakeClock` it runs
    in no real time.
    """
    clock = clock or SystemClock()
    out = out or sys.stdout
    fake_time = not isinstance(clock, SystemClock)
    scale = duration / 20.0
    outage = (5.0 * scale, 7.5 * scale)  # IdP answers 503 while a refresh is due
    rotation_at = 13.0 * scale  # the API forgets every token (a signing-key rotation)

    idp = FakeIdP(clock=clock, access_ttl=access_ttl * scale, latency=0.0)
    api = FakeAPI(idp, base_url="https://api.demo")
    grant = RefreshTokenGrant(
        idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
    )
    manager = SessionManager(
        clock=clock,
        transport=idp.transport,
        settings=ManagerSettings(tick_interval=1.0),
        policy=RefreshPolicy(
            margin=0.0,
            fraction=0.5,
            expiry_leeway=0.2,
            retry_stale_after=0.25 * scale,
            retry_stale_max=1.0 * scale,
        ),
        retry=TokenRetry(
            attempts=4,
            deadline=1.5 * scale,
            attempt_timeout=1.0,
            backoff_base=0.1 * scale,
            backoff_max=0.5 * scale,
        ),
    )
    ms = manager.create_session(
        "demo-user", grant, kind="user", metadata={"user_agent": "authpulse-demo"}
    )
    session = ms.session
    client = ms.client(base_url=api.base_url, transport=api.transport)

    calls = failed = 0
    lowest = 100
    rotated = False
    start = clock.monotonic()
    step = 1.0 / calls_per_second
    next_print = 1.0
    print(
        f"authpulse demo: {duration:.0f}s, tokens live {access_ttl * scale:.1f}s, IdP down "
        f"{outage[0]:.1f}-{outage[1]:.1f}s, API key rotation at {rotation_at:.1f}s",
        file=out,
    )
    try:
        while (elapsed := clock.monotonic() - start) < duration:
            idp.set_outage(Fault(status=503) if outage[0] <= elapsed < outage[1] else None)
            if not rotated and elapsed >= rotation_at:
                idp.expire_all()
                rotated = True
            try:
                ok = client.get("/v1/items").status_code == 200
            except Exception:  # a demo counts every failure the user would see
                ok = False
            calls += 1
            failed += not ok
            if fake_time:
                session.join_background()  # on a fake clock, let background work finish
            if elapsed >= next_print:
                manager.tick()
                report = manager.health(ms.id)
                lowest = min(lowest, report.score)
                cur = session.token_set
                left = (cur.expires_at - session.stats().skew - clock.now()) if cur else 0.0
                worst = report.worst
                why = f" — {worst.name}: {worst.reason}" if worst else ""
                idp_state = "DOWN" if idp.faults.outage else "up"
                st = session.stats()
                print(
                    f"t={elapsed:5.1f}s calls {calls:4d} ok / {failed} failed | token "
                    f"expires in {left:4.1f}s gen {session.generation:2d} | refreshes "
                    f"{st.refreshes:2d} failed {st.failures:2d} | IdP {idp_state:4s} | "
                    f"{ms.auth_state.value:10s} | health {report.score:3d} "
                    f"{report.band.value}{why}",
                    file=out,
                )
                next_print += 1.0
            clock.sleep(step)
        final_score = manager.health(ms.id).score
        ux = session.request_window().ux_score
        manager.close(ms.id)
    finally:
        client.close()
        manager.shutdown()

    st = session.stats()
    summary = DemoSummary(
        seconds=duration,
        calls=calls,
        failed=failed,
        refreshes=st.refreshes,
        refresh_failures=st.failures,
        token_calls=idp.hits,
        replays_after_401=api.unauthorized,
        reuse_detected=idp.reuse_detected,
        final_score=final_score,
        lowest_score=lowest,
        ux_score=ux,
    )
    print(
        f"\nsummary: {summary.calls} calls, {summary.failed} failed (user-visible); "
        f"{summary.refreshes} refreshes, {summary.refresh_failures} refresh failures during "
        f"the outage, {summary.token_calls} token calls; {summary.replays_after_401} 401 "
        f"answered by refresh and replay; refresh-token reuse detected: "
        f"{summary.reuse_detected}; health now {summary.final_score} "
        f"(lowest {summary.lowest_score}); user-experience score "
        f"{(summary.ux_score or 0):.1f}",
        file=out,
    )
    return summary

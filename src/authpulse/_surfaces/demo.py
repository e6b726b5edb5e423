"""The embedded demo: a fake IdP and API in-process, tokens that expire every
few seconds, and a run of faults — an IdP outage, an API 5xx burst, a revoked
grant, a signing-key rotation, a throttling burst — that the client must get
through without one user-visible failure.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from .._core.health import HealthReport
from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._fleet.manager import ManagerSettings, SessionManager
from .._http.cache import CachePolicy, CacheStats
from .._http.retry import RetryPolicy
from .._runtime.breakers import BreakerPolicy, BreakerState
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event, EventKind
from .._sessions.fallback import FallbackChain, LoginRequired, StoredCredentials
from .._sessions.sources import RefreshTokenGrant
from .._sessions.stats import refresh_counts
from ..testing import FakeAPI, FakeIdP, Fault

__all__ = [
    "FAULTS",
    "DemoEvent",
    "DemoFrame",
    "DemoIntro",
    "DemoRenderer",
    "DemoSummary",
    "PlainRenderer",
    "run_demo",
]

#: the faults the demo can inject, in the order they happen (seconds of a 20 s run)
FAULTS: dict[str, tuple[float, float, str]] = {
    "idp-outage": (5.0, 7.5, "the IdP answers 503 while a refresh is due"),
    "api-5xx": (9.0, 10.5, "the API answers 503: retries, then the breaker opens"),
    "revoked-grant": (11.5, 11.5, "the refresh token is revoked: fall back to stored credentials"),
    "key-rotation": (13.0, 13.0, "the API forgets every token: 401, refresh, replay"),
    "throttling": (15.0, 16.0, "the API answers 429 with Retry-After: 1"),
}


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
    api_retries: int = 0
    breaker_opened: bool = False
    stale_served: int = 0
    highest_fallback_level: int = 0
    faults: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DemoIntro:
    """What the demo is about to do."""

    duration: float
    token_ttl: float
    #: (start second, name, description) of each chosen fault, in order
    faults: tuple[tuple[float, str, str], ...]


@dataclass(frozen=True)
class DemoEvent:
    """One line of the demo's event log: a session event or a fault switching."""

    elapsed: float
    kind: str
    detail: str
    fault: bool = False  #: a fault switching, not a session event


@dataclass(frozen=True)
class DemoFrame:
    """The state of the demo once per second of its clock."""

    elapsed: float
    duration: float
    calls: int
    failed: int
    generation: int
    refreshes: int
    refresh_failures: int
    auth_state: str
    fallback_level: int
    api_retries: int
    breaker: str
    stale: int
    health: HealthReport
    token_expires_in: float | None
    cache: CacheStats | None = None
    active_faults: tuple[str, ...] = ()
    events: tuple[DemoEvent, ...] = ()  #: the most recent, oldest first


class DemoRenderer(Protocol):
    """Shows a demo run: ``start`` once, ``frame`` once a second, ``finish`` at the end."""

    def start(self, intro: DemoIntro) -> None: ...

    def frame(self, frame: DemoFrame) -> None: ...

    def finish(self, summary: DemoSummary) -> None: ...


class PlainRenderer:
    """A line per second on a text stream (what ``authpulse demo --plain`` prints)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout

    def start(self, intro: DemoIntro) -> None:
        print(
            f"authpulse demo: {intro.duration:.0f}s, tokens live {intro.token_ttl:.1f}s; faults: "
            + "; ".join(f"{start:.1f}s {name} ({what})" for start, name, what in intro.faults),
            file=self.out,
            flush=True,
        )

    def frame(self, f: DemoFrame) -> None:
        worst = f.health.worst
        why = f" — {worst.name}: {worst.reason}" if worst else ""
        print(
            f"t={f.elapsed:5.1f}s {f.calls:4d} ok/{f.failed} failed | gen {f.generation:2d}"
            f" refreshes: {refresh_counts(f.refreshes, f.refresh_failures)} | "
            f"{f.auth_state:8s} fallback {f.fallback_level} | retries "
            f"{f.api_retries:2d} breaker {f.breaker:9s} | stale {f.stale:3d} | health "
            f"{f.health.score:3d} {f.health.band.value}{why}",
            file=self.out,
            flush=True,
        )

    def finish(self, summary: DemoSummary) -> None:
        print("\n" + summary_text(summary), file=self.out, flush=True)


def summary_items(summary: DemoSummary) -> tuple[tuple[str, str], ...]:
    """The summary of a run as (label, value) pairs, in the order they are shown."""
    return (
        ("calls", f"{summary.calls}, {summary.failed} failed (user-visible)"),
        ("refreshes", refresh_counts(summary.refreshes, summary.refresh_failures)),
        ("token endpoint calls", f"{summary.token_calls} (retries included)"),
        ("API retries", str(summary.api_retries)),
        ("breaker", "opened" if summary.breaker_opened else "never opened"),
        ("stale answers", str(summary.stale_served)),
        ("highest fallback level", str(summary.highest_fallback_level)),
        ("401 answered by refresh and replay", str(summary.replays_after_401)),
        ("refresh-token reuse detected", str(summary.reuse_detected)),
        ("health now", f"{summary.final_score} (lowest {summary.lowest_score})"),
        ("user-experience score", f"{(summary.ux_score or 0):.1f}"),
    )


def summary_text(summary: DemoSummary) -> str:
    """The one-paragraph summary of a run."""
    return "summary: " + "; ".join(f"{k}: {v}" for k, v in summary_items(summary))


def _event_detail(event: Event) -> str:
    f = dict(event.fields)
    parts: list[str] = []
    if "from" in f and "to" in f:
        parts.append(f"{f.pop('from')} → {f.pop('to')}")
    for key, value in f.items():
        if value is None or value == "":
            continue
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


#: session events shown in the demo's event log (activity and heartbeats are noise)
_SHOWN_EVENTS = frozenset(EventKind) - {EventKind.ACTIVITY, EventKind.HEARTBEAT}


def run_demo(
    duration: float = 20.0,
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
    calls_per_second: int = 20,
    access_ttl: float = 6.0,
    faults: tuple[str, ...] | None = None,
    renderer: DemoRenderer | None = None,
    recent_events: int = 8,
) -> DemoSummary:
    """Run the scenario for ``duration`` seconds of ``clock`` time, showing a frame
    per second through ``renderer`` (default: :class:`PlainRenderer` on ``out``,
    a line per second). With a :class:`~authpulse.testing.FakeClock` it runs in
    no real time, deterministically. ``faults`` picks from :data:`FAULTS`
    (default: all of them). Frames carry the last ``recent_events`` events.
    """
    clock = clock or SystemClock()
    view: DemoRenderer = renderer if renderer is not None else PlainRenderer(out)
    chosen = tuple(FAULTS) if faults is None else faults
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        from .._core.errors import ConfigurationError

        raise ConfigurationError(f"unknown faults {unknown}; choose from {list(FAULTS)}")
    fake_time = not isinstance(clock, SystemClock)
    scale = duration / 20.0

    def window(name: str) -> tuple[float, float]:
        start, end, _ = FAULTS[name]
        return start * scale, end * scale

    idp = FakeIdP(clock=clock, access_ttl=access_ttl * scale, users={"demo-user": "s3cret-pw"})
    api = FakeAPI(idp, base_url="https://api.demo")
    chain = FallbackChain(
        [
            RefreshTokenGrant(
                idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
            ),
            StoredCredentials(
                idp.token_url, "client", "secret", load=lambda: ("demo-user", "s3cret-pw")
            ),
            LoginRequired("https://app.demo/login"),
        ],
        retry_primary_after=3.0 * scale,
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
        "demo-user", chain, kind="user", metadata={"user_agent": "authpulse-demo"}
    )
    session = ms.session
    client = ms.client(
        base_url=api.base_url,
        transport=api.transport,
        retry=RetryPolicy(attempts=4, deadline=3.0 * scale, backoff_base=0.05 * scale),
        breaker=BreakerPolicy(window=5.0 * scale, minimum_calls=6, open_for=2.0 * scale),
        cache=CachePolicy(ttl=0.5 * scale, stale_while_revalidate=1.0 * scale, stale_if_error=60),
    )
    cache = client.cache
    start_wall = clock.now()
    log: deque[DemoEvent] = deque(maxlen=max(recent_events, 0))

    def on_event(event: Event) -> None:
        log.append(DemoEvent(event.at - start_wall, event.kind.value, _event_detail(event)))

    manager.subscribe(on_event, kinds=_SHOWN_EVENTS)

    calls = failed = 0
    lowest = 100
    breaker_opened = False
    top_level = 0
    done: set[str] = set()
    start = clock.monotonic()
    step = 1.0 / calls_per_second
    next_print = 1.0
    view.start(
        DemoIntro(
            duration=duration,
            token_ttl=access_ttl * scale,
            faults=tuple((window(f)[0], f, FAULTS[f][2]) for f in FAULTS if f in chosen),
        )
    )
    active: tuple[str, ...] = ()
    try:
        while (elapsed := clock.monotonic() - start) < duration:
            fired = set(done)
            _inject(idp, api, chosen, window, elapsed, done)
            now_active = tuple(f for f in chosen if window(f)[0] <= elapsed < window(f)[1])
            for name in [*(f for f in now_active if f not in active), *(done - fired)]:
                log.append(DemoEvent(elapsed, "fault", f"{name}: {FAULTS[name][2]}", fault=True))
            active = now_active
            try:
                ok = client.get("/v1/catalog").status_code == 200
            except Exception:  # the demo counts every failure the user would see
                ok = False
            calls += 1
            failed += not ok
            if fake_time:
                client.join_background()  # on a fake clock, let background work finish
            top_level = max(top_level, chain.level)
            breaker = session.breaker_state() or "closed"
            breaker_opened = breaker_opened or breaker == BreakerState.OPEN
            if elapsed >= next_print:
                manager.tick()
                report = manager.health(ms.id)
                lowest = min(lowest, report.score)
                st = session.stats()
                cs = cache.stats() if cache is not None else None
                ts = session.token_set
                view.frame(
                    DemoFrame(
                        elapsed=elapsed,
                        duration=duration,
                        calls=calls,
                        failed=failed,
                        generation=session.generation,
                        refreshes=st.refreshes,
                        refresh_failures=st.failures,
                        auth_state=ms.auth_state.value,
                        fallback_level=chain.level,
                        api_retries=session.api_retries,
                        breaker=breaker,
                        stale=(cs.stale_served + cs.stale_if_error_served) if cs else 0,
                        health=report,
                        token_expires_in=(
                            None if ts is None else ts.expires_at - st.skew - clock.now()
                        ),
                        cache=cs,
                        active_faults=active,
                        events=tuple(log),
                    )
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
    cs = cache.stats() if cache is not None else None
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
        api_retries=session.api_retries,
        breaker_opened=breaker_opened,
        stale_served=(cs.stale_served + cs.stale_if_error_served) if cs else 0,
        highest_fallback_level=top_level,
        faults=chosen,
    )
    view.finish(summary)
    return summary


def _inject(
    idp: FakeIdP,
    api: FakeAPI,
    chosen: tuple[str, ...],
    window: Callable[[str], tuple[float, float]],
    elapsed: float,
    done: set[str],
) -> None:
    """Switch the fakes' faults on and off at the scripted times."""

    def active(name: str) -> bool:
        if name not in chosen:
            return False
        start, end = window(name)
        return bool(start <= elapsed < end)

    idp.set_outage(Fault(status=503) if active("idp-outage") else None)
    if active("api-5xx"):
        api.set_outage(Fault(status=503))
    elif active("throttling"):
        api.set_outage(Fault(status=429, headers={"retry-after": "1"}))
    else:
        api.set_outage(None)
    for once in ("revoked-grant", "key-rotation"):
        if once in chosen and once not in done and elapsed >= window(once)[0]:
            done.add(once)
            if once == "revoked-grant":
                idp.revoke_all()
            else:
                idp.expire_all()

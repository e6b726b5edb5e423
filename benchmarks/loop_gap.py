"""Event-loop gaps of awaited SessionManager calls on a Redis store 20 ms away.

A private ``redis-server`` (or the one at ``REDIS_URL``) sits behind a TCP
proxy that holds every answer 20 ms, so each store round trip costs 20 ms,
as a Redis in another zone would. A ticker coroutine sleeps 1 ms in a loop
on the same event loop and records when it wakes up. Each repetition runs
one session through its life — create, get, record activity, pause, resume,
list, first token, forced refresh, a tick that refreshes it, a tick that
pauses it as idle, close — plus the first token and a forced refresh of a
``Session`` on the same store that no manager owns. Every call is made twice,
on separate sessions:

- awaited: ``await manager.acreate_session(...)`` (the async twins);
- on a thread: ``await asyncio.to_thread(manager.create_session, ...)``,
  what a caller gets by offloading the sync call (the floor for a call).

Reported per call: the largest gap between two consecutive ticker wake-ups
overlapping the call (median and worst over the repetitions), the call's own
duration and the store round trips it made (answers through the proxy), for
both forms, next to an idle loop. A gap of ~1 ms is no stall; an awaited call
that does its store I/O synchronously shows a gap of about 20 ms per round
trip. Target (issue 11): worst gap of every awaited call ≤ 5 ms.

    python benchmarks/loop_gap.py
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import authpulse
from authpulse import ManagedSession, SessionManager, SessionStatus, SessionStore, TickReport
from authpulse.testing import FakeClock, FakeIdP
from benchmarks._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    Outcome,
    Section,
    fmt_ms,
    fmt_range,
    frozen_gc,
    median,
    now_ns,
    target_mark,
)
from benchmarks._proxy import LatencyProxy
from benchmarks.stores import _with_namespace, redis_url

DELAY = 0.020  # added to every store round trip, seconds
TICK = 0.001
SETTLE = 0.005  # ticking before each call (and after the last)
IDLE = 0.030  # the idle-floor "call"
TARGET_NS = 5_000_000
ACCESS_TTL = 600.0
MODES = ("awaited", "thread")
FLOOR = "idle"


# ----------------------------------------------------------------------- the ticker


class Ticker:
    """A coroutine that sleeps ``TICK`` in a loop and records every wake-up."""

    def __init__(self) -> None:
        self.wakes: list[int] = []
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        self.wakes.append(now_ns())
        while not self._stop:
            await asyncio.sleep(TICK)
            self.wakes.append(now_ns())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    def max_gap(self, t0: int, t1: int) -> int:
        """The longest interval between consecutive wake-ups that overlaps [t0, t1]."""
        w = self.wakes
        first = max(bisect.bisect_right(w, t0), 1)  # the first wake after t0
        last = bisect.bisect_left(w, t1)  # the first wake at or after t1
        return max((w[k] - w[k - 1] for k in range(first, min(last, len(w) - 1) + 1)), default=0)


# ------------------------------------------------------------------------ the calls


@dataclass
class Ctx:
    """One sequence's state: the manager, the session it made, the unmanaged one."""

    manager: SessionManager
    store: SessionStore
    idp: FakeIdP
    clock: FakeClock
    seq: int
    ms: ManagedSession | None = None
    bare: authpulse.Session | None = None

    @property
    def owner(self) -> str:
        return f"user-{self.seq}"

    @property
    def sid(self) -> str:
        assert self.ms is not None, "no session was created"
        return self.ms.id

    def source(self) -> authpulse.RefreshTokenGrant:
        return authpulse.RefreshTokenGrant(
            self.idp.token_url,
            CLIENT_ID,
            CLIENT_SECRET,
            refresh_token=self.idp.issue_refresh_token(),
        )

    def managed(self) -> authpulse.Session:
        assert self.ms is not None, "no session was created"
        return self.ms.session

    def unmanaged(self) -> authpulse.Session:
        assert self.bare is not None, "no unmanaged session"
        return self.bare


Args = tuple[tuple[Any, ...], dict[str, Any]]


def _no_args(c: Ctx) -> Args:
    return (), {}


def _id(c: Ctx) -> Args:
    return (c.sid,), {}


def _id_owner(c: Ctx) -> Args:
    return (c.sid,), {"owner": c.owner}


@dataclass(frozen=True)
class Call:
    """A method with a sync and an async twin (``name`` / ``"a" + name``)."""

    key: str
    label: str  # the awaited form, as the table shows it
    target: Callable[[Ctx], Any]
    method: str
    args: Callable[[Ctx], Args] = _no_args
    before: Callable[[Ctx], None] | None = None  # untimed set-up
    check: Callable[[Ctx, Any], bool] = lambda c, r: True

    def sync(self, c: Ctx) -> Callable[[], Any]:
        fn = getattr(self.target(c), self.method)
        a, kw = self.args(c)
        return lambda: fn(*a, **kw)

    def awaitable(self, c: Ctx) -> Callable[[], Awaitable[Any]]:
        fn = getattr(self.target(c), "a" + self.method)
        a, kw = self.args(c)
        return lambda: fn(*a, **kw)


def _created(c: Ctx, ms: Any) -> bool:
    c.ms = ms
    return isinstance(ms, ManagedSession) and ms.status is SessionStatus.ACTIVE


def _status(status: SessionStatus) -> Callable[[Ctx, Any], bool]:
    return lambda c, r: getattr(r, "status", None) is status


def _is_token(c: Ctx, r: Any) -> bool:
    return isinstance(r, str | authpulse.TokenSet)


def _listed(c: Ctx, r: Any) -> bool:
    return isinstance(r, list) and [x.id for x in r] == [c.sid]


def _got(c: Ctx, r: Any) -> bool:
    return r is c.ms


def _token_due(c: Ctx) -> None:
    at = c.managed().refresh_at
    assert at is not None, "the session has no token"
    c.clock.advance(max(at - c.clock.now(), 0.0) + 1.0)


def _idle(c: Ctx) -> None:
    idle = c.manager.settings.idle_timeout
    assert idle is not None
    c.clock.advance(idle + 1.0)


def _refreshed(c: Ctx, r: Any) -> bool:
    return isinstance(r, TickReport) and r.refreshed == 1 and r.paused == 0 and r.errors == 0


def _paused(c: Ctx, r: Any) -> bool:
    return (
        isinstance(r, TickReport)
        and r.paused == 1
        and r.errors == 0
        and c.ms is not None
        and c.ms.status is SessionStatus.PAUSED
    )


def _make_bare(c: Ctx) -> None:
    c.bare = authpulse.Session(
        c.source(),
        clock=c.clock,
        transport=c.idp.transport,
        async_transport=c.idp.async_transport,
        store=c.store,
        store_key=f"bare-{c.seq}",
        seed=1,
    )


def _manager(c: Ctx) -> SessionManager:
    return c.manager


CALLS: list[Call] = [
    Call(
        "create_session",
        "manager.acreate_session(owner, source)",
        _manager,
        "create_session",
        lambda c: ((c.owner, c.source()), {}),
        check=_created,
    ),
    Call("get", "manager.aget(id, owner=…)", _manager, "get", _id_owner, check=_got),
    Call(
        "record_activity",
        "manager.arecord_activity(id)",
        _manager,
        "record_activity",
        _id,
        check=_status(SessionStatus.ACTIVE),
    ),
    Call(
        "pause", "manager.apause(id)", _manager, "pause", _id, check=_status(SessionStatus.PAUSED)
    ),
    Call(
        "resume",
        "manager.aresume(id)",
        _manager,
        "resume",
        _id,
        check=_status(SessionStatus.ACTIVE),
    ),
    Call(
        "list",
        "manager.alist(owner=…)",
        _manager,
        "list",
        lambda c: ((), {"owner": c.owner}),
        check=_listed,
    ),
    Call(
        "token",
        "ms.session.atoken() (first token)",
        lambda c: c.managed(),
        "token",
        check=_is_token,
    ),
    Call(
        "force_refresh",
        "ms.session.aforce_refresh()",
        lambda c: c.managed(),
        "force_refresh",
        check=_is_token,
    ),
    Call(
        "tick_refresh",
        "manager.atick(), 1 token due: refreshed",
        _manager,
        "tick",
        before=_token_due,
        check=_refreshed,
    ),
    Call(
        "tick_idle",
        "manager.atick(), 1 session idle: paused",
        _manager,
        "tick",
        before=_idle,
        check=_paused,
    ),
    Call(
        "close",
        "manager.aclose(id)",
        _manager,
        "close",
        _id,
        check=_status(SessionStatus.COMPLETED),
    ),
    Call(
        "bare_token",
        "Session(store=…).atoken(), no manager (first token)",
        lambda c: c.unmanaged(),
        "token",
        before=_make_bare,
        check=_is_token,
    ),
    Call(
        "bare_force_refresh",
        "Session(store=…).aforce_refresh(), no manager",
        lambda c: c.unmanaged(),
        "force_refresh",
        check=_is_token,
    ),
]


# ---------------------------------------------------------------------- measuring


@dataclass
class Sample:
    gap_ns: int  # largest wake-up gap overlapping the call
    took_ns: int  # the call's own duration
    round_trips: int  # answers through the proxy during the call


@dataclass
class Row:
    key: str
    label: str
    mode: str  # "awaited" or "thread"
    samples: list[Sample] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


@dataclass
class Result:
    rows: list[Row]  # per call (and the idle floor), one row per mode
    store: str  # where the store was, for the intro
    delay: float
    reps: int
    warmup: bool
    reuse_detected: int = 0

    def row(self, key: str, mode: str) -> Row:
        for r in self.rows:
            if r.key == key and r.mode == mode:
                return r
        raise LookupError(f"no row {key!r} / {mode!r}")


class Rig:
    """The ticker, the proxy's counter and the rows: runs sequences and records them."""

    def __init__(self, ticker: Ticker, proxy: LatencyProxy, rows: list[Row]) -> None:
        self.ticker = ticker
        self.proxy = proxy
        self.rows = {(r.key, r.mode): r for r in rows}

    async def timed(
        self, call: Callable[[], Awaitable[Any]], row: Row | None
    ) -> tuple[Any, BaseException | None]:
        """Run ``call`` between two settle periods; record it on ``row`` (if any)."""
        gc.collect()
        await asyncio.sleep(SETTLE)
        trips = self.proxy.answers
        t0 = now_ns()
        result: Any = None
        error: Exception | None = None
        try:
            result = await call()
        except Exception as exc:
            error = exc
        t1 = now_ns()
        trips = self.proxy.answers - trips
        await asyncio.sleep(SETTLE)  # a wake-up after the call closes its last gap
        if row is not None:
            row.samples.append(Sample(self.ticker.max_gap(t0, t1), t1 - t0, trips))
        return result, error

    async def sequence(self, c: Ctx, mode: str, *, record: bool) -> None:
        self.ticker.wakes[:-1] = []  # keep the last wake-up: the gap to the next one counts
        floor = self.rows[(FLOOR, mode)] if record else None
        if mode == "awaited":
            await self.timed(lambda: asyncio.sleep(IDLE), floor)
        else:
            await self.timed(lambda: asyncio.to_thread(time.sleep, IDLE), floor)
        if floor is not None:
            floor.outcome.record(None)
        for call in CALLS:
            row = self.rows[(call.key, mode)] if record else None
            try:
                if call.before is not None:
                    call.before(c)
                run = call.awaitable(c) if mode == "awaited" else _offload(call.sync(c))
            except Exception as exc:  # set-up failed: the call did not run
                if row is not None:
                    row.outcome.record(None, exc)
                continue
            result, error = await self.timed(run, row)
            if error is None and not call.check(c, result):
                error = UnexpectedResultError(f"{call.key} returned {type(result).__name__}")
            if row is not None:
                row.outcome.record(None, error)
        # untimed clean-up of this sequence's sessions
        for session in (c.ms.session if c.ms is not None else None, c.bare):
            if session is not None:
                if mode == "awaited":
                    await session.aclose()
                else:
                    await asyncio.to_thread(session.close)


def _offload(sync: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    return lambda: asyncio.to_thread(sync)


class UnexpectedResultError(Exception):
    """A call returned, but not what it should have (counted as a failure)."""


def _proxied(url: str, port: int) -> str:
    """``url`` pointing at 127.0.0.1:``port`` instead (credentials, db and query kept)."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


def _empty_rows() -> list[Row]:
    keys = [
        (FLOOR, f"idle loop (floor): asyncio.sleep / to_thread(time.sleep), {IDLE * 1e3:.0f} ms")
    ]
    keys += [(c.key, c.label) for c in CALLS]
    return [Row(key, label, mode) for key, label in keys for mode in MODES]


async def _measure(url: str, reps: int, warmup: bool, delay: float) -> Result:
    parts = urlsplit(url)
    rows = _empty_rows()
    clock = FakeClock()
    idp = FakeIdP(clock=clock, access_ttl=ACCESS_TTL)
    with LatencyProxy(parts.hostname or "127.0.0.1", parts.port or 6379, delay) as proxy:
        store = authpulse.open_store(_with_namespace(_proxied(url, proxy.port)), clock=clock)
        manager = SessionManager(
            store,
            clock=clock,
            transport=idp.transport,
            async_transport=idp.async_transport,
            seed=1,
        )
        ticker = Ticker()
        ticker.start()
        rig = Rig(ticker, proxy, rows)
        seq = 0
        try:
            for rep in range(-1 if warmup else 0, reps):
                for mode in MODES:
                    seq += 1
                    await rig.sequence(Ctx(manager, store, idp, clock, seq), mode, record=rep >= 0)
        finally:
            await ticker.stop()
            await manager.ashutdown()
            await store.aclose()  # this loop's async client (ashutdown closed the sync one)
    return Result(
        rows,
        store=f"Redis behind a {delay * 1e3:.0f} ms proxy",
        delay=delay,
        reps=reps,
        warmup=warmup,
        reuse_detected=idp.reuse_detected,
    )


def measure(*, reps: int = 6, delay: float = DELAY, warmup: bool = True) -> Result | None:
    """The rows, or ``None`` without a Redis (``REDIS_URL`` or a ``redis-server`` binary).

    ``warmup=False`` skips the untimed first sequence per mode (``--quick``, the smoke test)."""
    with tempfile.TemporaryDirectory() as tmp, redis_url(Path(tmp)) as url:
        if url is None or urlsplit(url).scheme != "redis":
            return None  # rediss:// and unix sockets: the plain TCP proxy cannot sit in front
        with frozen_gc():
            return asyncio.run(_measure(url, reps, warmup, delay))


# ------------------------------------------------------------------------ reporting


def _title(delay: float) -> str:
    return f"Event-loop gaps of SessionManager calls, Redis {delay * 1e3:.0f} ms away"


def _worst(rows: list[Row], mode: str) -> int:
    return max(
        (s.gap_ns for r in rows if r.mode == mode and r.key != FLOOR for s in r.samples), default=0
    )


def section(result: Result | None) -> Section:
    headers = [
        "call",
        "store round trips",
        "awaited: gap median",
        "awaited: gap worst",
        "awaited: took",
        "thread: gap median",
        "thread: gap worst",
        "thread: took",
        "failed / calls (awaited, thread)",
        "target",
    ]
    if result is None:
        return Section(
            key="loop_gap",
            title=_title(DELAY),
            intro="Not measured: no Redis (set REDIS_URL to a redis:// URL or install "
            "redis-server).",
            headers=headers[:1],
            rows=[["no Redis available"]],
            data={"redis": None},
        )
    table: list[list[str]] = []
    data: dict[str, Any] = {
        "tick_s": TICK,
        "delay_s": result.delay,
        "reps": result.reps,
        "target_ns": TARGET_NS,
        "reuse_detected": result.reuse_detected,
        "rows": [],
    }
    for key in [FLOOR, *(c.key for c in CALLS)]:
        a, t = result.row(key, "awaited"), result.row(key, "thread")

        def gaps(r: Row) -> list[int]:
            return [s.gap_ns for s in r.samples] or [0]

        def took(r: Row) -> float:
            return median([s.took_ns for s in r.samples]) if r.samples else 0.0

        trips = [s.round_trips for s in a.samples] or [0]
        ok = max(gaps(a)) <= TARGET_NS
        mark = "(floor)" if key == FLOOR else f"≤ 5 ms: {target_mark(ok)}"
        table.append(
            [
                a.label,
                fmt_range(trips),
                fmt_ms(median(gaps(a)), 1),
                fmt_ms(max(gaps(a)), 1),
                fmt_ms(took(a), 1),
                fmt_ms(median(gaps(t)), 1),
                fmt_ms(max(gaps(t)), 1),
                fmt_ms(took(t), 1),
                f"{a.outcome.failures}/{a.outcome.requests}, "
                f"{t.outcome.failures}/{t.outcome.requests}",
                mark,
            ]
        )
        for r in (a, t):
            data["rows"].append(
                {
                    "key": r.key,
                    "label": r.label,
                    "mode": r.mode,
                    "gap_ns": [s.gap_ns for s in r.samples],
                    "took_ns": [s.took_ns for s in r.samples],
                    "round_trips": [s.round_trips for s in r.samples],
                    "calls": r.outcome.requests,
                    "failures": r.outcome.failures,
                    "failure_kinds": dict(r.outcome.kinds),
                }
            )
    worst_a, worst_t = _worst(result.rows, "awaited"), _worst(result.rows, "thread")
    data["worst_awaited_gap_ns"] = worst_a
    data["worst_thread_gap_ns"] = worst_t
    delay_ms = result.delay * 1e3
    return Section(
        key="loop_gap",
        title=_title(result.delay),
        intro=(
            f"The store is a {result.store}: every Redis round trip costs {delay_ms:.0f} ms "
            f"more. A ticker sleeps {TICK * 1e3:.0f} ms in a loop on the event loop; a call's "
            "gap is the longest interval between two wake-ups that overlaps it (~1 ms: no "
            f"stall; a blocking round trip: ~{delay_ms:.0f} ms). Each repetition ({result.reps}"
            f"{', after one warm-up' if result.warmup else ', no warm-up'}) runs one session "
            "through every call, awaited "
            "(`await manager.acreate_session(...)`) and, on another session, as the sync "
            "twin on a worker thread (`await asyncio.to_thread(manager.create_session, ...)`). "
            f"**Worst gap over all awaited calls: {fmt_ms(worst_a, 1)}; on a thread: "
            f"{fmt_ms(worst_t, 1)}.** Target (issue 11): every awaited call's worst gap "
            "≤ 5 ms."
        ),
        headers=headers,
        rows=table,
        notes=[
            "store round trips: answers that came through the proxy during the awaited call "
            "(blocking or not); an awaited call that makes them synchronously stalls the loop "
            f"about {delay_ms:.0f} ms each. Calls on a thread make the same ones.",
            "took: the call's own duration, median. thread rows: the sync twin "
            "(`create_session`, `get`, `token`, `tick`, …) run by `asyncio.to_thread`; their "
            "gap is what the loop sees when the work is offloaded, i.e. the floor for that call.",
            "The session and the FakeIdP (in-process, no latency, async_transport for awaited "
            "calls) share a FakeClock; before each tick it is advanced past the token's refresh "
            "time, then past the idle timeout. `ms.session` is the manager's session (its "
            "refresh events are written to the store by the manager); `Session(store=…)` is "
            "one on the same RedisStore that no manager owns.",
            "The proxy runs on threads in this process (it forwards requests at once and holds "
            "each answer chunk "
            f"{delay_ms:.0f} ms). failed / calls counts exceptions and calls that returned "
            "something other than expected (e.g. a tick that refreshed nothing).",
        ],
        data=data,
    )


def run(*, reps: int = 6, delay: float = DELAY, warmup: bool = True) -> Section:
    return section(measure(reps=reps, delay=delay, warmup=warmup))


if __name__ == "__main__":
    print(run().markdown())

"""Benchmark 4: request latency while the token is STALE (background refresh).

A STALE token is still valid but inside the refresh window: authpulse keeps
serving it and refreshes in the background (a thread for sync callers, a
task for async ones). The claim under test: callers do not notice.

The session and the FakeIdP share a FakeClock. Each round:

1. STALE batch: the clock is advanced into the refresh window; requests are
   then made one after another, each timed, from the first one (which
   starts the background refresh, 50 ms at the token endpoint) until the
   session has installed the new token. Every timed request therefore ran
   while the refresh was in flight.
2. FRESH batch: the same number of requests with the new, FRESH token.

Requests go to a MockTransport answering 200 (the async handler yields
once with ``asyncio.sleep(0)``, as any real I/O would, so that the
background task actually runs between requests). Reported: p50/p99/max
latency of each population and the p99 difference.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Any

import httpx

import authpulse
from authpulse.testing import FakeClock, FakeIdP

from ._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_LATENCY,
    Section,
    fmt_us,
    frozen_gc,
    now_ns,
    percentile,
    target_mark,
)

API_URL = "https://api.test"
PATH = "/resource"
TTL = 3600.0
#: from the moment a token is issued, this puts it 200 s before expiry: past the
#: refresh window's start (at least 360 s before expiry with the default policy)
#: and well before the 5 s expiry leeway, i.e. STALE
STALE_ADVANCE = TTL - 200.0
MAX_BATCH = 50_000
TARGET_NS = 1_000_000


@dataclass
class ModeResult:
    fresh_ns: list[int] = field(default_factory=list)
    stale_ns: list[int] = field(default_factory=list)
    stale_batch_sizes: list[int] = field(default_factory=list)
    #: per STALE batch, the position of its slowest request (0 = the one that
    #: found the token STALE and started the background refresh)
    slowest_at: list[int] = field(default_factory=list)
    token_calls: int = 0
    refreshes: int = 0
    failures: int = 0
    requests: int = 0


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


async def _aok(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0)  # a real request would wait for I/O here
    return httpx.Response(200)


def _rig(latency: float) -> tuple[FakeClock, FakeIdP, authpulse.Session]:
    clock = FakeClock()
    idp = FakeIdP(clock=clock, access_ttl=TTL, latency=latency)
    source = authpulse.RefreshTokenGrant(
        idp.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=idp.issue_refresh_token()
    )
    session = authpulse.Session(
        source,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        seed=1,
        name="bench-stale",
    )
    return clock, idp, session


def _expect(session: authpulse.Session, state: authpulse.Freshness) -> None:
    actual = session.freshness()
    if actual is not state:
        raise RuntimeError(f"expected a {state.value} token, the session's is {actual.value}")


# --------------------------------------------------------------------------- sync


def _sync(rounds: int, warmup: int, latency: float) -> ModeResult:
    res = ModeResult()
    clock, idp, session = _rig(latency)
    with (
        session,
        authpulse.Client(session, base_url=API_URL, transport=httpx.MockTransport(_ok)) as c,
    ):
        session.token()  # the first token (not a background refresh)
        hits0 = idp.hits
        for rnd in range(warmup + rounds):
            record = rnd >= warmup
            gc.collect()
            # STALE batch
            clock.advance(STALE_ADVANCE)
            _expect(session, authpulse.Freshness.STALE)
            gen = session.generation
            stale: list[int] = []
            while session.generation == gen and len(stale) < MAX_BATCH:
                t0 = now_ns()
                r = c.get(PATH)
                stale.append(now_ns() - t0)
                res.failures += r.status_code != 200
            if session.generation == gen:
                raise RuntimeError("the background refresh did not finish")
            # FRESH batch, same size
            _expect(session, authpulse.Freshness.FRESH)
            fresh: list[int] = []
            for _ in range(len(stale)):
                t0 = now_ns()
                r = c.get(PATH)
                fresh.append(now_ns() - t0)
                res.failures += r.status_code != 200
            if record:
                res.stale_ns += stale
                res.fresh_ns += fresh
                res.stale_batch_sizes.append(len(stale))
                res.slowest_at.append(stale.index(max(stale)))
        res.token_calls = idp.hits - hits0
        res.refreshes = session.stats().refreshes - 1
    res.requests = len(res.stale_ns) + len(res.fresh_ns)
    return res


# -------------------------------------------------------------------------- async


async def _async(rounds: int, warmup: int, latency: float) -> ModeResult:
    res = ModeResult()
    clock, idp, session = _rig(latency)
    async with (
        session,
        authpulse.AsyncClient(session, base_url=API_URL, transport=httpx.MockTransport(_aok)) as c,
    ):
        await session.atoken()
        hits0 = idp.hits
        for rnd in range(warmup + rounds):
            record = rnd >= warmup
            gc.collect()
            clock.advance(STALE_ADVANCE)
            _expect(session, authpulse.Freshness.STALE)
            gen = session.generation
            stale: list[int] = []
            while session.generation == gen and len(stale) < MAX_BATCH:
                t0 = now_ns()
                r = await c.get(PATH)
                stale.append(now_ns() - t0)
                res.failures += r.status_code != 200
            if session.generation == gen:
                raise RuntimeError("the background refresh did not finish")
            _expect(session, authpulse.Freshness.FRESH)
            fresh: list[int] = []
            for _ in range(len(stale)):
                t0 = now_ns()
                r = await c.get(PATH)
                fresh.append(now_ns() - t0)
                res.failures += r.status_code != 200
            if record:
                res.stale_ns += stale
                res.fresh_ns += fresh
                res.stale_batch_sizes.append(len(stale))
                res.slowest_at.append(stale.index(max(stale)))
        res.token_calls = idp.hits - hits0
        res.refreshes = session.stats().refreshes - 1
    res.requests = len(res.stale_ns) + len(res.fresh_ns)
    return res


# ---------------------------------------------------------------------------- run


def measure(
    *, rounds: int = 30, warmup: int = 2, latency: float = TOKEN_LATENCY
) -> dict[str, ModeResult]:
    with frozen_gc():
        return {
            "sync": _sync(rounds, warmup, latency),
            "async": asyncio.run(_async(rounds, warmup, latency)),
        }


def section(results: dict[str, ModeResult], *, rounds: int, warmup: int, latency: float) -> Section:
    rows: list[list[str]] = []
    data: dict[str, Any] = {
        "rounds": rounds,
        "warmup_rounds": warmup,
        "token_latency_s": latency,
        "target_p99_delta_ns": TARGET_NS,
        "modes": {},
    }
    notes: list[str] = []
    for mode, r in results.items():
        first = sum(1 for i in r.slowest_at if i == 0)
        notes.append(
            f"{mode}: the slowest request of a STALE batch was the one that started the "
            f"background refresh in {first} of {len(r.slowest_at)} rounds."
        )
        f50, f99 = percentile(r.fresh_ns, 50), percentile(r.fresh_ns, 99)
        s50, s99 = percentile(r.stale_ns, 50), percentile(r.stale_ns, 99)
        delta = s99 - f99
        rows.append(
            [
                mode,
                fmt_us(f50),
                fmt_us(f99),
                fmt_us(max(r.fresh_ns)),
                fmt_us(s50),
                fmt_us(s99),
                fmt_us(max(r.stale_ns)),
                f"{delta / 1e3:+.1f} µs",
                f"{len(r.stale_ns)} / {len(r.fresh_ns)}",
                f"{r.token_calls} / {warmup + rounds}",
                str(r.failures),
                f"Δp99 within ±1 ms: {target_mark(abs(delta) <= TARGET_NS)}",
            ]
        )
        data["modes"][mode] = {
            "fresh_p50_ns": f50,
            "fresh_p99_ns": f99,
            "fresh_max_ns": max(r.fresh_ns),
            "stale_p50_ns": s50,
            "stale_p99_ns": s99,
            "stale_max_ns": max(r.stale_ns),
            "p99_delta_ns": delta,
            "samples_fresh": len(r.fresh_ns),
            "samples_stale": len(r.stale_ns),
            "stale_batch_sizes": r.stale_batch_sizes,
            "slowest_stale_request_position": r.slowest_at,
            "token_calls": r.token_calls,
            "background_refreshes": r.refreshes,
            "failures": r.failures,
        }
    return Section(
        key="stale",
        title="4. Latency while STALE (background refresh in flight) vs FRESH — authpulse",
        intro=(
            f"{rounds} rounds (+{warmup} warm-up) per mode. STALE samples: every request made "
            "from the moment the FakeClock enters the refresh window until the background "
            f"refresh ({latency * 1e3:.0f} ms at the token endpoint) has installed the new "
            "token; FRESH samples: as many requests right after. Target: p99 within 1 ms."
        ),
        headers=[
            "mode",
            "FRESH p50",
            "FRESH p99",
            "FRESH max",
            "STALE p50",
            "STALE p99",
            "STALE max",
            "Δ p99",
            "samples stale / fresh",
            "token calls / rounds",
            "non-200",
            "target",
        ],
        rows=rows,
        notes=[
            "Session: `RefreshTokenGrant` (single-use, rotated refresh tokens), FakeClock shared "
            "with the FakeIdP, default `RefreshPolicy`; the clock is advanced "
            f"{STALE_ADVANCE:.0f} s (to 200 s before expiry) before each STALE batch.",
            "Token calls include the warm-up rounds: one background refresh per round, none "
            "while FRESH.",
            "Peers are not in this table: authlib and httpx-auth have no STALE state (they "
            "refresh only once the token counts as expired, in the caller's request).",
            *notes,
        ],
        data=data,
    )


def run(*, rounds: int = 30, warmup: int = 2, latency: float = TOKEN_LATENCY) -> Section:
    results = measure(rounds=rounds, warmup=warmup, latency=latency)
    return section(results, rounds=rounds, warmup=warmup, latency=latency)

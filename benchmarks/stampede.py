"""Benchmark 2: the refresh stampede.

The token has EXPIRED, the token endpoint takes 50 ms to answer and its
refresh tokens are single-use with rotation (``FakeIdP(rotate=True,
single_use=True)``: presenting a used refresh token revokes the whole grant,
as oidc-provider does). Then many callers want the API at once:

- sync: ``threads`` threads × ``per_thread`` requests on one shared client;
- async: ``coroutines`` coroutines, one request each, on one shared client.

Counted: token endpoint calls (``idp.hits``), failed requests (an exception
or any non-200 answer from the FakeAPI) and wall time from the moment all
callers are released.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

import authpulse
from authpulse.testing import FakeAPI, FakeIdP

from ._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_LATENCY,
    Outcome,
    Section,
    aattempt,
    arouter,
    attempt,
    authlib_expired_token,
    authlib_http,
    authlib_httpx,
    authlib_note,
    expired_token_set,
    fmt_ms,
    fmt_range,
    frozen_gc,
    httpx_auth_module,
    median,
    now_ns,
    router,
    target_mark,
    valid_access_token,
)

PATH = "/resource"
#: authpulse's median wall time may be at most this times (the raw row's median + the latency)
WALL_TARGET_RATIO = 1.05

SyncCall = Callable[[], httpx.Response]
AsyncCall = Callable[[], Awaitable[httpx.Response]]
SyncRig = Callable[[float], Any]  # float -> context manager of (FakeIdP, SyncCall)
AsyncRig = Callable[[float], Any]  # float -> async context manager of (FakeIdP, AsyncCall)

RT = "refresh_token"
CC = "client_credentials"


@dataclass
class Run:
    token_calls: int
    reuse_detected: int
    wall_ns: int
    outcome: Outcome


@dataclass
class Row:
    mode: str  # "sync" or "async"
    library: str
    grant: str
    runs: list[Run] = field(default_factory=list)

    @property
    def is_authpulse(self) -> bool:
        return self.library == "authpulse"


def _idp(latency: float) -> tuple[FakeIdP, FakeAPI]:
    idp = FakeIdP(access_ttl=3600, latency=latency, rotate=True, single_use=True)
    return idp, FakeAPI(idp)


def _authpulse_source(idp: FakeIdP, grant: str) -> tuple[authpulse.TokenSource, authpulse.TokenSet]:
    if grant == RT:
        rt = idp.issue_refresh_token()
        source: authpulse.TokenSource = authpulse.RefreshTokenGrant(
            idp.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=rt
        )
        return source, expired_token_set(rt)
    return authpulse.ClientCredentials(idp.token_url, CLIENT_ID, CLIENT_SECRET), expired_token_set(
        None
    )


def _authlib_kwargs(idp: FakeIdP, grant: str) -> dict[str, Any]:
    rt = idp.issue_refresh_token() if grant == RT else None
    kwargs: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token": authlib_expired_token(rt),
        "token_endpoint": idp.token_url,
    }
    if grant == CC:
        kwargs["grant_type"] = CC  # authlib's metadata: re-fetch with client credentials
    return kwargs


def _prime_httpx_auth_expired(idp: FakeIdP, fetch: Callable[[], object]) -> None:
    """Leave an EXPIRED token in httpx-auth's (global) cache.

    httpx-auth treats a token as expired 30 s early (``early_expiry``), so a
    token issued with a 1-second lifetime is cached already expired. The
    priming request runs before timing and with no IdP latency.
    """
    httpx_auth_module().OAuth2.token_cache.clear()
    ttl, latency = idp.access_ttl, idp.latency
    idp.access_ttl, idp.latency = 1.0, 0.0
    try:
        fetch()
    finally:
        idp.access_ttl, idp.latency = ttl, latency


# ---------------------------------------------------------------------- sync rigs


@contextmanager
def _authpulse_sync(grant: str, latency: float) -> Iterator[tuple[FakeIdP, SyncCall]]:
    idp, api = _idp(latency)
    source, token = _authpulse_source(idp, grant)
    with (
        authpulse.Session(
            source, token=token, transport=idp.transport, async_transport=idp.async_transport
        ) as session,
        authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client,
    ):
        yield idp, lambda: client.get(PATH)


@contextmanager
def _authlib_sync(grant: str, latency: float) -> Iterator[tuple[FakeIdP, SyncCall]]:
    idp, api = _idp(latency)
    client = authlib_httpx().OAuth2Client(
        **_authlib_kwargs(idp, grant),
        base_url=api.base_url,
        transport=router(idp, api, authlib_http()),
    )
    try:
        yield idp, lambda: client.get(PATH)
    finally:
        client.close()


@contextmanager
def _httpx_auth_sync(latency: float) -> Iterator[tuple[FakeIdP, SyncCall]]:
    idp, api = _idp(latency)
    hx = httpx_auth_module()
    with httpx.Client(transport=idp.transport) as token_client:
        auth = hx.OAuth2ClientCredentials(
            idp.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=token_client
        )
        with httpx.Client(base_url=api.base_url, auth=auth, transport=api.transport) as client:
            _prime_httpx_auth_expired(idp, lambda: client.get(PATH))
            yield idp, lambda: client.get(PATH)
        hx.OAuth2.token_cache.clear()


@contextmanager
def _raw_sync(latency: float) -> Iterator[tuple[FakeIdP, SyncCall]]:
    idp, api = _idp(latency)
    headers = {"Authorization": f"Bearer {valid_access_token(idp)}"}
    with httpx.Client(base_url=api.base_url, headers=headers, transport=api.transport) as client:
        yield idp, lambda: client.get(PATH)


SYNC_RIGS: list[tuple[str, str, SyncRig]] = [
    ("authpulse", RT, lambda lat: _authpulse_sync(RT, lat)),
    ("authpulse", CC, lambda lat: _authpulse_sync(CC, lat)),
    ("authlib", RT, lambda lat: _authlib_sync(RT, lat)),
    ("authlib", CC, lambda lat: _authlib_sync(CC, lat)),
    ("httpx-auth", CC, _httpx_auth_sync),
    ("raw httpx (reference)", "none: valid token", _raw_sync),
]


def _threaded(call: SyncCall, threads: int, per_thread: int) -> tuple[Outcome, int]:
    barrier = threading.Barrier(threads + 1)
    outcomes = [Outcome() for _ in range(threads)]

    def worker(outcome: Outcome) -> None:
        barrier.wait(timeout=60)
        for _ in range(per_thread):
            attempt(call, outcome)

    workers = [
        threading.Thread(target=worker, args=(o,), name=f"bench-stampede-{i}", daemon=True)
        for i, o in enumerate(outcomes)
    ]
    for t in workers:
        t.start()
    barrier.wait(timeout=60)
    t0 = now_ns()
    for t in workers:
        t.join()
    wall = now_ns() - t0
    total = Outcome()
    for o in outcomes:
        total.merge(o)
    return total, wall


def _sync_rows(
    *, threads: int, per_thread: int, repeats: int, latency: float, warmup: bool = True
) -> list[Row]:
    """The runs of every sync rig, interleaved: run ``i`` of each row, then run
    ``i + 1``, so machine drift hits the raw floor and the libraries alike."""
    rows = [Row("sync", library, grant) for library, grant, _ in SYNC_RIGS]
    if warmup:
        for _, _, rig in SYNC_RIGS:
            with rig(latency) as (_, call):  # on a throwaway rig, a small stampede
                _threaded(call, 2, 1)
    for _ in range(repeats):
        for row, (_, _, rig) in zip(rows, SYNC_RIGS, strict=True):
            with rig(latency) as (idp, call):
                gc.collect()
                hits, reuse = idp.hits, idp.reuse_detected
                outcome, wall = _threaded(call, threads, per_thread)
                row.runs.append(Run(idp.hits - hits, idp.reuse_detected - reuse, wall, outcome))
    return rows


# --------------------------------------------------------------------- async rigs


@asynccontextmanager
async def _authpulse_async(grant: str, latency: float) -> AsyncIterator[tuple[FakeIdP, AsyncCall]]:
    idp, api = _idp(latency)
    source, token = _authpulse_source(idp, grant)
    async with (
        authpulse.Session(
            source, token=token, transport=idp.transport, async_transport=idp.async_transport
        ) as session,
        authpulse.AsyncClient(
            session, base_url=api.base_url, transport=api.async_transport
        ) as client,
    ):
        yield idp, lambda: client.get(PATH)


@asynccontextmanager
async def _authlib_async(grant: str, latency: float) -> AsyncIterator[tuple[FakeIdP, AsyncCall]]:
    idp, api = _idp(latency)
    client = authlib_httpx().AsyncOAuth2Client(
        **_authlib_kwargs(idp, grant),
        base_url=api.base_url,
        transport=arouter(idp, api, authlib_http()),
    )
    try:
        yield idp, lambda: client.get(PATH)
    finally:
        await client.aclose()


@asynccontextmanager
async def _httpx_auth_async(latency: float) -> AsyncIterator[tuple[FakeIdP, AsyncCall]]:
    idp, api = _idp(latency)
    hx = httpx_auth_module()
    # httpx-auth has no async token fetch: its auth flow uses this sync client
    # (time.sleep latency) even when driven by an AsyncClient.
    with httpx.Client(transport=idp.transport) as token_client:
        auth = hx.OAuth2ClientCredentials(
            idp.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=token_client
        )
        async with httpx.AsyncClient(
            base_url=api.base_url, auth=auth, transport=api.async_transport
        ) as client:
            with httpx.Client(base_url=api.base_url, auth=auth, transport=api.transport) as primer:
                _prime_httpx_auth_expired(idp, lambda: primer.get(PATH))
            yield idp, lambda: client.get(PATH)
        hx.OAuth2.token_cache.clear()


@asynccontextmanager
async def _raw_async(latency: float) -> AsyncIterator[tuple[FakeIdP, AsyncCall]]:
    idp, api = _idp(latency)
    headers = {"Authorization": f"Bearer {valid_access_token(idp)}"}
    async with httpx.AsyncClient(
        base_url=api.base_url, headers=headers, transport=api.async_transport
    ) as client:
        yield idp, lambda: client.get(PATH)


ASYNC_RIGS: list[tuple[str, str, AsyncRig]] = [
    ("authpulse", RT, lambda lat: _authpulse_async(RT, lat)),
    ("authpulse", CC, lambda lat: _authpulse_async(CC, lat)),
    ("authlib", RT, lambda lat: _authlib_async(RT, lat)),
    ("authlib", CC, lambda lat: _authlib_async(CC, lat)),
    ("httpx-auth", CC, _httpx_auth_async),
    ("raw httpx (reference)", "none: valid token", _raw_async),
]


async def _gathered(call: AsyncCall, n: int) -> tuple[Outcome, int]:
    outcome = Outcome()
    t0 = now_ns()
    await asyncio.gather(*(aattempt(call, outcome) for _ in range(n)))
    return outcome, now_ns() - t0


async def _async_rows(
    *, coroutines: int, repeats: int, latency: float, warmup: bool = True
) -> list[Row]:
    """As :func:`_sync_rows`: the runs of every rig interleaved."""
    rows = [Row("async", library, grant) for library, grant, _ in ASYNC_RIGS]
    if warmup:
        for _, _, rig in ASYNC_RIGS:
            async with rig(latency) as (_, call):
                await _gathered(call, 2)
    for _ in range(repeats):
        for row, (_, _, rig) in zip(rows, ASYNC_RIGS, strict=True):
            async with rig(latency) as (idp, call):
                gc.collect()
                hits, reuse = idp.hits, idp.reuse_detected
                outcome, wall = await _gathered(call, coroutines)
                row.runs.append(Run(idp.hits - hits, idp.reuse_detected - reuse, wall, outcome))
    return rows


# --------------------------------------------------------------------------- run


def measure(
    *,
    threads: int = 32,
    per_thread: int = 10,
    coroutines: int = 200,
    repeats: int = 5,
    latency: float = TOKEN_LATENCY,
    warmup: bool = True,
) -> list[Row]:
    """``warmup=False`` skips the untimed warm-up runs (for the smoke test)."""
    with frozen_gc():
        return _measure(threads, per_thread, coroutines, repeats, latency, warmup)


def _measure(
    threads: int, per_thread: int, coroutines: int, repeats: int, latency: float, warmup: bool
) -> list[Row]:
    rows = _sync_rows(
        threads=threads, per_thread=per_thread, repeats=repeats, latency=latency, warmup=warmup
    )
    rows += asyncio.run(
        _async_rows(coroutines=coroutines, repeats=repeats, latency=latency, warmup=warmup)
    )
    return rows


def wall_bounds(rows: list[Row], latency: float) -> dict[str, float]:
    """Per mode, the most authpulse's median wall time may be (ns):
    :data:`WALL_TARGET_RATIO` × (the raw row's median of the same run + the latency)."""
    return {
        row.mode: WALL_TARGET_RATIO * (median([r.wall_ns for r in row.runs]) + latency * 1e9)
        for row in rows
        if row.library.startswith("raw") and row.runs
    }


def _targets(row: Row, bound_ns: float | None) -> str:
    if not row.is_authpulse:
        return "(peer)" if not row.library.startswith("raw") else "(floor)"
    calls_ok = all(r.token_calls == 1 for r in row.runs)
    fail_ok = all(r.outcome.failures == 0 for r in row.runs)
    parts = [f"1 call {target_mark(calls_ok)}", f"0 failed {target_mark(fail_ok)}"]
    if bound_ns is not None and row.runs:
        wall_ok = median([r.wall_ns for r in row.runs]) <= bound_ns
        parts.append(
            f"median ≤ {WALL_TARGET_RATIO:g} × (floor + latency) = {fmt_ms(bound_ns, 1)} "
            f"{target_mark(wall_ok)}"
        )
    return ", ".join(parts)


def section(
    rows: list[Row], *, threads: int, per_thread: int, coroutines: int, latency: float
) -> Section:
    table: list[list[str]] = []
    notes: list[str] = []
    data: dict[str, Any] = {
        "threads": threads,
        "requests_per_thread": per_thread,
        "coroutines": coroutines,
        "token_latency_s": latency,
        "wall_target_ratio": WALL_TARGET_RATIO,
        "rows": [],
    }
    bounds = wall_bounds(rows, latency)
    data["wall_bound_ns"] = bounds
    for row in rows:
        walls = [r.wall_ns for r in row.runs]
        requests = row.runs[0].outcome.requests if row.runs else 0
        shape = f"{threads}×{per_thread} threads" if row.mode == "sync" else f"{coroutines} coros"
        table.append(
            [
                f"{row.mode} ({shape})",
                row.library,
                row.grant,
                fmt_range([r.token_calls for r in row.runs]),
                f"{fmt_range([r.outcome.failures for r in row.runs])} / {requests}",
                fmt_range([r.reuse_detected for r in row.runs]),
                fmt_ms(median(walls), 1),
                f"{fmt_ms(min(walls), 1)} – {fmt_ms(max(walls), 1)}",
                _targets(row, bounds.get(row.mode)),
            ]
        )
        kinds: dict[str, int] = {}
        for r in row.runs:
            for kind, n in r.outcome.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + n
        if kinds:
            desc = ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            notes.append(
                f"{row.library} {row.mode} {row.grant}: failures over {len(row.runs)} runs: {desc}."
            )
        data["rows"].append(
            {
                "mode": row.mode,
                "library": row.library,
                "grant": row.grant,
                "runs": [
                    {
                        "token_calls": r.token_calls,
                        "failures": r.outcome.failures,
                        "requests": r.outcome.requests,
                        "reuse_detected": r.reuse_detected,
                        "wall_ns": r.wall_ns,
                        "failure_kinds": dict(r.outcome.kinds),
                    }
                    for r in row.runs
                ],
            }
        )
    runs = len(rows[0].runs) if rows else 0
    notes[:0] = [
        "Token calls, failed requests and reuse detections show `n` when every run agreed, "
        "else `min–max` over the runs.",
        "authpulse: `Session(RefreshTokenGrant | ClientCredentials, token=<expired TokenSet>)` "
        "with the IdP's transports, one shared `authpulse.Client` / `AsyncClient`.",
        "authlib: one shared `OAuth2Client` / `AsyncOAuth2Client` with an expired token dict "
        "(with the refresh token, or `grant_type='client_credentials'` in its metadata) and "
        "`token_endpoint` on its own transport, routed by host to the FakeIdP and the FakeAPI "
        "(authlib sends token requests through the client itself). " + authlib_note(),
        "httpx-auth: `OAuth2ClientCredentials(…, client=httpx.Client(transport=idp.transport))` "
        "(it has no refresh-token grant for a client without a user flow); its global token "
        "cache is primed with a token that is already inside its 30 s `early_expiry`. Under "
        "`AsyncClient` it still fetches with that sync client, blocking the event loop for "
        "the 50 ms (see benchmark 3).",
        "raw httpx (reference): a valid token in a static header, no refresh at all: the "
        "floor for the same number of requests on this machine.",
    ]
    return Section(
        key="stampede",
        title="2. Stampede on an EXPIRED token (50 ms token endpoint, single-use refresh tokens)",
        intro=(
            f"Token endpoint latency {latency * 1e3:.0f} ms; FakeIdP(rotate=True, "
            f"single_use=True). Sync: {threads} threads × {per_thread} requests on one client; "
            f"async: {coroutines} coroutines × 1 request. {runs} runs per row (fresh IdP, API "
            "and client each run, after one warm-up run; the rows' runs interleaved, round by "
            "round); wall time from release of all callers to the last answer. A failed "
            "request is an exception or any non-200. Wall target for authpulse, per mode: "
            f"median ≤ {WALL_TARGET_RATIO:g} × (the raw httpx median of the same run + "
            f"{latency * 1e3:.0f} ms latency)."
        ),
        headers=[
            "mode",
            "library",
            "grant",
            "token calls",
            "failed / requests",
            "reuse detected",
            "wall (median)",
            "wall (min – max)",
            "authpulse targets",
        ],
        rows=table,
        notes=notes,
        data=data,
    )


def run(
    *,
    threads: int = 32,
    per_thread: int = 10,
    coroutines: int = 200,
    repeats: int = 5,
    latency: float = TOKEN_LATENCY,
) -> Section:
    rows = measure(
        threads=threads,
        per_thread=per_thread,
        coroutines=coroutines,
        repeats=repeats,
        latency=latency,
    )
    return section(
        rows, threads=threads, per_thread=per_thread, coroutines=coroutines, latency=latency
    )

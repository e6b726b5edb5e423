"""Benchmark 1: per-request overhead of an auth library against raw httpx.

Every client talks to an ``httpx.MockTransport`` whose handler answers 200 at
once, so what is timed is the client-side cost of a request: httpx itself
plus whatever the auth layer adds. The token is FRESH throughout (fetched
once before timing), so no refresh happens.

Design: paired blocks. For each library, a block of ``per_block`` requests
on raw httpx (A) and a block on the library's client (B) run back to back,
the order alternating from one block pair to the next, and the pairs of
all libraries interleaved round by round. The figure of merit is the
per-pair ratio B/A: drifts of the machine (frequency, noisy neighbours)
hit A and B alike and cancel in the ratio. Reported: median ratio and the
interquartile range of the ratios.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

import authpulse

from ._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    Section,
    authlib_http,
    authlib_httpx,
    fmt_ratio,
    fmt_us,
    frozen_gc,
    http_label,
    httpx_auth_module,
    median,
    now_ns,
    percentile,
    target_mark,
)

API_URL = "https://api.test"
TOKEN_URL = "https://idp.test/token"
PATH = "/resource"
ACCESS_TOKEN = "at_bench"
TOKEN_BODY = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}
TARGET = 1.05
RAW = "raw httpx"
AUTH_ONLY = "authpulse auth only"
#: authpulse's client on the httpx2 fork, paired with raw httpx2 (when httpx2 is installed)
ON_HTTPX2 = "authpulse on httpx2"
#: the rows the target is on
TARGETED = ("authpulse", ON_HTTPX2)


class TrivialServer:
    """The handler behind every client: 200 to any GET, a 1-hour token to a POST.

    ``requests`` counts what it answered; while ``authorization`` is a list,
    the ``Authorization`` header of each request is appended to it (used
    only to check the wiring, never while timing).
    """

    __slots__ = ("_response", "authorization", "http", "requests")

    def __init__(self, http: Any = httpx) -> None:
        self.http = http  # httpx, or the httpx2 fork for authlib when it runs on it
        self._response = http.Response
        self.requests = 0
        self.authorization: list[str | None] | None = None

    def __call__(self, request: Any) -> Any:
        self.requests += 1
        if self.authorization is not None:
            self.authorization.append(request.headers.get("authorization"))
        if request.method == "POST":
            return self._response(200, json=TOKEN_BODY)
        return self._response(200)


@dataclass
class Contender:
    name: str
    client: Any  # httpx.Client or httpx.AsyncClient (authlib's are subclasses)
    server: TrivialServer
    expected_authorization: str
    baseline: str = RAW  # the raw client its blocks are paired with


@dataclass
class PairStats:
    """The timed blocks of one library against raw httpx."""

    a_ns: list[int] = field(default_factory=list)  # raw httpx blocks
    b_ns: list[int] = field(default_factory=list)  # library blocks
    non_200: int = 0

    @property
    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.a_ns, self.b_ns, strict=True)]


@dataclass
class OverheadResult:
    """Per mode ("sync"/"async"), per library: the paired blocks."""

    per_block: int
    blocks: int
    pairs: dict[str, dict[str, PairStats]]
    requests_served: dict[str, dict[str, int]]
    #: library -> the raw client it was paired with ("raw httpx", or "raw httpx2")
    baselines: dict[str, str]
    #: the HTTP library authlib ran on, e.g. "httpx 0.28.1"
    authlib_on: str


def _transport(server: TrivialServer) -> Any:
    return server.http.MockTransport(server)


def _authlib_token() -> dict[str, Any]:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_at": int(time.time()) + 3600,
    }


def _session(server: TrivialServer) -> authpulse.Session:
    source = authpulse.ClientCredentials(TOKEN_URL, CLIENT_ID, CLIENT_SECRET)
    return authpulse.Session(
        source,
        transport=_transport(server),
        async_transport=_transport(server),
        name="bench-overhead",
    )


def _raw_name(http: Any) -> str:
    return f"raw {http.__name__}"


def _httpx2() -> Any | None:
    """The httpx2 fork, if installed (authpulse.httpx2's rows need it)."""
    if importlib.util.find_spec("httpx2") is None:
        return None
    return importlib.import_module("httpx2")


def _raw_client(http: Any, *, sync: bool) -> tuple[Any, TrivialServer]:
    srv = TrivialServer(http)
    cls = http.Client if sync else http.AsyncClient
    client = cls(base_url=API_URL, headers={"Authorization": "Bearer x"}, transport=_transport(srv))
    return client, srv


def _check(c: Contender) -> None:
    if c.server.authorization is None or c.server.authorization[-1:] != [c.expected_authorization]:
        raise RuntimeError(
            f"{c.name}: expected Authorization {c.expected_authorization!r}, "
            f"saw {c.server.authorization!r}"
        )
    c.server.authorization = None


# -------------------------------------------------------------------------- sync


def _sync_contenders(stack: ExitStack) -> tuple[list[Contender], list[Contender]]:
    raw_srv = TrivialServer()
    raw = Contender(
        "raw httpx",
        stack.enter_context(
            httpx.Client(
                base_url=API_URL,
                headers={"Authorization": "Bearer x"},
                transport=_transport(raw_srv),
            )
        ),
        raw_srv,
        "Bearer x",
    )

    ap_srv = TrivialServer()
    session = _session(ap_srv)
    stack.callback(session.close)
    session.token()  # pre-fetch a 1-hour token: FRESH from here on
    ap = Contender(
        "authpulse",
        stack.enter_context(
            authpulse.Client(session, base_url=API_URL, transport=_transport(ap_srv))
        ),
        ap_srv,
        f"Bearer {ACCESS_TOKEN}",
    )

    al_http = authlib_http()
    al_srv = TrivialServer(al_http)
    al_client = authlib_httpx().OAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token=_authlib_token(),
        token_endpoint=TOKEN_URL,
        base_url=API_URL,
        transport=_transport(al_srv),
    )
    stack.callback(al_client.close)
    al = Contender("authlib", al_client, al_srv, f"Bearer {ACCESS_TOKEN}", _raw_name(al_http))
    raws = [raw]
    h2 = _httpx2()
    for other in {al_http, h2} - {httpx, None}:  # raw httpx2, for authlib and authpulse on it
        r2_client, r2_srv = _raw_client(other, sync=True)
        stack.callback(r2_client.close)
        raws.append(Contender(_raw_name(other), r2_client, r2_srv, "Bearer x"))
    on2 = []
    if h2 is not None:
        ap2_srv = TrivialServer(h2)
        session2 = _session(ap2_srv)
        stack.callback(session2.close)
        session2.token()
        ap2_client = importlib.import_module("authpulse.httpx2").Client(
            session2, base_url=API_URL, transport=_transport(ap2_srv)
        )
        stack.callback(ap2_client.close)
        on2.append(
            Contender(ON_HTTPX2, ap2_client, ap2_srv, f"Bearer {ACCESS_TOKEN}", _raw_name(h2))
        )

    hx = httpx_auth_module()
    hx.OAuth2.token_cache.clear()
    hx_srv = TrivialServer()
    token_client = stack.enter_context(httpx.Client(transport=_transport(hx_srv)))
    auth = hx.OAuth2ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=token_client
    )
    hxc = Contender(
        "httpx-auth",
        stack.enter_context(
            httpx.Client(base_url=API_URL, auth=auth, transport=_transport(hx_srv))
        ),
        hx_srv,
        f"Bearer {ACCESS_TOKEN}",
    )
    # the auth layer alone: a plain httpx.Client with the session's httpx.Auth
    ao_srv = TrivialServer()
    ao = Contender(
        AUTH_ONLY,
        stack.enter_context(
            httpx.Client(base_url=API_URL, auth=session.auth(), transport=_transport(ao_srv))
        ),
        ao_srv,
        f"Bearer {ACCESS_TOKEN}",
    )
    contenders = [ap, *on2, ao, al, hxc]
    for c in [*raws, *contenders]:
        c.server.authorization = []
        r = c.client.get(PATH)  # httpx-auth fetches its token on this first request
        if r.status_code != 200:
            raise RuntimeError(f"{c.name}: HTTP {r.status_code} before timing")
        _check(c)
    return raws, contenders


def _block_sync(client: Any, n: int) -> tuple[int, int]:
    get = client.get
    bad = 0
    t0 = now_ns()
    for _ in range(n):
        if get(PATH).status_code != 200:
            bad += 1
    return now_ns() - t0, bad


def _pairs_sync(
    raws: Sequence[Contender],
    contenders: Sequence[Contender],
    blocks: int,
    per_block: int,
    warmup: int,
) -> dict[str, PairStats]:
    by_name = {r.name: r for r in raws}
    for c in [*raws, *contenders]:
        for _ in range(warmup):
            _block_sync(c.client, per_block)
    stats = {c.name: PairStats() for c in contenders}
    k = len(contenders)
    for r in range(blocks):
        for i in range(k):
            c = contenders[(r + i) % k]
            raw = by_name[c.baseline].client
            gc.collect()
            if (r + i) % 2 == 0:
                a, bad_a = _block_sync(raw, per_block)
                b, bad_b = _block_sync(c.client, per_block)
            else:
                b, bad_b = _block_sync(c.client, per_block)
                a, bad_a = _block_sync(raw, per_block)
            s = stats[c.name]
            s.a_ns.append(a)
            s.b_ns.append(b)
            s.non_200 += bad_a + bad_b
    return stats


# ------------------------------------------------------------------------- async


async def _async_contenders(
    stack: AsyncExitStack,
) -> tuple[list[Contender], list[Contender]]:
    raw_srv = TrivialServer()
    raw = Contender(
        "raw httpx",
        await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=API_URL,
                headers={"Authorization": "Bearer x"},
                transport=_transport(raw_srv),
            )
        ),
        raw_srv,
        "Bearer x",
    )

    ap_srv = TrivialServer()
    session = _session(ap_srv)
    stack.push_async_callback(session.aclose)
    await session.atoken()  # pre-fetch a 1-hour token: FRESH from here on
    ap = Contender(
        "authpulse",
        await stack.enter_async_context(
            authpulse.AsyncClient(session, base_url=API_URL, transport=_transport(ap_srv))
        ),
        ap_srv,
        f"Bearer {ACCESS_TOKEN}",
    )

    al_http = authlib_http()
    al_srv = TrivialServer(al_http)
    al_client = authlib_httpx().AsyncOAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token=_authlib_token(),
        token_endpoint=TOKEN_URL,
        base_url=API_URL,
        transport=_transport(al_srv),
    )
    stack.push_async_callback(al_client.aclose)
    al = Contender("authlib", al_client, al_srv, f"Bearer {ACCESS_TOKEN}", _raw_name(al_http))
    raws = [raw]
    h2 = _httpx2()
    for other in {al_http, h2} - {httpx, None}:  # raw httpx2, for authlib and authpulse on it
        r2_client, r2_srv = _raw_client(other, sync=False)
        stack.push_async_callback(r2_client.aclose)
        raws.append(Contender(_raw_name(other), r2_client, r2_srv, "Bearer x"))
    on2 = []
    if h2 is not None:
        ap2_srv = TrivialServer(h2)
        session2 = _session(ap2_srv)
        stack.push_async_callback(session2.aclose)
        await session2.atoken()
        ap2_client = importlib.import_module("authpulse.httpx2").AsyncClient(
            session2, base_url=API_URL, transport=_transport(ap2_srv)
        )
        stack.push_async_callback(ap2_client.aclose)
        on2.append(
            Contender(ON_HTTPX2, ap2_client, ap2_srv, f"Bearer {ACCESS_TOKEN}", _raw_name(h2))
        )

    hx = httpx_auth_module()
    hx.OAuth2.token_cache.clear()
    hx_srv = TrivialServer()
    # httpx-auth fetches tokens with a *sync* httpx.Client, even under an AsyncClient.
    token_client = stack.enter_context(httpx.Client(transport=_transport(hx_srv)))
    auth = hx.OAuth2ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=token_client
    )
    hxc = Contender(
        "httpx-auth",
        await stack.enter_async_context(
            httpx.AsyncClient(base_url=API_URL, auth=auth, transport=_transport(hx_srv))
        ),
        hx_srv,
        f"Bearer {ACCESS_TOKEN}",
    )
    ao_srv = TrivialServer()
    ao = Contender(
        AUTH_ONLY,
        await stack.enter_async_context(
            httpx.AsyncClient(base_url=API_URL, auth=session.auth(), transport=_transport(ao_srv))
        ),
        ao_srv,
        f"Bearer {ACCESS_TOKEN}",
    )
    contenders = [ap, *on2, ao, al, hxc]
    for c in [*raws, *contenders]:
        c.server.authorization = []
        r = await c.client.get(PATH)
        if r.status_code != 200:
            raise RuntimeError(f"{c.name}: HTTP {r.status_code} before timing")
        _check(c)
    return raws, contenders


async def _block_async(client: Any, n: int) -> tuple[int, int]:
    get = client.get
    bad = 0
    t0 = now_ns()
    for _ in range(n):
        if (await get(PATH)).status_code != 200:
            bad += 1
    return now_ns() - t0, bad


async def _pairs_async(
    raws: Sequence[Contender],
    contenders: Sequence[Contender],
    blocks: int,
    per_block: int,
    warmup: int,
) -> dict[str, PairStats]:
    by_name = {r.name: r for r in raws}
    for c in [*raws, *contenders]:
        for _ in range(warmup):
            await _block_async(c.client, per_block)
    stats = {c.name: PairStats() for c in contenders}
    k = len(contenders)
    for r in range(blocks):
        for i in range(k):
            c = contenders[(r + i) % k]
            raw = by_name[c.baseline].client
            gc.collect()
            if (r + i) % 2 == 0:
                a, bad_a = await _block_async(raw, per_block)
                b, bad_b = await _block_async(c.client, per_block)
            else:
                b, bad_b = await _block_async(c.client, per_block)
                a, bad_a = await _block_async(raw, per_block)
            s = stats[c.name]
            s.a_ns.append(a)
            s.b_ns.append(b)
            s.non_200 += bad_a + bad_b
    return stats


async def _run_async(
    blocks: int, per_block: int, warmup: int
) -> tuple[dict[str, PairStats], dict[str, int]]:
    async with AsyncExitStack() as stack:
        raws, contenders = await _async_contenders(stack)
        stats = await _pairs_async(raws, contenders, blocks, per_block, warmup)
        served = {c.name: c.server.requests for c in [*raws, *contenders]}
    return stats, served


# ---------------------------------------------------------------------------- run


def measure(*, blocks: int = 30, per_block: int = 300, warmup: int = 2) -> OverheadResult:
    """Time ``blocks`` pairs of ``per_block`` requests per library, sync then async."""
    with frozen_gc(), ExitStack() as stack:
        raws, contenders = _sync_contenders(stack)
        sync_stats = _pairs_sync(raws, contenders, blocks, per_block, warmup)
        sync_served = {c.name: c.server.requests for c in [*raws, *contenders]}
        baselines = {c.name: c.baseline for c in contenders}
    with frozen_gc():
        async_stats, async_served = asyncio.run(_run_async(blocks, per_block, warmup))
    return OverheadResult(
        per_block=per_block,
        blocks=blocks,
        pairs={"sync": sync_stats, "async": async_stats},
        requests_served={"sync": sync_served, "async": async_served},
        baselines=baselines,
        authlib_on=http_label(authlib_http()),
    )


def section(result: OverheadResult) -> Section:
    rows: list[list[str]] = []
    data: dict[str, Any] = {
        "blocks": result.blocks,
        "requests_per_block": result.per_block,
        "target_ratio": TARGET,
        "results": [],
    }
    n = result.per_block
    for mode, per_lib in result.pairs.items():
        for name, s in per_lib.items():
            ratios = s.ratios
            med = median(ratios)
            q1, q3 = percentile(ratios, 25), percentile(ratios, 75)
            a_req = median(s.a_ns) / n
            b_req = median(s.b_ns) / n
            delta = median([(b - a) / n for a, b in zip(s.a_ns, s.b_ns, strict=True)])
            if name in TARGETED:
                mark = target_mark(med <= TARGET)
            elif name == AUTH_ONLY:
                mark = "(diagnostic)"
            else:
                mark = "(peer)"
            baseline = result.baselines.get(name, RAW)
            label = name if baseline == RAW else f"{name} (vs {baseline})"
            rows.append(
                [
                    mode,
                    label,
                    fmt_us(a_req),
                    fmt_us(b_req),
                    f"{delta / 1e3:+.1f} µs",
                    fmt_ratio(med),
                    f"{q1:.3f}–{q3:.3f}",
                    str(s.non_200),
                    mark,
                ]
            )
            data["results"].append(
                {
                    "mode": mode,
                    "library": name,
                    "baseline": baseline,
                    "median_ratio": med,
                    "ratio_q1": q1,
                    "ratio_q3": q3,
                    "raw_ns_per_request": a_req,
                    "library_ns_per_request": b_req,
                    "delta_ns_per_request": delta,
                    "non_200": s.non_200,
                    "raw_block_ns": s.a_ns,
                    "library_block_ns": s.b_ns,
                }
            )
    data["requests_served"] = result.requests_served
    data["authlib_on"] = result.authlib_on
    if any(b != RAW for b in result.baselines.values()):
        authlib_note = (
            f"authlib ran on {result.authlib_on} (the fork it prefers when installed), so its "
            "blocks are paired with a raw client of that library, same headers and handler."
        )
    else:
        authlib_note = f"authlib ran on {result.authlib_on}."
    return Section(
        key="overhead",
        title="1. Per-request overhead vs raw httpx (FRESH token, MockTransport)",
        intro=(
            f"{result.blocks} paired blocks × {result.per_block} requests per library and mode, "
            "A/B order alternating; ratio = library block time / raw-httpx block time of the "
            "same pair. Raw httpx is `httpx.Client(headers={'Authorization': 'Bearer x'})`. "
            f"Target for authpulse (on httpx and on httpx2): median ratio ≤ {TARGET:.2f}×."
        ),
        headers=[
            "mode",
            "library",
            "raw /req",
            "library /req",
            "Δ /req",
            "median ratio",
            "IQR of ratios",
            "non-200",
            "target",
        ],
        rows=rows,
        notes=[
            "authpulse: `authpulse.Client(session, base_url=…)` / `AsyncClient`; the session "
            "uses `ClientCredentials` and the real `SystemClock`, token (1 h) pre-fetched.",
            f"{ON_HTTPX2}: `authpulse.httpx2.Client(session, base_url=…)` / `AsyncClient` "
            "(defaults: retry and breaker on) on a session of its own, paired with raw httpx2 "
            "(same header and handler); shown when httpx2 is installed.",
            "authlib: `OAuth2Client` / `AsyncOAuth2Client` with a pre-set token dict "
            "(expires in 1 h) and `token_endpoint` on the same MockTransport. " + authlib_note,
            "httpx-auth: `httpx.Client(auth=OAuth2ClientCredentials(…, client=httpx.Client("
            "transport=MockTransport)))` — its documented `client=` argument, no monkeypatching; "
            "token fetched on the first request, before timing. Async: the same auth object on "
            "`httpx.AsyncClient` (httpx-auth has no async token fetch).",
            f"{AUTH_ONLY}: `httpx.Client(auth=session.auth())` / `httpx.AsyncClient(…)` on the "
            "same session — authpulse's httpx.Auth without whatever `authpulse.Client` adds "
            "(its transport layers); a diagnostic row, the target is on `authpulse.Client`.",
            "Every client has its own MockTransport with the same trivial handler; the "
            "Authorization header each one sends was checked before timing.",
            "Δ /req = median over pairs of (library − raw) block time per request.",
        ],
        data=data,
    )


def run(*, blocks: int = 30, per_block: int = 300, warmup: int = 2) -> Section:
    return section(measure(blocks=blocks, per_block=per_block, warmup=warmup))

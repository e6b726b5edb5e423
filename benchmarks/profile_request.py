"""Profile one request through ``authpulse`` clients with a FRESH token.

Runs ``N`` sync and ``N`` async GETs through a client over a MockTransport
whose handler answers 200 at once, under cProfile, and prints, per request,
the functions with the most own time (tottime) and their call counts. A
raw client of the same library runs the same requests first, so the total
per request can be read against the floor.

    PYTHONPATH=src python benchmarks/profile_request.py [-n 20000] [--top 25]
        [--http httpx|httpx2] [--client full|auth|raw] [--mode sync|async|both] [--ours]

``full`` is ``authpulse.<http>.Client`` with its defaults (retry and
breaker on); ``auth`` is the library's own client with ``auth=session.auth()``;
``raw`` is the library's client with a fixed header. cProfile's own cost
inflates every figure; read the per-call counts and the differences
between clients, not the absolute microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import sys
from typing import Any

import authpulse

API_URL = "https://api.test"
TOKEN_BODY = {"access_token": "at_profile", "token_type": "Bearer", "expires_in": 3600}


def _handler(http: Any) -> Any:
    response = http.Response

    def handle(request: Any) -> Any:
        if request.method == "POST":
            return response(200, json=TOKEN_BODY)
        return response(200)

    return handle


def _session(http: Any) -> authpulse.Session:
    source = authpulse.ClientCredentials("https://idp.test/token", "client", "secret")
    return authpulse.Session(
        source,
        transport=http.MockTransport(_handler(http)),
        async_transport=http.MockTransport(_handler(http)),
        name="profile",
    )


def _client(http: Any, kind: str, session: authpulse.Session, *, sync: bool) -> Any:
    transport = http.MockTransport(_handler(http))
    if kind == "full":
        module = importlib.import_module(f"authpulse.{http.__name__}")
        cls = module.Client if sync else module.AsyncClient
        return cls(session, base_url=API_URL, transport=transport)
    cls = http.Client if sync else http.AsyncClient
    if kind == "auth":
        return cls(base_url=API_URL, auth=session.auth(), transport=transport)
    return cls(base_url=API_URL, headers={"Authorization": "Bearer x"}, transport=transport)


def _report(profile: cProfile.Profile, n: int, top: int, title: str, *, only_ours: bool) -> None:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n== {title}: {total / n * 1e6:.2f} µs/request under cProfile ({n} requests)")
    rows = []
    calls = mine_tt = mine_calls = 0.0
    for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        calls += nc
        ours = "/authpulse/" in file
        if ours:
            mine_tt += tt
            mine_calls += nc
        if ours or not only_ours:
            rows.append((tt, ct, nc, f"{'/'.join(file.rsplit('/', 2)[-2:])}:{line}({name})"))
    rows.sort(reverse=True)
    print(
        f"   function calls/request: {calls / n:.1f}; in authpulse: {mine_calls / n:.1f} calls, "
        f"{mine_tt / n * 1e6:.2f} µs own time"
    )
    print(f"{'tottime µs/req':>15} {'cumtime µs/req':>15} {'calls/req':>10}  function")
    for tt, ct, nc, where in rows[:top]:
        print(f"{tt / n * 1e6:15.2f} {ct / n * 1e6:15.2f} {nc / n:10.2f}  {where}")


def _profile_sync(http: Any, kind: str, n: int, top: int, ours: bool) -> None:
    session = _session(http)
    session.token()
    with _client(http, kind, session, sync=True) as client:
        for _ in range(200):  # warm up: caches, first-use imports
            client.get("/r")
        profile = cProfile.Profile()
        get = client.get
        profile.enable()
        for _ in range(n):
            get("/r")
        profile.disable()
    session.close()
    _report(profile, n, top, f"{http.__name__} {kind} sync", only_ours=ours)


def _profile_async(http: Any, kind: str, n: int, top: int, ours: bool) -> None:
    async def run() -> cProfile.Profile:
        session = _session(http)
        await session.atoken()
        async with _client(http, kind, session, sync=False) as client:
            for _ in range(200):
                await client.get("/r")
            profile = cProfile.Profile()
            get = client.get
            profile.enable()
            for _ in range(n):
                await get("/r")
            profile.disable()
        await session.aclose()
        return profile

    _report(asyncio.run(run()), n, top, f"{http.__name__} {kind} async", only_ours=ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="requests per mode")
    parser.add_argument("--top", type=int, default=25, help="functions shown")
    parser.add_argument("--http", choices=("httpx", "httpx2"), default="httpx")
    parser.add_argument("--client", choices=("full", "auth", "raw"), default="full")
    parser.add_argument("--mode", choices=("sync", "async", "both"), default="both")
    parser.add_argument("--ours", action="store_true", help="show authpulse's functions only")
    args = parser.parse_args(argv)
    http = importlib.import_module(args.http)
    if args.mode in ("sync", "both"):
        _profile_sync(http, args.client, args.n, args.top, args.ours)
    if args.mode in ("async", "both"):
        _profile_async(http, args.client, args.n, args.top, args.ours)
    return 0


if __name__ == "__main__":
    sys.exit(main())

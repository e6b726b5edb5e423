"""The resilience layers when nothing fails, and the cache's three answers.

- cache: a fresh hit, a stale hit (answered at once, revalidated in the
  background) and a miss, each as a paired block ratio against the same
  ``authpulse.Client`` without a cache making the round trip over the same
  MockTransport (target: hits <= 1.0x of the round trip);
- retry path: ``authpulse.Client`` with the retry transport and breaker on
  (the default) against the same client with both off, and against raw
  httpx with a static header — the retry path's share of the 1.05x budget.

Paired block ratios: A and B blocks alternate (order flipped every pair);
the figure is the median of per-pair ratios, with the interquartile range.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

import authpulse
from authpulse.testing import FakeClock
from benchmarks._common import Section

now_ns = time.perf_counter_ns

BODY = b'{"items": [1, 2, 3], "next": null}'


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})


def _session(clock: authpulse.Clock, lifetime: float = 3600) -> authpulse.Session:
    token = authpulse.TokenSet(
        access_token=SecretStr("bench-access-token"),
        issued_at=clock.now(),
        expires_at=clock.now() + lifetime,
    )
    return authpulse.Session(
        authpulse.ClientCredentials("https://idp.bench/token", "client", "secret"),
        token=token,
        clock=clock,
    )


def _block(call: Callable[[], object], n: int) -> int:
    t = now_ns()
    for _ in range(n):
        call()
    return now_ns() - t


class _Timed:
    """A call that times only part of itself: ``timed()`` is counted, ``after()`` is not."""

    def __init__(self, timed: Callable[[], object], after: Callable[[], object]) -> None:
        self.timed = timed
        self.after = after
        self.spent = 0

    def __call__(self) -> object:
        t = now_ns()
        r = self.timed()
        self.spent += now_ns() - t
        self.after()
        return r


def _block_timed(call: _Timed, n: int) -> int:
    call.spent = 0
    for _ in range(n):
        call()
    return call.spent


def _paired(
    a: Callable[[], object], b: Callable[[], object], *, blocks: int, per_block: int
) -> tuple[float, float, float, float, float]:
    """(median ratio b/a, q1, q3, a ns/req, b ns/req)."""
    ratios, a_ns, b_ns = [], [], []
    for i in range(blocks):

        def run(c: Callable[[], object]) -> int:
            return _block_timed(c, per_block) if isinstance(c, _Timed) else _block(c, per_block)

        if i % 2 == 0:
            ta = run(a)
            tb = run(b)
        else:
            tb = run(b)
            ta = run(a)
        ratios.append(tb / ta)
        a_ns.append(ta / per_block)
        b_ns.append(tb / per_block)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2], statistics.median(a_ns), statistics.median(b_ns)


def run(*, blocks: int = 30, per_block: int = 300) -> Section:
    rows: list[list[str]] = []
    data: dict[str, object] = {}

    raw = httpx.Client(
        transport=httpx.MockTransport(_handler),
        base_url="https://api.bench",
        headers={"Authorization": "Bearer x"},
    )

    def raw_call() -> object:
        return raw.get("/items")

    # -- cache: fresh hits (a real clock; the entry stays fresh for an hour)
    real = authpulse.SystemClock()
    fresh_client = authpulse.Client(
        _session(real),
        base_url="https://api.bench",
        transport=httpx.MockTransport(_handler),
        retry=False,
        breaker=False,
        cache=authpulse.CachePolicy(ttl=3600),
    )
    fresh_client.get("/items")
    assert fresh_client.get("/items").extensions["authpulse_cache"] == "hit"

    # -- cache: stale hits (a fake clock held inside the stale window; revalidations
    #    run in the background and are joined outside the timed blocks)
    clock = FakeClock()
    stale_client = authpulse.Client(
        _session(clock, lifetime=300 * 24 * 3600),  # the fake clock moves 2 s per call
        base_url="https://api.bench",
        transport=httpx.MockTransport(_handler),
        retry=False,
        breaker=False,
        cache=authpulse.CachePolicy(ttl=1, stale_while_revalidate=10**9),
    )
    stale_client.get("/items")
    clock.advance(2)

    def settle() -> None:
        stale_client.join_background()  # the entry is fresh again after a revalidation
        clock.advance(2)  # ... so step out of the fresh window for the next call

    # only the answer is timed; the background revalidation and the wait for it are not
    stale_call = _Timed(lambda: stale_client.get("/items"), settle)
    first = stale_client.get("/items")
    assert first.extensions["authpulse_cache"] == "stale"
    settle()

    # -- cache: misses (a new URL every time)
    miss_client = authpulse.Client(
        _session(real),
        base_url="https://api.bench",
        transport=httpx.MockTransport(_handler),
        retry=False,
        breaker=False,
        cache=authpulse.CachePolicy(ttl=3600, max_entries=64),
    )
    counter = iter(range(10**9))

    def miss_call() -> object:
        return miss_client.get(f"/items/{next(counter)}")

    # -- the retry path when nothing fails
    plain = authpulse.Client(
        _session(real),
        base_url="https://api.bench",
        transport=httpx.MockTransport(_handler),
        retry=False,
        breaker=False,
    )
    default = authpulse.Client(
        _session(real), base_url="https://api.bench", transport=httpx.MockTransport(_handler)
    )

    def round_trip() -> object:  # the same client without the cache: a real round trip
        return plain.get("/items")

    cases: list[tuple[str, Callable[[], object], Callable[[], object], str]] = [
        ("cache fresh hit vs round trip", round_trip, lambda: fresh_client.get("/items"), "≤ 1.0×"),
        (
            "cache stale hit vs round trip (revalidation in background)",
            round_trip,
            stale_call,
            "≤ 1.0×",
        ),
        ("cache miss vs round trip", round_trip, miss_call, "-"),
        (
            "retry + breaker on vs off (authpulse.Client)",
            lambda: plain.get("/items"),
            lambda: default.get("/items"),
            "-",
        ),
        (
            "authpulse.Client (defaults) vs raw httpx",
            raw_call,
            lambda: default.get("/items"),
            "≤ 1.05×",
        ),
    ]
    for name, a, b, target in cases:
        for _ in range(2):  # warm-up
            _block(a, per_block // 4 or 1)
            _block(b, per_block // 4 or 1)
        med, q1, q3, a_ns, b_ns = _paired(a, b, blocks=blocks, per_block=per_block)
        rows.append(
            [
                name,
                f"{a_ns / 1000:.1f} µs",
                f"{b_ns / 1000:.1f} µs",
                f"{med:.3f}×",
                f"{q1:.3f}–{q3:.3f}",
                target,
            ]
        )
        data[name] = {"median_ratio": med, "q1": q1, "q3": q3, "a_ns": a_ns, "b_ns": b_ns}

    for c in (raw, fresh_client, stale_client, miss_client, plain, default):
        c.close()
    return Section(
        key="resilience",
        title="Resilience layers: the cache's answers and the retry path when nothing fails",
        intro=(
            f"{blocks} paired blocks × {per_block} requests, A/B order alternating; ratio = B "
            "block time / A block time of the same pair, median and interquartile range. "
            "Every client uses its own httpx.MockTransport with the same trivial handler."
        ),
        headers=["B (vs A)", "A /req", "B /req", "median ratio B/A", "IQR", "target"],
        rows=rows,
        data=data,
    )


if __name__ == "__main__":
    print(run().table())

"""The stale-while-revalidate cache transport: behaviour, bounds, identities, secrets.

Time comes from a FakeClock; background revalidations are awaited with
``join_background()`` / ``ajoin_background()`` and held with events, never
with sleeps. Every assertion is about counts and behaviour.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support import assert_no_secret
from authpulse import (
    AsyncCacheTransport,
    AuthpulseError,
    CachePolicy,
    CacheStats,
    CacheTransport,
    ConfigurationError,
    ErrorClass,
    ResponseCache,
    TokenEndpointError,
    UsageError,
    authorization_identity,
)
from authpulse._http.cache import CacheFreshness, cache_freshness, parse_cache_control
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock

BASE = "https://api.test"
ALICE = "Bearer at_alice_S3CR3T_0123456789"
BOB = "Bearer at_bob_S3CR3T_9876543210"
SECRETS = [ALICE, BOB, ALICE.split()[1], BOB.split()[1]]
USERS = {ALICE: "alice", BOB: "bob"}

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Responder = Callable[[httpx.Request, int], httpx.Response]


def ok(request: httpx.Request, n: int, **headers: str) -> httpx.Response:
    """``200 {"n": n, "who": ...}``: ``n`` counts upstream calls, ``who`` names the caller."""
    who = USERS.get(request.headers.get("authorization", ""), "anonymous")
    return httpx.Response(
        200,
        json={"n": n, "who": who, "path": request.url.path},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


class Upstream:
    """A counting handler for ``httpx.MockTransport`` (sync and async).

    ``responder`` shapes each answer; ``gate`` / ``agate`` hold every request
    (after the counter) until set, so a revalidation can be kept in flight.
    """

    def __init__(self, responder: Responder = ok) -> None:
        self.responder = responder
        self.calls = 0
        self.requests: list[httpx.Request] = []
        self.gate: threading.Event | None = None
        self.agate: asyncio.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def _count(self, request: httpx.Request) -> int:
        with self._lock:
            self.calls += 1
            self.requests.append(request)
            return self.calls

    def handle(self, request: httpx.Request) -> httpx.Response:
        n = self._count(request)
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(10), "gate never opened"
        return self.responder(request, n)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        n = self._count(request)
        if self.agate is not None:
            self.entered.set()
            await self.agate.wait()
        return self.responder(request, n)

    def fail_with(self, failure: BaseException | int) -> None:
        """Every later request fails: an exception raised, or a bare status answered."""

        def responder(request: httpx.Request, n: int) -> httpx.Response:
            if isinstance(failure, BaseException):
                raise failure
            return httpx.Response(failure, json={"error": "down"})

        self.responder = responder


class Events:
    """Collects ``on_event`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []

    def __call__(self, kind: str, payload: dict[str, object]) -> None:
        self.calls.append((kind, payload))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


def make(
    upstream: Upstream, clock: FakeClock, **kwargs: Any
) -> tuple[httpx.Client, CacheTransport]:
    transport = CacheTransport(httpx.MockTransport(upstream.handle), clock=clock, **kwargs)
    return httpx.Client(transport=transport, base_url=BASE), transport


def amake(
    upstream: Upstream, clock: FakeClock, **kwargs: Any
) -> tuple[httpx.AsyncClient, AsyncCacheTransport]:
    transport = AsyncCacheTransport(httpx.MockTransport(upstream.ahandle), clock=clock, **kwargs)
    return httpx.AsyncClient(transport=transport, base_url=BASE), transport


def label(response: httpx.Response) -> object:
    return response.extensions.get("authpulse_cache")


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def cached(upstream: Upstream, clock: FakeClock) -> Iterator[tuple[httpx.Client, CacheTransport]]:
    client, transport = make(upstream, clock)
    with client:
        yield client, transport


# ------------------------------------------------------------------ fresh, stale, miss


def test_miss_then_fresh_hit_with_age(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    first = client.get("/items")
    assert label(first) == "miss"
    clock.advance(10)
    second = client.get("/items")
    assert label(second) == "hit"
    assert second.json() == first.json() == {"n": 1, "who": "anonymous", "path": "/items"}
    assert second.headers["age"] == "10"
    assert second.headers["content-length"] == str(len(second.content))
    assert upstream.calls == 1
    stats = transport.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    assert stats.bytes > len(first.content)


def test_each_hit_is_a_new_response(cached: tuple[httpx.Client, CacheTransport]) -> None:
    client, _ = cached
    client.get("/items")
    a, b = client.get("/items"), client.get("/items")
    assert a is not b
    assert a.content == b.content
    with client.stream("GET", "/items") as streamed:
        assert label(streamed) == "hit"
        assert streamed.read() == a.content


def test_stale_is_served_at_once_and_revalidated_once_in_a_thread(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/items")
    clock.advance(31)  # past ttl=30, inside stale_while_revalidate=300
    stale = client.get("/items")
    assert label(stale) == "stale"
    assert stale.json()["n"] == 1
    assert stale.headers["age"] == "31"
    transport.join_background()
    assert upstream.calls == 2
    fresh = client.get("/items")
    assert label(fresh) == "hit"
    assert fresh.json()["n"] == 2
    assert fresh.headers["age"] == "0"
    stats = transport.stats()
    assert (stats.stale_served, stats.revalidations, stats.coalesced) == (1, 1, 0)


def test_twenty_concurrent_stale_threads_share_one_revalidation(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/items")
    clock.advance(60)
    upstream.gate = threading.Event()  # the revalidation stays in flight
    barrier = threading.Barrier(20)

    def one(_: int) -> httpx.Response:
        barrier.wait(10)
        return client.get("/items")

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(one, range(20)))
    assert [label(r) for r in responses] == ["stale"] * 20
    assert all(r.json()["n"] == 1 for r in responses)
    assert upstream.entered.wait(10)
    upstream.gate.set()
    transport.join_background()
    assert upstream.calls == 2  # the first fill and ONE revalidation
    stats = transport.stats()
    assert (stats.stale_served, stats.revalidations, stats.coalesced) == (20, 1, 19)
    assert client.get("/items").json()["n"] == 2


@pytest.mark.anyio
async def test_stale_is_revalidated_once_in_a_task(upstream: Upstream, clock: FakeClock) -> None:
    client, transport = amake(upstream, clock)
    async with client:
        await client.get("/items")
        clock.advance(31)
        stale = await client.get("/items")
        assert label(stale) == "stale"
        assert stale.json()["n"] == 1
        await transport.ajoin_background()
        assert upstream.calls == 2
        fresh = await client.get("/items")
        assert (label(fresh), fresh.json()["n"]) == ("hit", 2)


@pytest.mark.anyio
async def test_twenty_concurrent_stale_coroutines_share_one_revalidation(
    upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = amake(upstream, clock)
    async with client:
        await client.get("/items")
        clock.advance(60)
        upstream.agate = asyncio.Event()
        responses = await asyncio.gather(*(client.get("/items") for _ in range(20)))
        assert [label(r) for r in responses] == ["stale"] * 20
        upstream.agate.set()
        await transport.ajoin_background()
        assert upstream.calls == 2
        stats = transport.stats()
        assert (stats.stale_served, stats.revalidations, stats.coalesced) == (20, 1, 19)
        assert (await client.get("/items")).json()["n"] == 2


@pytest.mark.anyio
async def test_threads_and_coroutines_coalesce_on_a_shared_cache(
    upstream: Upstream, clock: FakeClock
) -> None:
    cache = ResponseCache()
    client, transport = make(upstream, clock, cache=cache)
    aclient, atransport = amake(upstream, clock, cache=cache)
    with client:
        async with aclient:
            client.get("/items")
            clock.advance(60)
            upstream.gate = threading.Event()
            leader = await asyncio.to_thread(client.get, "/items")  # a thread revalidates
            assert label(leader) == "stale"
            assert await asyncio.to_thread(upstream.entered.wait, 10)
            coroutines = await asyncio.gather(*(aclient.get("/items") for _ in range(10)))
            threads = await asyncio.gather(
                *(asyncio.to_thread(client.get, "/items") for _ in range(5))
            )
            assert {label(r) for r in [*coroutines, *threads]} == {"stale"}
            upstream.gate.set()
            await asyncio.to_thread(transport.join_background)
            await atransport.ajoin_background()
            assert upstream.calls == 2
            stats = cache.stats()
            assert (stats.revalidations, stats.coalesced, stats.stale_served) == (1, 15, 16)
            assert label(await aclient.get("/items")) == "hit"


def test_expired_entry_is_fetched_in_the_foreground(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/items")
    clock.advance(30 + 300)  # exactly at the end of the stale window: expired
    again = client.get("/items")
    assert (label(again), again.json()["n"]) == ("miss", 2)
    assert upstream.calls == 2
    assert transport.stats().misses == 2
    assert transport.stats().revalidations == 0


def test_freshness_boundaries_are_exact(
    cached: tuple[httpx.Client, CacheTransport], clock: FakeClock
) -> None:
    client, _ = cached
    client.get("/items")
    clock.advance(29.999)
    assert label(client.get("/items")) == "hit"
    clock.advance(0.001)
    assert label(client.get("/items")) == "stale"


def test_head_and_get_are_cached_separately(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream
) -> None:
    client, _ = cached
    client.get("/items")
    head = client.head("/items")
    assert label(head) == "miss"
    again = client.head("/items")
    assert label(again) == "hit"
    assert again.content == b""
    assert upstream.calls == 2


def test_encoded_bodies_are_served_decoded(upstream: Upstream, clock: FakeClock) -> None:
    body = b'{"compressed": true}'
    upstream.responder = lambda request, n: httpx.Response(
        200, content=gzip.compress(body), headers={"content-encoding": "gzip"}
    )
    client, _ = make(upstream, clock)
    with client:
        assert client.get("/z").content == body
        hit = client.get("/z")
        assert label(hit) == "hit"
        assert hit.content == body
        assert "content-encoding" not in hit.headers


# ------------------------------------------------------------------ stale-if-error


class BreakerOpenError(AuthpulseError):
    """Stands in for a circuit-breaker-open error defined elsewhere."""

    error_class = ErrorClass.NETWORK


class GaveUpError(AuthpulseError, httpx.TransportError):
    """Like a retry transport's final error: both an authpulse and a transport error."""

    def __init__(self, error_class: ErrorClass) -> None:
        super().__init__("gave up")
        self.error_class = error_class


def _failures() -> list[Any]:
    return [
        pytest.param(httpx.ConnectError("refused"), "network", id="connect-error"),
        pytest.param(httpx.ReadTimeout("slow"), "network", id="read-timeout"),
        pytest.param(503, "server", id="503"),
        pytest.param(500, "server", id="500"),
        pytest.param(BreakerOpenError("circuit open"), "network", id="breaker-open"),
        pytest.param(
            TokenEndpointError("idp down", error_class=ErrorClass.SERVER),
            "server",
            id="transient-authpulse-error",
        ),
        pytest.param(GaveUpError(ErrorClass.THROTTLED), "throttled", id="gave-up-throttled"),
    ]


@pytest.mark.parametrize(("failure", "error_class"), _failures())
def test_stale_if_error_serves_the_old_answer(
    upstream: Upstream, clock: FakeClock, failure: BaseException | int, error_class: str
) -> None:
    events = Events()
    client, transport = make(upstream, clock, on_event=events)
    with client:
        client.get("/items", headers={"authorization": ALICE})
        clock.advance(1000)  # expired, but inside stale_if_error (30 + 3600)
        upstream.fail_with(failure)
        response = client.get("/items", headers={"authorization": ALICE})
        assert response.status_code == 200
        assert label(response) == "stale-if-error"
        assert response.json() == {"n": 1, "who": "alice", "path": "/items"}
        assert response.headers["age"] == "1000"
        stats = transport.stats()
        assert (stats.stale_if_error_served, stats.misses, stats.entries) == (1, 2, 1)
        assert events.kinds() == ["stale_served"]
        payload = events.calls[0][1]
        assert payload["error_class"] == error_class
        assert payload["mode"] == "stale-if-error"
        assert payload["url"] == f"{BASE}/items"
        assert payload["identity"] == authorization_identity(
            httpx.Request("GET", BASE, headers={"authorization": ALICE})
        )
        assert_no_secret(repr(events.calls), SECRETS)


@pytest.mark.anyio
@pytest.mark.parametrize(("failure", "error_class"), _failures())
async def test_stale_if_error_async(
    upstream: Upstream, clock: FakeClock, failure: BaseException | int, error_class: str
) -> None:
    events = Events()
    client, transport = amake(upstream, clock, on_event=events)
    async with client:
        await client.get("/items")
        clock.advance(1000)
        upstream.fail_with(failure)
        response = await client.get("/items")
        assert (label(response), response.json()["n"]) == ("stale-if-error", 1)
        assert transport.stats().stale_if_error_served == 1
        assert events.calls[0][1]["error_class"] == error_class


class _BrokenStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"partial'
        raise httpx.ReadError("connection reset")


def test_stale_if_error_when_the_body_fails_mid_read(upstream: Upstream, clock: FakeClock) -> None:
    client, transport = make(upstream, clock)
    with client:
        client.get("/items")
        clock.advance(1000)
        upstream.responder = lambda request, n: httpx.Response(200, stream=_BrokenStream())
        response = client.get("/items")
        assert (label(response), response.json()["n"]) == ("stale-if-error", 1)
        assert transport.stats().stale_if_error_served == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(AuthpulseError("no class"), id="no-error-class"),
        pytest.param(
            TokenEndpointError("bad", error_class=ErrorClass.CLIENT), id="client-error-class"
        ),
        pytest.param(
            TokenEndpointError("denied", error_class=ErrorClass.AUTH), id="auth-error-class"
        ),
        pytest.param(GaveUpError(ErrorClass.CLIENT), id="transport-error-of-class-client"),
        pytest.param(ValueError("a bug"), id="not-an-upstream-error"),
    ],
)
def test_non_transient_errors_are_never_masked(
    upstream: Upstream, clock: FakeClock, failure: BaseException
) -> None:
    client, transport = make(upstream, clock)
    with client:
        client.get("/items")
        clock.advance(1000)
        upstream.fail_with(failure)
        with pytest.raises(type(failure)):
            client.get("/items")
        assert transport.stats().stale_if_error_served == 0


@pytest.mark.parametrize("status", [404, 401, 200])
def test_non_5xx_answers_pass_through_and_replace_the_stale_entry(
    upstream: Upstream, clock: FakeClock, status: int
) -> None:
    client, transport = make(upstream, clock)
    with client:
        client.get("/items")
        clock.advance(1000)
        if status == 200:
            upstream.responder = lambda r, n: ok(r, n, cache_control="no-store")
        else:
            upstream.fail_with(status)
        response = client.get("/items")
        assert (response.status_code, label(response)) == (status, "miss")
        assert transport.stats().entries == 0  # superseded: no later stale-if-error
        upstream.fail_with(503)
        assert client.get("/items").status_code == 503


def test_throttled_answer_passes_through_and_keeps_the_entry(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/items")
    clock.advance(1000)
    upstream.fail_with(429)
    response = client.get("/items")
    assert (response.status_code, label(response)) == (429, "miss")  # 429 is not masked
    assert transport.stats().entries == 1
    upstream.fail_with(503)
    assert label(client.get("/items")) == "stale-if-error"


def test_beyond_stale_if_error_the_failure_propagates(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/items")
    clock.advance(30 + 3600 - 1)
    upstream.fail_with(503)
    assert label(client.get("/items")) == "stale-if-error"
    clock.advance(1)
    failed = client.get("/items")
    assert (failed.status_code, label(failed)) == (503, "miss")
    upstream.fail_with(httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        client.get("/items")
    assert transport.stats().entries == 0  # dead entries are dropped on lookup


def test_must_revalidate_disables_stale_serving(upstream: Upstream, clock: FakeClock) -> None:
    upstream.responder = lambda r, n: ok(r, n, cache_control="max-age=10, must-revalidate")
    client, _ = make(upstream, clock)
    with client:
        client.get("/items")
        clock.advance(10)
        upstream.fail_with(503)
        assert client.get("/items").status_code == 503


# ------------------------------------------------------------------ background failures


def test_failed_revalidation_keeps_the_entry_for_stale_if_error(
    upstream: Upstream, clock: FakeClock
) -> None:
    events = Events()
    client, transport = make(upstream, clock, on_event=events)
    with client:
        client.get("/items")
        clock.advance(31)
        upstream.fail_with(503)
        assert label(client.get("/items")) == "stale"
        transport.join_background()
        assert transport.stats().revalidation_errors == 1
        assert events.kinds() == ["revalidation_failed"]
        assert events.calls[0][1]["error_class"] == "server"
        upstream.fail_with(httpx.ConnectError("refused"))
        assert label(client.get("/items")) == "stale"  # a new revalidation may start
        transport.join_background()
        assert transport.stats().revalidation_errors == 2
        clock.advance(400)
        assert label(client.get("/items")) == "stale-if-error"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda r, n: httpx.Response(401), id="401"),
        pytest.param(lambda r, n: httpx.Response(404), id="404"),
        pytest.param(lambda r, n: ok(r, n, cache_control="no-store"), id="no-store"),
    ],
)
def test_revalidation_answer_that_cannot_be_stored_removes_the_entry(
    upstream: Upstream, clock: FakeClock, answer: Responder
) -> None:
    events = Events()
    client, transport = make(upstream, clock, on_event=events)
    with client:
        client.get("/items")
        clock.advance(31)
        upstream.responder = answer
        assert label(client.get("/items")) == "stale"
        transport.join_background()
        assert transport.stats().entries == 0
        assert events.calls[-1][0] == "revalidated"
        assert events.calls[-1][1]["outcome"] == "removed"


def test_revalidation_uses_validators_and_304_refreshes_the_entry(
    upstream: Upstream, clock: FakeClock
) -> None:
    def responder(request: httpx.Request, n: int) -> httpx.Response:
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"etag": '"v1"', "x-checked": str(n)})
        return ok(request, n, etag='"v1"', last_modified="Tue, 01 Jul 2025 00:00:00 GMT")

    upstream.responder = responder
    events = Events()
    client, transport = make(upstream, clock, on_event=events)
    with client:
        first = client.get("/items")
        clock.advance(31)
        assert label(client.get("/items")) == "stale"
        transport.join_background()
        sent = upstream.requests[-1]
        assert sent.headers["if-none-match"] == '"v1"'
        assert sent.headers["if-modified-since"] == "Tue, 01 Jul 2025 00:00:00 GMT"
        hit = client.get("/items")
        assert label(hit) == "hit"
        assert hit.content == first.content
        assert hit.headers["x-checked"] == "2"  # headers updated from the 304
        assert hit.headers["age"] == "0"
        assert events.calls[-1][1]["outcome"] == "not_modified"


@pytest.mark.anyio
async def test_async_revalidation_failure_is_recorded(upstream: Upstream, clock: FakeClock) -> None:
    client, transport = amake(upstream, clock)
    async with client:
        await client.get("/items")
        clock.advance(31)
        upstream.fail_with(httpx.ConnectError("refused"))
        assert label(await client.get("/items")) == "stale"
        await transport.ajoin_background()
        assert transport.stats().revalidation_errors == 1
        assert transport.stats().entries == 1


# ------------------------------------------------------------------ never cached


def _never_cached() -> list[Any]:
    def send(method: str = "GET", **kw: Any) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.request(method, "/items", **kw)

    return [
        pytest.param(lambda r, n: ok(r, n, cache_control="no-store"), send(), id="no-store"),
        pytest.param(
            lambda r, n: ok(r, n, cache_control="private, NO-STORE"), send(), id="no-store-case"
        ),
        pytest.param(ok, send(headers={"cache-control": "no-store"}), id="request-no-store"),
        pytest.param(lambda r, n: ok(r, n, cache_control="no-cache"), send(), id="no-cache"),
        pytest.param(lambda r, n: httpx.Response(404, json={}), send(), id="404"),
        pytest.param(lambda r, n: httpx.Response(500, json={}), send(), id="500"),
        pytest.param(lambda r, n: httpx.Response(302, headers={"location": "/"}), send(), id="302"),
        pytest.param(lambda r, n: httpx.Response(206, content=b"x"), send(), id="206"),
        pytest.param(lambda r, n: ok(r, n, set_cookie="sid=1"), send(), id="set-cookie"),
        pytest.param(lambda r, n: ok(r, n, vary="Accept, *"), send(), id="vary-star"),
        pytest.param(ok, send("POST"), id="post"),
        pytest.param(ok, send("PUT", content=b"x"), id="put"),
        pytest.param(ok, send("GET", content=b"body"), id="get-with-body"),
        pytest.param(ok, send(headers={"if-none-match": '"x"'}), id="conditional"),
        pytest.param(ok, send(headers={"range": "bytes=0-1"}), id="range"),
        pytest.param(lambda r, n: ok(r, n, age="100000"), send(), id="dead-on-arrival"),
    ]


@pytest.mark.parametrize(("responder", "send"), _never_cached())
def test_never_cached(
    upstream: Upstream,
    clock: FakeClock,
    responder: Responder,
    send: Callable[[httpx.Client], httpx.Response],
) -> None:
    upstream.responder = responder
    client, transport = make(upstream, clock)
    with client:
        first, second = send(client), send(client)
        assert label(first) in ("miss", "bypass")
        assert label(second) == label(first)
        assert upstream.calls == 2
        stats = transport.stats()
        assert (stats.entries, stats.hits, stats.not_cached) == (0, 0, 2)


def test_identity_callable_may_decline(upstream: Upstream, clock: FakeClock) -> None:
    client, transport = make(upstream, clock, identity=lambda request: None)
    with client:
        assert label(client.get("/items")) == "bypass"
        assert label(client.get("/items")) == "bypass"
        assert upstream.calls == 2
        assert transport.stats().not_cached == 2


def test_unsafe_request_invalidates_its_url(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream
) -> None:
    client, transport = cached
    client.get("/items")
    client.get("/other")
    assert label(client.post("/items", json={"x": 1})) == "bypass"
    assert label(client.get("/items")) == "miss"
    assert label(client.get("/other")) == "hit"
    client.delete("/other")
    assert transport.stats().entries == 1


# ------------------------------------------------------------------ keys: Vary and identity


def test_vary_keys_on_the_named_request_headers(upstream: Upstream, clock: FakeClock) -> None:
    upstream.responder = lambda r, n: ok(r, n, vary="Accept")
    client, transport = make(upstream, clock)
    with client:
        as_json = client.get("/items", headers={"accept": "application/json"})
        as_text = client.get("/items", headers={"accept": "text/plain"})
        assert (label(as_json), label(as_text)) == ("miss", "miss")
        again = client.get("/items", headers={"accept": "application/json"})
        assert (label(again), again.json()["n"]) == ("hit", 1)
        assert client.get("/items", headers={"accept": "text/plain"}).json()["n"] == 2
        assert transport.stats().entries == 2
        assert transport.cache.invalidate(url=f"{BASE}/items") == 2


def test_vary_on_authorization_never_keeps_the_value(upstream: Upstream, clock: FakeClock) -> None:
    upstream.responder = lambda r, n: ok(r, n, vary="Authorization, Cookie")
    client, transport = make(upstream, clock, identity="shared-service")
    with client:
        for auth in (ALICE, BOB, ALICE, BOB):
            response = client.get("/me", headers={"authorization": auth, "cookie": "sid=S3CR3T99"})
            assert response.json()["who"] == USERS[auth]
        assert upstream.calls == 2
        keys = repr(list(transport.cache._lru.keys()))
        assert_no_secret(keys, [*SECRETS, "sid=S3CR3T99"])


def test_two_identities_never_share_a_response(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream, clock: FakeClock
) -> None:
    client, transport = cached
    for _ in range(3):
        assert client.get("/me", headers={"authorization": ALICE}).json()["who"] == "alice"
        assert client.get("/me", headers={"authorization": BOB}).json()["who"] == "bob"
        assert client.get("/me").json()["who"] == "anonymous"
    assert upstream.calls == 3
    stats = transport.stats()
    assert (stats.entries, stats.hits) == (3, 6)
    clock.advance(31)  # stale answers also stay with their identity
    assert client.get("/me", headers={"authorization": BOB}).json()["who"] == "bob"
    assert client.get("/me", headers={"authorization": ALICE}).json()["who"] == "alice"
    transport.join_background()
    for request in upstream.requests[3:]:  # revalidations carry their own credentials
        assert request.headers["authorization"] in (ALICE, BOB)


def test_custom_identity_keys_the_cache(upstream: Upstream, clock: FakeClock) -> None:
    def responder(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(200, json={"user": request.headers["x-user"], "n": n})

    upstream.responder = responder
    client, transport = make(upstream, clock, identity=lambda r: r.headers.get("x-user"))
    with client:
        for user in ("u1", "u2", "u1", "u2"):
            assert client.get("/me", headers={"x-user": user}).json()["user"] == user
        assert upstream.calls == 2
        assert transport.cache.invalidate(identity="u1") == 1
        assert label(client.get("/me", headers={"x-user": "u1"})) == "miss"
        assert label(client.get("/me", headers={"x-user": "u2"})) == "hit"


def test_default_identity_is_a_hash_of_the_credentials() -> None:
    anonymous = httpx.Request("GET", f"{BASE}/x")
    alice = httpx.Request("GET", f"{BASE}/x", headers={"authorization": ALICE})
    bob = httpx.Request("GET", f"{BASE}/x", headers={"authorization": BOB})
    cookie = httpx.Request("GET", f"{BASE}/x", headers={"cookie": "sid=1"})
    basic = httpx.Request("GET", "https://user:pw@api.test/x")
    assert authorization_identity(anonymous) == "anonymous"
    idents = {authorization_identity(r) for r in (alice, bob, cookie, basic)}
    assert len(idents) == 4
    assert all(i.startswith("sha256:") for i in idents)
    assert authorization_identity(alice) == authorization_identity(
        httpx.Request("POST", f"{BASE}/other", headers={"authorization": ALICE})
    )
    assert_no_secret(repr(idents), SECRETS)


token_st = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16)


@FUZZ
@given(
    tokens=st.lists(token_st, min_size=2, max_size=4, unique=True),
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.0, 5.0, 31.0, 400.0])), max_size=25
    ),
)
def test_no_answer_ever_reaches_another_identity(
    tokens: list[str], steps: list[tuple[int, float]]
) -> None:
    def responder(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(200, json={"for": request.headers.get("authorization")})

    clock = FakeClock()
    client, transport = make(Upstream(responder), clock)
    with client:
        for index, advance in steps:
            clock.advance(advance)
            auth = "Bearer " + tokens[index % len(tokens)]
            assert client.get("/me", headers={"authorization": auth}).json()["for"] == auth
            transport.join_background()


# ------------------------------------------------------------------ bounds


def test_entry_bound_evicts_least_recently_used(upstream: Upstream, clock: FakeClock) -> None:
    client, transport = make(upstream, clock, policy=CachePolicy(max_entries=3))
    with client:
        for i in (1, 2, 3):
            client.get(f"/{i}")
        assert label(client.get("/1")) == "hit"  # /1 is now the most recent
        client.get("/4")  # evicts /2
        client.get("/5")  # evicts /3
        stats = transport.stats()
        assert (stats.entries, stats.evictions) == (3, 2)
        assert label(client.get("/1")) == "hit"
        assert label(client.get("/2")) == "miss"


def test_byte_bound_evicts_and_refuses_oversized_bodies(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.responder = lambda r, n: httpx.Response(
        200, content=b"x" * int(r.url.params.get("size", "1000"))
    )
    client, transport = make(upstream, clock, policy=CachePolicy(max_bytes=2500))
    with client:
        for i in range(3):
            client.get(f"/{i}")
        stats = transport.stats()
        assert (stats.entries, stats.evictions) == (2, 1)
        assert 2000 < stats.bytes <= 2500
        big = client.get("/big", params={"size": "5000"})
        assert len(big.content) == 5000  # the caller still gets the whole answer
        assert label(big) == "miss"
        stats = transport.stats()
        assert (stats.entries, stats.not_cached) == (2, 1)


def test_oversized_body_without_content_length_is_not_stored(
    upstream: Upstream, clock: FakeClock
) -> None:
    class Chunks(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"y" * 3000

    upstream.responder = lambda r, n: httpx.Response(200, stream=Chunks())
    client, transport = make(upstream, clock, policy=CachePolicy(max_bytes=2000))
    with client:
        assert len(client.get("/stream").content) == 3000
        assert (transport.stats().entries, transport.stats().not_cached) == (0, 1)


def test_shared_cache_bounds_come_from_the_cache(upstream: Upstream, clock: FakeClock) -> None:
    cache = ResponseCache(max_entries=1)
    client, transport = make(upstream, clock, cache=cache, policy=CachePolicy(max_entries=50))
    with client:
        client.get("/a")
        client.get("/b")
        assert transport.cache is cache
        assert (cache.stats().entries, cache.stats().evictions, len(cache)) == (1, 1, 1)


# ------------------------------------------------------------------ invalidation


def test_invalidate_by_url_prefix_and_identity(
    cached: tuple[httpx.Client, CacheTransport], upstream: Upstream
) -> None:
    client, transport = cached
    cache = transport.cache
    for auth in (ALICE, BOB):
        for path in ("/users/1", "/users/2", "/orders/1", "/users/1?page=2"):
            client.get(path, headers={"authorization": auth})
    assert cache.stats().entries == 8
    alice = authorization_identity(httpx.Request("GET", BASE, headers={"authorization": ALICE}))
    assert cache.invalidate(url=f"{BASE}/users/1") == 2  # both identities, query excluded
    assert cache.invalidate(prefix="/users/", identity=alice) == 2
    assert cache.invalidate(prefix=f"{BASE}/orders") == 2
    assert cache.invalidate(url=httpx.URL(f"{BASE}/nothing")) == 0
    assert cache.stats().entries == 2
    assert label(client.get("/users/2", headers={"authorization": ALICE})) == "miss"
    assert label(client.get("/users/2", headers={"authorization": BOB})) == "hit"
    with pytest.raises(UsageError):
        cache.invalidate()
    cache.clear()
    assert cache.stats().entries == 0
    assert cache.stats().bytes == 0
    assert label(client.get("/users/2", headers={"authorization": BOB})) == "miss"


# ------------------------------------------------------------------ policy and Cache-Control


def test_per_route_overrides(upstream: Upstream, clock: FakeClock) -> None:
    policy = CachePolicy(routes={"/slow/": (300, 0), "/live/": (0, 10), "/slow/fast/": (5, 5)})
    client, transport = make(upstream, clock, policy=policy)
    with client:
        for path in ("/slow/a", "/live/a", "/slow/fast/a", "/other"):
            client.get(path)
        clock.advance(6)
        assert label(client.get("/slow/a")) == "hit"
        assert label(client.get("/live/a")) == "stale"
        assert label(client.get("/slow/fast/a")) == "stale"  # the longest prefix wins
        assert label(client.get("/other")) == "hit"
        transport.join_background()
        clock.advance(295)
        assert label(client.get("/slow/a")) == "miss"  # no stale window on /slow/
    assert policy.windows_for("/live/x") == (0.0, 10.0)
    assert policy.windows_for("/") == (30.0, 300.0)


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh_for"),
    [
        ("max-age=5", None, 5),
        ("public, max-age=120", None, 120),
        ('max-age="7"', None, 7),
        ("max-age=0", None, 0),
        ("max-age=abc", None, 0),  # malformed: stale at once
        ("max-age=10, max-age=100", None, 10),  # the first one wins
        ("max-age=30", "20", 10),  # the upstream's Age counts
        ("private", None, 30),  # fine: entries are per identity
    ],
)
def test_max_age_sets_the_fresh_lifetime(
    upstream: Upstream, clock: FakeClock, cache_control: str, age: str | None, fresh_for: int
) -> None:
    headers = {"cache_control": cache_control}
    if age is not None:
        headers["age"] = age
    upstream.responder = lambda r, n: ok(r, n, **headers)
    client, _ = make(upstream, clock)
    with client:
        client.get("/items")
        if fresh_for:
            clock.advance(fresh_for - 0.5)
            assert label(client.get("/items")) == "hit"
            clock.advance(0.5)
        assert label(client.get("/items")) == "stale"


def test_cache_control_can_be_ignored(upstream: Upstream, clock: FakeClock) -> None:
    upstream.responder = lambda r, n: ok(r, n, cache_control="max-age=1, no-cache")
    client, _ = make(upstream, clock, policy=CachePolicy(honour_cache_control=False))
    with client:
        client.get("/items")
        clock.advance(29)
        assert label(client.get("/items")) == "hit"


def test_response_directives_only_shorten_the_stale_windows(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.responder = lambda r, n: ok(
        r, n, cache_control="max-age=10, stale-while-revalidate=5, stale-if-error=99999"
    )
    client, _ = make(upstream, clock, policy=CachePolicy(stale_if_error=100))
    with client:
        client.get("/items")
        clock.advance(15)
        upstream.fail_with(503)
        assert label(client.get("/items")) == "stale-if-error"  # not stale: swr is 5
        clock.advance(95)  # age 110 = 10 + 100: the policy caps stale-if-error
        assert client.get("/items").status_code == 503


@pytest.mark.parametrize(
    "headers",
    [{"cache-control": "no-cache"}, {"cache-control": "max-age=5"}, {"pragma": "no-cache"}],
)
def test_request_directives_force_the_upstream(
    cached: tuple[httpx.Client, CacheTransport], clock: FakeClock, headers: dict[str, str]
) -> None:
    client, _ = cached
    client.get("/items")
    clock.advance(10)
    forced = client.get("/items", headers=headers)
    assert (label(forced), forced.json()["n"]) == ("miss", 2)
    assert label(client.get("/items")) == "hit"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": -1},
        {"ttl": float("nan")},
        {"stale_while_revalidate": float("inf")},
        {"stale_if_error": "60"},
        {"ttl": True},
        {"max_entries": 0},
        {"max_bytes": 1.5},
        {"max_entries": True},
        {"routes": {"users": (1, 1)}},
        {"routes": {"/users": (1,)}},
        {"routes": {"/users": (1, -1)}},
        {"routes": [("/users", (1, 1))]},
        {"honour_cache_control": "yes"},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        CachePolicy(**kwargs)


def test_policy_is_frozen_and_hashable() -> None:
    policy = CachePolicy(routes={"/a": (1, 2)})
    assert policy == CachePolicy(routes={"/a": (1.0, 2.0)})
    assert hash(policy) == hash(CachePolicy(routes={"/a": (1, 2)}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.ttl = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.routes["/b"] = (1, 1)  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identity": ""},
        {"identity": 42},
        {"on_event": "print"},
        {"policy": {"ttl": 1}},
        {"cache": {}},
        {"clock": object()},
    ],
)
def test_transport_validation(kwargs: dict[str, Any]) -> None:
    inner = httpx.MockTransport(lambda r: httpx.Response(200))
    with pytest.raises(ConfigurationError):
        CacheTransport(inner, **kwargs)
    with pytest.raises(ConfigurationError):
        AsyncCacheTransport(inner, **kwargs)


def test_inner_transport_kind_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        CacheTransport(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AsyncCacheTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ResponseCache(max_entries=0)


# ------------------------------------------------------------------ stats, events, secrets


def test_stats_are_a_frozen_snapshot(
    cached: tuple[httpx.Client, CacheTransport], clock: FakeClock
) -> None:
    client, transport = cached
    client.get("/a")
    client.get("/a")
    client.post("/a")
    before = transport.stats()
    assert isinstance(before, CacheStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.hits = 9  # type: ignore[misc]
    assert {f.name for f in dataclasses.fields(CacheStats)} >= {
        "hits",
        "misses",
        "stale_served",
        "stale_if_error_served",
        "revalidations",
        "coalesced",
        "evictions",
        "entries",
        "bytes",
        "not_cached",
    }
    assert (before.hits, before.misses, before.not_cached) == (1, 1, 1)
    client.get("/a")  # the POST invalidated /a
    assert before.misses == 1
    assert transport.stats().misses == 2


def test_no_authorization_value_in_reprs_stats_events_or_keys(
    upstream: Upstream, clock: FakeClock
) -> None:
    events = Events()
    client, transport = make(upstream, clock, on_event=events)
    with client:
        for auth in (ALICE, BOB):
            client.get(f"/me?access_token={auth.split()[1]}", headers={"authorization": auth})
        clock.advance(31)
        upstream.fail_with(503)
        for auth in (ALICE, BOB):
            client.get(f"/me?access_token={auth.split()[1]}", headers={"authorization": auth})
        transport.join_background()
        clock.advance(400)
        for auth in (ALICE, BOB):
            client.get(f"/me?access_token={auth.split()[1]}", headers={"authorization": auth})
        assert events.kinds().count("stale_served") == 2
        assert events.kinds().count("revalidation_failed") == 2
        text = " ".join(
            [
                repr(transport),
                repr(transport.cache),
                repr(transport.policy),
                repr(transport.stats()),
                repr(events.calls),
                repr([k[:2] for k in transport.cache._lru]),  # identity and method
            ]
        )
        assert_no_secret(text, SECRETS)


def test_a_failing_event_hook_never_breaks_a_request(upstream: Upstream, clock: FakeClock) -> None:
    def hook(kind: str, payload: dict[str, object]) -> None:
        raise RuntimeError("hook bug")

    client, _ = make(upstream, clock, on_event=hook)
    with client:
        client.get("/items")
        clock.advance(1000)
        upstream.fail_with(503)
        assert label(client.get("/items")) == "stale-if-error"


# ------------------------------------------------------------------ lifecycle


class RecordingTransport(httpx.MockTransport):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_close_waits_for_revalidations_and_closes_the_inner_transport(
    upstream: Upstream, clock: FakeClock
) -> None:
    inner = RecordingTransport(upstream.handle)
    transport = CacheTransport(inner, clock=clock)
    client = httpx.Client(transport=transport, base_url=BASE)
    client.get("/items")
    clock.advance(31)
    upstream.gate = threading.Event()
    assert label(client.get("/items")) == "stale"
    assert upstream.entered.wait(10)
    closer = threading.Thread(target=client.close)
    closer.start()
    upstream.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert inner.closed
    assert upstream.calls == 2
    assert transport.stats().entries == 1


class AsyncRecordingTransport(httpx.MockTransport):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_aclose_awaits_revalidations(upstream: Upstream, clock: FakeClock) -> None:
    inner = AsyncRecordingTransport(upstream.ahandle)
    transport = AsyncCacheTransport(inner, clock=clock)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        await client.get("/items")
        clock.advance(31)
        upstream.agate = asyncio.Event()
        assert label(await client.get("/items")) == "stale"
        upstream.agate.set()
    assert inner.closed
    assert upstream.calls == 2
    assert transport.stats().revalidations == 1


def test_no_revalidation_starts_after_close(upstream: Upstream, clock: FakeClock) -> None:
    transport = CacheTransport(httpx.MockTransport(upstream.handle), clock=clock)
    with httpx.Client(transport=transport, base_url=BASE) as client:
        client.get("/items")
    clock.advance(31)
    response = transport.handle_request(httpx.Request("GET", f"{BASE}/items"))
    assert label(response) == "stale"
    assert transport.stats().revalidations == 0


def test_composes_with_real_transports() -> None:
    with httpx.Client(transport=CacheTransport(httpx.HTTPTransport())) as client:
        assert isinstance(client, httpx.Client)
    assert isinstance(AsyncCacheTransport(httpx.AsyncHTTPTransport()), httpx.AsyncBaseTransport)


# ------------------------------------------------------------------ pure core and fuzzing


def test_freshness_is_a_pure_function_of_age() -> None:
    assert cache_freshness(age=0, ttl=30, stale_while_revalidate=300) is CacheFreshness.FRESH
    assert cache_freshness(age=30, ttl=30, stale_while_revalidate=300) is CacheFreshness.STALE
    assert cache_freshness(age=330, ttl=30, stale_while_revalidate=300) is CacheFreshness.EXPIRED
    assert cache_freshness(age=0, ttl=0, stale_while_revalidate=0) is CacheFreshness.EXPIRED


_ORDER = [CacheFreshness.FRESH, CacheFreshness.STALE, CacheFreshness.EXPIRED]


@FUZZ
@given(
    ttl=st.floats(0, 1e6),
    swr=st.floats(0, 1e6),
    ages=st.lists(st.floats(0, 3e6), min_size=2, max_size=10),
)
def test_freshness_never_goes_back(ttl: float, swr: float, ages: list[float]) -> None:
    states = [
        _ORDER.index(cache_freshness(age=a, ttl=ttl, stale_while_revalidate=swr))
        for a in sorted(ages)
    ]
    assert states == sorted(states)


def test_parse_cache_control() -> None:
    assert parse_cache_control('Max-Age=5, no-cache="Set-Cookie, X", private') == {
        "max-age": "5",
        "no-cache": "Set-Cookie, X",
        "private": None,
    }
    assert parse_cache_control(["max-age=1", "max-age=2, no-store"]) == {
        "max-age": "1",
        "no-store": None,
    }
    assert parse_cache_control(None) == {}
    assert parse_cache_control(' , ,="x", "unterminated') == {'"unterminated': None}


header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60
)
directive = st.one_of(
    st.sampled_from(
        [
            "no-store",
            "no-cache",
            "private",
            "public",
            "must-revalidate",
            "proxy-revalidate",
            "immutable",
        ]
    ),
    st.builds(
        lambda name, value: f"{name}={value}",
        st.sampled_from(["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"]),
        st.one_of(
            st.integers(-(10**30), 10**30).map(str),
            st.text("0123456789", min_size=1, max_size=5000),
            header_text,
        ),
    ),
    header_text,
)
cache_control_st = st.lists(directive, max_size=6).map(", ".join)


@FUZZ
@given(value=st.one_of(header_text, cache_control_st))
def test_parse_cache_control_never_raises(value: str) -> None:
    parsed = parse_cache_control(value)
    assert all(name == name.strip().lower() and name for name in parsed)


@FUZZ
@given(
    cache_control=st.one_of(cache_control_st, header_text),
    age=st.one_of(st.none(), header_text, st.integers(0, 10**12).map(str)),
    vary=st.one_of(st.none(), header_text),
    request_cc=st.one_of(st.none(), cache_control_st),
    advances=st.lists(st.sampled_from([0.0, 1.0, 29.0, 31.0, 400.0, 5000.0]), max_size=4),
)
def test_random_cache_headers_never_raise(
    cache_control: str,
    age: str | None,
    vary: str | None,
    request_cc: str | None,
    advances: list[float],
) -> None:
    def responder(request: httpx.Request, n: int) -> httpx.Response:
        headers = [(b"cache-control", cache_control.encode("latin-1"))]
        if age is not None:
            headers.append((b"age", age.encode("latin-1")))
        if vary is not None:
            headers.append((b"vary", vary.encode("latin-1")))
        return httpx.Response(200, headers=headers, json={"n": n})

    clock = FakeClock()
    upstream = Upstream(responder)
    client, transport = make(upstream, clock)
    headers = [(b"cache-control", request_cc.encode("latin-1"))] if request_cc is not None else []
    bypassed = 0
    with client:
        for advance in [0.0, *advances]:
            clock.advance(advance)
            response = client.get("/fuzz", headers=headers)
            assert response.status_code == 200
            assert label(response) in ("hit", "stale", "miss", "bypass")
            bypassed += label(response) == "bypass"
            transport.join_background()
    stats = transport.stats()
    assert stats.hits + stats.stale_served + stats.misses + bypassed == len(advances) + 1
    assert upstream.calls == stats.misses + stats.revalidations + bypassed

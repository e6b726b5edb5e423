"""Single flight: one refresh for every thread and coroutine, shared failures, STALE serving.

The fake IdP's 50 ms latency is simulated network time (it keeps the refresh
in flight while the herd arrives); no test waits on a timer.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from _support import NO_JITTER, Gate, cc_session, expired_token, make_token, rt_session
from authpulse import (
    AsyncClient,
    CallableSource,
    Client,
    ErrorClass,
    OAuthError,
    RefreshError,
    Session,
    TokenEndpointError,
    TokenRetry,
    TokenSet,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


@pytest.fixture
def slow_idp(clock: FakeClock) -> FakeIdP:
    """Single-use rotating refresh tokens and a 50 ms token endpoint."""
    return FakeIdP(clock=clock, access_ttl=600, latency=0.05, rotate=True, single_use=True)


def expired_rt_session(idp: FakeIdP, clock: FakeClock) -> Session:
    rt = idp.issue_refresh_token()
    return rt_session(idp, clock, refresh_token=rt, token=expired_token(clock, refresh=rt))


# ---------------------------------------------------------------- the herd


def test_32_threads_x_10_requests_one_token_call(clock: FakeClock, slow_idp: FakeIdP) -> None:
    api = FakeAPI(slow_idp)
    session = expired_rt_session(slow_idp, clock)
    client = Client(session, base_url=api.base_url, transport=api.transport)
    barrier = threading.Barrier(32)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=10)
        for i in range(10):
            try:
                r = client.get(f"/items/{i}")
            except BaseException as exc:  # every failure counts
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    client.close()
    assert errors == []
    assert statuses == [200] * 320
    assert slow_idp.hits == 1
    assert slow_idp.token_calls == 1
    assert slow_idp.reuse_detected == 0
    assert api.unauthorized == 0
    assert api.calls == 320
    assert session.stats().token_requests == 1
    assert session.generation == 2  # the expired seed token, then one refresh


def test_32_threads_get_the_same_token(clock: FakeClock, slow_idp: FakeIdP) -> None:
    session = expired_rt_session(slow_idp, clock)
    barrier = threading.Barrier(32)

    def worker() -> str:
        barrier.wait(timeout=10)
        return session.token()

    with ThreadPoolExecutor(32) as pool:
        tokens = list(pool.map(lambda _: worker(), range(32)))
    assert len(set(tokens)) == 1
    assert slow_idp.validate(tokens[0])
    assert slow_idp.hits == 1


@pytest.mark.anyio
async def test_200_coroutines_one_token_call(clock: FakeClock, slow_idp: FakeIdP) -> None:
    api = FakeAPI(slow_idp)
    session = expired_rt_session(slow_idp, clock)
    async with AsyncClient(session, base_url=api.base_url, transport=api.async_transport) as client:

        async def one(i: int) -> list[int]:
            return [(await client.get(f"/items/{i}/{j}")).status_code for j in range(2)]

        results = await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
    assert all(r == [200, 200] for r in results), [r for r in results if r != [200, 200]][:3]
    assert slow_idp.hits == 1
    assert slow_idp.reuse_detected == 0
    assert api.unauthorized == 0
    assert api.calls == 400
    await session.aclose()


@pytest.mark.anyio
async def test_threads_and_coroutines_share_one_refresh(
    clock: FakeClock, slow_idp: FakeIdP
) -> None:
    """Threads in a pool and coroutines on the loop, one Session, one token call."""
    api = FakeAPI(slow_idp)
    session = expired_rt_session(slow_idp, clock)
    sync_client = Client(session, base_url=api.base_url, transport=api.transport)
    async_client = AsyncClient(session, base_url=api.base_url, transport=api.async_transport)
    loop = asyncio.get_running_loop()
    start = threading.Event()

    def thread_worker() -> list[int]:
        assert start.wait(10)
        return [sync_client.get("/t").status_code for _ in range(10)]

    async def coro_worker() -> list[int]:
        return [(await async_client.get("/c")).status_code for _ in range(5)]

    with ThreadPoolExecutor(16) as pool:
        thread_futs = [loop.run_in_executor(pool, thread_worker) for _ in range(16)]
        start.set()
        results = await asyncio.gather(
            *thread_futs, *(coro_worker() for _ in range(100)), return_exceptions=True
        )
    sync_client.close()
    await async_client.aclose()
    failures = [r for r in results if not isinstance(r, list) or set(r) != {200}]
    assert failures == []
    assert slow_idp.hits == 1
    assert slow_idp.reuse_detected == 0
    assert api.calls == 16 * 10 + 100 * 5
    assert api.unauthorized == 0
    await session.aclose()


@pytest.mark.anyio
async def test_thread_waiters_join_a_coroutine_leader(clock: FakeClock, idp: FakeIdP) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return await idp.ahandle(request)

    session = Session(
        cc_session(idp, clock).source,
        clock=clock,
        transport=idp.transport,
        async_transport=httpx.MockTransport(held),
    )
    leader = asyncio.create_task(session.atoken())
    await entered.wait()  # the coroutine leads; the refresh is in flight
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(8) as pool:
        waiters = [loop.run_in_executor(pool, session.token) for _ in range(8)]
        await asyncio.sleep(0)
        release.set()
        tokens = await asyncio.gather(leader, *waiters)
    assert len(set(tokens)) == 1
    assert idp.hits == 1
    await session.aclose()


@pytest.mark.anyio
async def test_coroutine_waiters_join_a_thread_leader(clock: FakeClock, idp: FakeIdP) -> None:
    gate = Gate(idp.handle)
    session = Session(
        cc_session(idp, clock).source,
        clock=clock,
        transport=gate.transport,
        async_transport=idp.async_transport,
    )
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        leader = loop.run_in_executor(pool, session.token)
        assert await asyncio.to_thread(gate.entered.wait, 10)  # a thread leads
        waiters = [asyncio.create_task(session.atoken()) for _ in range(50)]
        await asyncio.sleep(0)  # every coroutine joins the flight (one loop pass)
        gate.open()
        tokens = await asyncio.gather(leader, *waiters)
    assert len(set(tokens)) == 1
    assert idp.hits == 1
    assert gate.count == 1
    await session.aclose()


@pytest.mark.anyio
async def test_force_refresh_joins_a_running_refresh(clock: FakeClock, idp: FakeIdP) -> None:
    release = asyncio.Event()
    count = 0

    async def held(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        await release.wait()
        return await idp.ahandle(request)

    session = Session(
        cc_session(idp, clock).source, clock=clock, async_transport=httpx.MockTransport(held)
    )
    first = asyncio.create_task(session.atoken())
    await asyncio.sleep(0)
    forced = asyncio.create_task(session.aforce_refresh())
    await asyncio.sleep(0)
    release.set()
    token, token_set = await asyncio.gather(first, forced)
    assert token == token_set.access_token.get_secret_value()
    assert count == 1
    assert idp.hits == 1
    await session.aclose()


# ---------------------------------------------------------------- STALE


def test_stale_serves_the_old_token_while_one_background_refresh_runs(
    clock: FakeClock, idp: FakeIdP
) -> None:
    gate = Gate(idp.handle)
    old = make_token(clock.now(), access="at_old_but_valid", lifetime=600)
    session = Session(
        cc_session(idp, clock).source,
        clock=clock,
        transport=gate.transport,
        token=old,
        policy=NO_JITTER,
    )
    refreshed = threading.Event()
    session.add_listener(lambda kind, f: refreshed.set() if kind == "refreshed" else None)
    clock.advance(400)  # STALE: refresh due at 300 s, expiry at 595 s
    barrier = threading.Barrier(16)

    def worker() -> list[str]:
        barrier.wait(timeout=10)
        return [session.token() for _ in range(20)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: worker(), range(16)))
    assert {t for r in results for t in r} == {"at_old_but_valid"}
    assert gate.entered.wait(10)
    assert gate.count == 1  # exactly one background refresh
    assert session.stats().token_requests == 1
    gate.open()
    assert refreshed.wait(10)
    new = session.token()
    assert new != "at_old_but_valid"
    assert idp.validate(new)
    assert idp.hits == 1
    session.close()


@pytest.mark.anyio
async def test_stale_async_serves_old_token_and_refreshes_once(
    clock: FakeClock, idp: FakeIdP
) -> None:
    release = asyncio.Event()
    count = 0

    async def held(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        await release.wait()
        return await idp.ahandle(request)

    session = Session(
        cc_session(idp, clock).source,
        clock=clock,
        async_transport=httpx.MockTransport(held),
        token=make_token(clock.now(), access="at_old_but_valid", lifetime=600),
        policy=NO_JITTER,
    )
    clock.advance(400)
    tokens = await asyncio.gather(*(session.atoken() for _ in range(200)))
    assert set(tokens) == {"at_old_but_valid"}
    for _ in range(3):
        await asyncio.sleep(0)
    assert count == 1
    release.set()
    await session.aclose()  # waits for the background task
    assert session.generation == 2
    assert idp.hits == 1
    token_set = session.token_set
    assert token_set is not None
    assert idp.validate(token_set.access_token.get_secret_value())


def test_stale_refresh_is_not_repeated_after_it_finished() -> None:
    """A caller that saw the STALE token just before a refresh finished must not
    start a second refresh (the stale claim re-checks the current token)."""
    park = threading.Event()
    parked = threading.Event()
    victim: list[threading.Thread] = []

    class ParkingClock(FakeClock):
        def monotonic(self) -> float:
            if victim and threading.current_thread() is victim[0] and not park.is_set():
                parked.set()
                assert park.wait(10)
            return super().monotonic()

    clock = ParkingClock()
    idp = FakeIdP(clock=clock, access_ttl=600)
    session = cc_session(idp, clock, policy=NO_JITTER)
    session.token()
    clock.advance(400)  # STALE
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(session.token()))
    victim.append(t)
    t.start()
    assert parked.wait(10)  # the thread saw STALE and is about to start a refresh
    session.force_refresh()  # ... but a refresh completes first
    park.set()
    t.join(10)
    session.close()
    assert len(result) == 1
    assert idp.hits == 2  # the first token and the forced refresh; no third
    assert session.generation == 2


def test_expired_caller_uses_a_token_installed_while_it_was_arriving() -> None:
    """A caller that saw EXPIRED just before another refresh finished waits for
    nothing and starts nothing: the expired claim re-checks the current token."""
    park = threading.Event()
    parked = threading.Event()
    victim: list[threading.Thread] = []

    class ParkingClock(FakeClock):
        def now(self) -> float:
            if victim and threading.current_thread() is victim[0] and not park.is_set():
                parked.set()
                assert park.wait(10)
            return super().now()

    clock = ParkingClock()
    idp = FakeIdP(clock=clock, access_ttl=600)
    session = cc_session(idp, clock, token=expired_token(clock))
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(session.token()))
    victim.append(t)
    t.start()
    assert parked.wait(10)  # the thread holds the expired token, about to claim a refresh
    fresh = session.force_refresh().access_token.get_secret_value()
    park.set()
    t.join(10)
    assert result == [fresh]
    assert idp.hits == 1


# ---------------------------------------------------------------- failures


def test_failed_refresh_is_shared_by_all_thread_waiters(clock: FakeClock) -> None:
    idp = FakeIdP(clock=clock, access_ttl=600, latency=0.2)
    session = expired_rt_session(idp, clock)
    idp.fail_next(1, Fault.oauth("invalid_grant", description="grant revoked"))
    barrier = threading.Barrier(16)

    def worker() -> BaseException | str:
        barrier.wait(timeout=10)
        try:
            return session.token()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda _: worker(), range(16)))
    assert all(isinstance(o, OAuthError) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 1  # the very same error object
    assert idp.hits == 1
    # no poisoning: the next caller starts a new refresh and succeeds
    token = session.token()
    assert idp.validate(token)
    assert idp.hits == 2
    assert idp.reuse_detected == 0
    st = session.stats()
    assert (st.failures, st.refreshes, st.consecutive_failures) == (1, 1, 0)


@pytest.mark.anyio
async def test_failed_refresh_is_shared_by_all_coroutine_waiters(
    clock: FakeClock, idp: FakeIdP
) -> None:
    session = expired_rt_session(idp, clock)
    session.retry = TokenRetry(attempts=1)
    idp.fail_next(1, Fault(status=503))
    outcomes = await asyncio.gather(*(session.atoken() for _ in range(100)), return_exceptions=True)
    assert all(isinstance(o, TokenEndpointError) for o in outcomes)
    first = outcomes[0]
    assert isinstance(first, TokenEndpointError)
    assert first.error_class is ErrorClass.SERVER
    assert idp.hits == 1
    assert idp.validate(await session.atoken())
    assert idp.hits == 2
    assert idp.reuse_detected == 0
    await session.aclose()


@pytest.mark.anyio
async def test_untyped_failure_reaches_waiters_as_refresh_error(clock: FakeClock) -> None:
    calls = 0

    async def flaky(current: TokenSet | None) -> TokenSet:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise ConnectionResetError("peer went away")
        return make_token(clock.now(), access="at_second_try")

    session = Session(CallableSource(flaky), clock=clock)
    outcomes = await asyncio.gather(*(session.atoken() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(o, RefreshError) for o in outcomes)
    assert all(isinstance(o.__cause__, ConnectionResetError) for o in outcomes)  # type: ignore[union-attr]
    assert calls == 1
    assert await session.atoken() == "at_second_try"
    assert calls == 2


def test_background_failure_does_not_reach_callers(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock, policy=NO_JITTER, retry=TokenRetry(attempts=1))
    old = session.token()
    failed = threading.Event()
    session.add_listener(lambda kind, f: failed.set() if kind == "refresh_failed" else None)
    idp.fail_next(1, Fault(status=500))
    clock.advance(400)
    assert session.token() == old
    assert failed.wait(10)
    assert session.token() == old  # still served, no error raised
    session.close()
    assert session.stats().failures == 1

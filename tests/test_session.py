"""Session: caching, freshness, hooks, listeners, verification, skew, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from _support import NO_JITTER, cc_session, expired_token, make_token, rt_session
from authpulse import (
    CallableSource,
    ClientCredentials,
    ConfigurationError,
    Freshness,
    JWTVerifier,
    OAuthError,
    RefreshError,
    RefreshPolicy,
    Session,
    TokenEndpointError,
    TokenResponseError,
    TokenRetry,
    TokenSet,
    TokenVerificationError,
    UsageError,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP, Fault

# --------------------------------------------------------------- configuration


class TestConfiguration:
    def test_source_must_be_a_token_source(self) -> None:
        with pytest.raises(ConfigurationError, match="source"):
            Session(object())  # type: ignore[arg-type]

    def test_token_must_be_a_token_set(self, idp: FakeIdP) -> None:
        grant = ClientCredentials(idp.token_url, "client", "secret")
        with pytest.raises(ConfigurationError, match="TokenSet"):
            Session(grant, token={"access_token": "x"})  # type: ignore[arg-type]

    def test_hook_must_be_callable(self, idp: FakeIdP) -> None:
        grant = ClientCredentials(idp.token_url, "client", "secret")
        with pytest.raises(ConfigurationError, match="on_token_update"):
            Session(grant, on_token_update="persist")  # type: ignore[arg-type]

    def test_configuration_error_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            Session(object())  # type: ignore[arg-type]

    def test_defaults(self, idp: FakeIdP) -> None:
        s = Session(ClientCredentials(idp.token_url, "client", "secret"))
        assert s.policy == RefreshPolicy()
        assert s.retry == TokenRetry()
        assert s.name == "ClientCredentials"
        assert s.origins is None
        assert s.token_set is None
        assert s.generation == 0
        assert s.freshness() is Freshness.EXPIRED
        assert not s.closed


# ------------------------------------------------------------------- the basics


class TestTokens:
    def test_first_call_fetches_then_caches(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        first = session.token()
        assert idp.validate(first)
        for _ in range(100):
            assert session.token() == first
        assert idp.hits == 1
        assert session.generation == 1
        assert session.freshness() is Freshness.FRESH

    @pytest.mark.anyio
    async def test_first_call_fetches_then_caches_async(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        session = cc_session(idp, clock)
        first = await session.atoken()
        assert all([await session.atoken() == first for _ in range(100)])
        assert idp.hits == 1
        await session.aclose()

    def test_initial_token_is_used_without_a_request(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, token=make_token(clock.now(), access="at_given"))
        assert session.token() == "at_given"
        assert idp.hits == 0
        assert session.generation == 1

    def test_expired_token_is_replaced_before_use(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, token=expired_token(clock))
        assert session.freshness() is Freshness.EXPIRED
        token = session.token()
        assert token != "at_long_gone"
        assert idp.validate(token)
        assert idp.hits == 1

    def test_freshness_follows_the_clock(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, policy=NO_JITTER)
        session.token()  # 600 s token: stale at 300 s, expired at 595 s
        assert session.freshness() is Freshness.FRESH
        assert session.freshness(clock.now() + 299.99) is Freshness.FRESH
        assert session.freshness(clock.now() + 300) is Freshness.STALE
        assert session.freshness(clock.now() + 595) is Freshness.EXPIRED
        clock.advance(300)
        assert session.freshness() is Freshness.STALE

    def test_expired_after_time_passes(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, policy=NO_JITTER)
        first = session.token()
        clock.advance(595)
        second = session.token()
        assert second != first
        assert idp.hits == 2
        assert session.generation == 2

    def test_force_refresh_always_fetches(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        session.token()
        t = session.force_refresh()
        assert isinstance(t, TokenSet)
        assert session.token() == t.access_token.get_secret_value()
        assert idp.hits == 2

    @pytest.mark.anyio
    async def test_aforce_refresh(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        t1 = await session.aforce_refresh()
        t2 = await session.aforce_refresh()
        assert t1 != t2
        assert idp.hits == 2
        assert await session.atoken() == t2.access_token.get_secret_value()
        await session.aclose()

    def test_stale_token_is_served_and_refreshed_in_background(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        session = cc_session(idp, clock, policy=NO_JITTER)
        old = session.token()
        done = threading.Event()
        session.add_listener(lambda kind, f: done.set() if kind == "refreshed" else None)
        clock.advance(400)
        assert session.token() == old  # served at once
        assert done.wait(5)
        new = session.token()
        assert new != old
        assert idp.validate(new)
        assert idp.hits == 2
        session.close()

    def test_token_already_expired_on_receipt_is_refused(self, clock: FakeClock) -> None:
        session = Session(
            CallableSource(lambda cur: make_token(clock.now(), lifetime=10, age=20)),
            clock=clock,
        )
        with pytest.raises(TokenResponseError, match="already expired"):
            session.token()
        assert session.token_set is None
        assert session.stats().failures == 1


# ---------------------------------------------------------------------- skew


class TestSkew:
    @pytest.mark.parametrize("offset", [3600.0, -3600.0, 90.0])
    def test_idp_clock_offset_is_corrected(self, clock: FakeClock, offset: float) -> None:
        idp = FakeIdP(clock=clock, access_ttl=600, clock_offset=offset)
        session = cc_session(idp, clock, policy=NO_JITTER)
        first = session.token()
        assert session.stats().skew == pytest.approx(offset, abs=1)
        t0 = clock.now()
        # the schedule is in local time: stale after 300 s, expired after 595 s
        assert session.freshness(t0) is Freshness.FRESH
        assert session.freshness(t0 + 299) is Freshness.FRESH
        assert session.freshness(t0 + 300) is Freshness.STALE
        assert session.freshness(t0 + 594) is Freshness.STALE
        assert session.freshness(t0 + 595) is Freshness.EXPIRED
        clock.advance(595)
        second = session.token()
        assert second != first
        assert idp.validate(second)
        assert idp.hits == 2
        session.close()

    def test_jwt_iat_skew(self, clock: FakeClock) -> None:
        idp = FakeIdP(
            clock=clock, access_ttl=600, clock_offset=-7200, jwt_access_tokens=True, send_date=False
        )
        session = cc_session(idp, clock, policy=NO_JITTER)
        session.token()
        assert session.stats().skew == pytest.approx(-7200, abs=1)
        assert session.freshness() is Freshness.FRESH
        assert session.freshness(clock.now() + 300) is Freshness.STALE

    def test_wrong_local_clock(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=FakeClock(), access_ttl=600)  # the IdP's clock is right
        clock.skew_wall(-1800)  # ours is half an hour slow
        session = cc_session(idp, clock, policy=NO_JITTER)
        session.token()
        assert session.stats().skew == pytest.approx(1800, abs=1)
        assert session.freshness() is Freshness.FRESH
        assert session.freshness(clock.now() + 595) is Freshness.EXPIRED


# -------------------------------------------------------------------- hooks


class TestOnTokenUpdate:
    def test_sync_hook_sees_every_token_before_use(self, clock: FakeClock, idp: FakeIdP) -> None:
        seen: list[TokenSet] = []
        installed_before: list[TokenSet | None] = []
        holder: dict[str, Session] = {}

        def hook(ts: TokenSet) -> None:
            installed_before.append(holder["s"].token_set)
            seen.append(ts)

        session = rt_session(idp, clock, on_token_update=hook)
        holder["s"] = session
        for _ in range(5):
            clock.advance(601)
            access = session.token()
            assert seen[-1].access_token.get_secret_value() == access
        assert len(seen) == 5
        # when the hook ran, the new token had not been installed yet
        assert installed_before[0] is None
        for before, new in zip(installed_before[1:], seen, strict=False):
            assert before == new
        assert idp.reuse_detected == 0

    @pytest.mark.anyio
    async def test_async_hook_from_async_code(self, clock: FakeClock, idp: FakeIdP) -> None:
        seen: list[str] = []

        async def hook(ts: TokenSet) -> None:
            await asyncio.sleep(0)
            assert ts.refresh_token is not None
            seen.append(ts.access_token.get_secret_value())

        session = rt_session(idp, clock, on_token_update=hook)
        for _ in range(3):
            clock.advance(601)
            access = await session.atoken()
            assert seen[-1] == access
        assert len(seen) == 3
        await session.aclose()

    def test_async_hook_from_sync_code(self, clock: FakeClock, idp: FakeIdP) -> None:
        seen: list[str] = []

        async def hook(ts: TokenSet) -> None:
            seen.append(ts.access_token.get_secret_value())

        session = rt_session(idp, clock, on_token_update=hook)
        assert session.token() == seen[0]

    @pytest.mark.anyio
    async def test_sync_hook_from_async_code(self, clock: FakeClock, idp: FakeIdP) -> None:
        seen: list[str] = []
        session = rt_session(
            idp, clock, on_token_update=lambda ts: seen.append(ts.access_token.get_secret_value())
        )
        assert await session.atoken() == seen[0]
        await session.aclose()

    def test_raising_hook_does_not_lose_the_token(
        self, clock: FakeClock, idp: FakeIdP, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls = 0

        def hook(ts: TokenSet) -> None:
            nonlocal calls
            calls += 1
            raise OSError("disk full")

        events: list[str] = []
        session = rt_session(idp, clock, on_token_update=hook)
        session.add_listener(lambda kind, f: events.append(kind))
        with caplog.at_level(logging.ERROR, logger="authpulse"):
            first = session.token()
        assert idp.validate(first)
        assert session.token_set is not None
        assert "hook_failed" in events
        assert any("OSError" in r.getMessage() for r in caplog.records)
        # the rotated refresh token was kept: the next refreshes work, no reuse
        for _ in range(3):
            clock.advance(601)
            assert idp.validate(session.token())
        assert calls == 4
        assert idp.reuse_detected == 0
        assert session.stats().failures == 0

    @pytest.mark.anyio
    async def test_raising_async_hook_does_not_lose_the_token(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        async def hook(ts: TokenSet) -> None:
            raise RuntimeError("store down")

        session = rt_session(idp, clock, on_token_update=hook)
        assert idp.validate(await session.atoken())
        clock.advance(601)
        assert idp.validate(await session.atoken())
        assert idp.reuse_detected == 0
        await session.aclose()


# ---------------------------------------------------------------- listeners


class TestListeners:
    def test_events(self, clock: FakeClock, idp: FakeIdP) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        session = rt_session(idp, clock, retry=TokenRetry(attempts=2))
        session.add_listener(lambda kind, fields: events.append((kind, fields)))
        session.token()
        idp.fail_next(2, Fault(status=503))
        with pytest.raises(TokenEndpointError):
            session.force_refresh()
        kinds = [k for k, _ in events]
        assert kinds == [
            "refresh_started",
            "refreshed",
            "refresh_started",
            "retry",
            "refresh_failed",
        ]
        assert [f["reason"] for k, f in events if k == "refresh_started"] == ["expired", "forced"]
        events = [(k, f) for k, f in events if k != "refresh_started"]
        refreshed = events[0][1]
        assert refreshed["reason"] == "expired"
        assert refreshed["generation"] == 1
        assert refreshed["rotated"] is True
        assert refreshed["expires_in"] == pytest.approx(595, abs=1)
        failed = events[2][1]
        assert failed == {
            "reason": "forced",
            "error": "TokenEndpointError",
            "error_class": "server",
            "consecutive_failures": 1,
        }

    def test_raising_listener_does_not_break_a_refresh(
        self, clock: FakeClock, idp: FakeIdP, caplog: pytest.LogCaptureFixture
    ) -> None:
        session = cc_session(idp, clock)
        after: list[str] = []

        def bad(kind: str, fields: dict[str, Any]) -> None:
            raise ValueError("listener bug")

        session.add_listener(bad)
        session.add_listener(lambda kind, fields: after.append(kind))
        with caplog.at_level(logging.ERROR, logger="authpulse"):
            assert idp.validate(session.token())
        assert after == ["refresh_started", "refreshed"]  # later listeners still called
        assert any("listener failed" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ verification


class TestVerifier:
    def test_valid_jwt_is_accepted(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True)
        verifier = JWTVerifier(algorithms=["HS256"], key=idp.jwt_key, issuer=idp.issuer)
        session = cc_session(idp, clock, verifier=verifier)
        assert idp.validate(session.token())

    def test_invalid_jwt_is_refused_and_not_installed(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True)
        verifier = JWTVerifier(algorithms=["HS256"], key="x" * 32)
        session = cc_session(idp, clock, verifier=verifier)
        with pytest.raises(TokenVerificationError):
            session.token()
        assert session.token_set is None
        assert session.stats().last_error_class == "auth"

    def test_wrong_issuer_is_refused(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True)
        verifier = JWTVerifier(algorithms=["HS256"], key=idp.jwt_key, issuer="https://evil.test")
        session = cc_session(idp, clock, verifier=verifier)
        with pytest.raises(TokenVerificationError):
            session.token()

    def test_opaque_tokens_are_not_verified(self, clock: FakeClock, idp: FakeIdP) -> None:
        verifier = JWTVerifier(algorithms=["HS256"], key="x" * 32)
        session = cc_session(idp, clock, verifier=verifier)
        assert idp.validate(session.token())


# ---------------------------------------------------------------- failures


class TestFailures:
    def test_failure_then_recovery(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        idp.fail_next(1, Fault.oauth("invalid_client", status=401))
        with pytest.raises(OAuthError):
            session.token()
        st = session.stats()
        assert (st.failures, st.consecutive_failures, st.refreshes) == (1, 1, 0)
        assert st.last_error is not None
        assert st.last_error.startswith("OAuthError: ")
        assert st.last_error_class == "auth"
        assert st.last_failure_at == clock.now()
        assert idp.validate(session.token())
        st = session.stats()
        assert (st.failures, st.consecutive_failures, st.refreshes) == (1, 0, 1)
        assert st.token_requests == 2

    def test_background_failures_back_off(self, clock: FakeClock, idp: FakeIdP) -> None:
        policy = RefreshPolicy(jitter=0, retry_stale_after=2, retry_stale_max=8)
        session = cc_session(idp, clock, policy=policy, retry=TokenRetry(attempts=1))
        old = session.token()
        failed = threading.Semaphore(0)
        session.add_listener(lambda kind, f: failed.release() if kind == "refresh_failed" else None)
        idp.set_outage(Fault(status=503))
        clock.advance(300)  # STALE

        attempts = []
        for step in (0, 1, 1, 2, 2, 4, 4, 8):
            clock.advance(step)
            started = session.stats().token_requests  # counted when a refresh is claimed
            assert session.token() == old  # the stale token keeps being served
            if session.stats().token_requests > started:
                assert failed.acquire(timeout=5)  # let the background attempt finish
            attempts.append(idp.hits)
        # after the first fetch, background attempts at t=300, then +2 (302), +4 (306),
        # +8 (314), +8 (322: the delay is capped at retry_stale_max)
        assert attempts == [2, 2, 3, 3, 4, 4, 5, 6]
        assert session.stats().consecutive_failures == 5
        idp.set_outage(None)
        clock.advance(8)
        session.token()
        session.join_background()
        assert session.stats().consecutive_failures == 0
        assert session.token() != old
        session.close()
        with pytest.raises(UsageError):
            session.token()  # a closed session hands out nothing, not even a cached token

    @pytest.mark.anyio
    async def test_background_failures_back_off_async(self, clock: FakeClock, idp: FakeIdP) -> None:
        policy = RefreshPolicy(jitter=0, retry_stale_after=5, retry_stale_max=5)
        session = cc_session(idp, clock, policy=policy, retry=TokenRetry(attempts=1))
        old = await session.atoken()
        failed = asyncio.Event()
        session.add_listener(lambda kind, f: failed.set() if kind == "refresh_failed" else None)
        idp.set_outage(Fault.refused())
        clock.advance(300)  # STALE
        assert await session.atoken() == old
        await asyncio.wait_for(failed.wait(), 10)  # the background task ran and failed
        assert session.stats().consecutive_failures == 1
        assert all([await session.atoken() == old for _ in range(10)])
        assert idp.hits == 2  # no new attempt inside the back-off
        clock.advance(5)
        idp.set_outage(None)
        assert await session.atoken() == old
        await session.aclose()  # waits for the background task
        assert idp.hits == 3
        assert session.stats().consecutive_failures == 0
        assert session.generation == 2

    def test_refresh_cancelled_by_loop_shutdown_does_not_poison(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        async def never(request: httpx.Request) -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            transport=idp.transport,
            async_transport=httpx.MockTransport(never),
            token=make_token(clock.now(), access="at_old", lifetime=600),
            policy=NO_JITTER,
        )
        clock.advance(400)  # STALE

        async def main() -> str:
            return await session.atoken()  # starts a background task, returns at once

        assert asyncio.run(main()) == "at_old"  # asyncio.run cancels the pending task
        assert session.stats().failures == 1
        assert session.stats().last_error == "CancelledError"
        clock.advance(300)  # EXPIRED: a sync caller must get a fresh token
        assert idp.validate(session.token())
        session.close()


# -------------------------------------------------------------- lifecycle


class TestLifecycle:
    def test_closed_session_refuses_to_refresh(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        session.token()
        session.close()
        assert session.closed
        with pytest.raises(UsageError, match="closed"):
            session.force_refresh()
        clock.advance(3600)
        with pytest.raises(UsageError):
            session.token()
        assert idp.hits == 1

    @pytest.mark.anyio
    async def test_async_context_manager(self, clock: FakeClock, idp: FakeIdP) -> None:
        async with cc_session(idp, clock) as session:
            await session.atoken()
        assert session.closed
        with pytest.raises(UsageError):
            await session.aforce_refresh()

    def test_context_manager(self, clock: FakeClock, idp: FakeIdP) -> None:
        with cc_session(idp, clock) as session:
            session.token()
        assert session.closed

    def test_close_waits_for_a_background_refresh(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, policy=NO_JITTER)
        session.token()
        clock.advance(400)
        session.token()  # starts a background refresh
        session.close()
        assert not session._threads
        assert idp.hits == 2
        assert session.generation == 2

    @pytest.mark.anyio
    async def test_aclose_waits_for_background_tasks(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, policy=NO_JITTER)
        old = await session.atoken()
        clock.advance(400)
        assert await session.atoken() == old
        await session.aclose()
        assert idp.hits == 2
        assert session.generation == 2

    @pytest.mark.anyio
    async def test_sync_wait_on_the_refreshing_loop_is_a_usage_error(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        release = asyncio.Event()
        entered = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            entered.set()
            await release.wait()
            return await idp.ahandle(request)

        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            async_transport=httpx.MockTransport(handler),
        )
        task = asyncio.create_task(session.atoken())
        await entered.wait()
        with pytest.raises(UsageError, match="atoken"):
            session.token()
        release.set()
        assert idp.validate(await task)
        await session.aclose()

    @pytest.mark.anyio
    async def test_cancelled_waiter_does_not_cancel_the_refresh(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        release = asyncio.Event()
        entered = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            entered.set()
            await release.wait()
            return await idp.ahandle(request)

        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            async_transport=httpx.MockTransport(handler),
        )
        leader = asyncio.create_task(session.atoken())
        follower = asyncio.create_task(session.atoken())
        await entered.wait()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        release.set()
        assert idp.validate(await follower)
        assert idp.hits == 1
        await session.aclose()


class TestIntrospection:
    def test_stats_and_health(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        assert session.health().score < 100  # no token yet
        session.token()
        st = session.stats()
        assert st.refreshes == 1
        assert st.generation == 1
        assert st.last_refresh_at == clock.now()
        report = session.health()
        assert report.score == 100
        assert report.components == ()
        idp.set_outage(Fault.oauth("invalid_grant"))
        for _ in range(3):
            with pytest.raises(OAuthError):
                session.force_refresh()
        assert session.health().score < 100
        assert session.health().worst is not None

    def test_closed_session_health(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock)
        session.token()
        session.close()
        assert session.health().score == 0

    def test_repr(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = cc_session(idp, clock, name="billing")
        assert repr(session) == "<Session 'billing' no token generation=0>"
        session.token()
        assert repr(session) == "<Session 'billing' fresh generation=1>"


@pytest.mark.anyio
async def test_an_async_wait_for_a_hung_refresh_times_out_as_a_sync_wait_does(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sync and async waiters both give up after the refresh deadline plus the
    grace period, with the same typed error; the refresh itself goes on."""
    import authpulse._sessions.single_flight

    monkeypatch.setattr(authpulse._sessions.single_flight, "_WAIT_GRACE", 0.0)
    release = asyncio.Event()

    async def fetch(current: TokenSet | None) -> TokenSet:
        await release.wait()
        return make_token(clock.now())

    session = Session(CallableSource(fetch), clock=clock, retry=TokenRetry(deadline=0.05))
    with pytest.raises(RefreshError, match="timed out waiting for the token refresh"):
        await asyncio.wait_for(session.atoken(), 10)  # bound: hung before the fix
    release.set()
    await session.aclose()  # awaits the refresh, which finishes and installs its token
    assert session.stats().refreshes == 1
    assert session.token_set is not None


@pytest.mark.anyio
async def test_a_sync_wait_on_the_loop_of_a_refresh_in_flight_is_refused(clock: FakeClock) -> None:
    """A sync call on the thread of the loop that runs the refresh would block
    that loop for good: it is refused with a typed error, and the refresh and
    its async waiter go on."""
    release = asyncio.Event()

    async def fetch(current: TokenSet | None) -> TokenSet:
        await release.wait()
        return make_token(clock.now())

    session = Session(CallableSource(fetch), clock=clock)
    waiter = asyncio.ensure_future(session.atoken())
    await asyncio.sleep(0)  # the waiter has claimed the flight, on this loop
    with pytest.raises(UsageError, match="use atoken"):
        session.token()
    release.set()
    assert await asyncio.wait_for(waiter, 10)
    await session.aclose()
    assert session.stats().refreshes == 1

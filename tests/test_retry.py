"""Retry maths (pure) and token endpoint retries against the fake IdP."""

from __future__ import annotations

import math
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import cc_session, rt_session
from authpulse import (
    ClientCredentials,
    ConfigurationError,
    ErrorClass,
    OAuthError,
    Session,
    TokenEndpointError,
    TokenResponseError,
    TokenRetry,
)
from authpulse._core.retry import backoff, classify_status, parse_retry_after
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP, Fault

NOW = 1_800_000_000.0


# ------------------------------------------------------------------------ pure parts


class TestClassifyStatus:
    @pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 399])
    def test_success_and_redirects(self, status: int) -> None:
        assert classify_status(status) is None

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
    def test_server(self, status: int) -> None:
        assert classify_status(status) is ErrorClass.SERVER
        assert ErrorClass.SERVER.transient

    def test_throttled(self) -> None:
        assert classify_status(429) is ErrorClass.THROTTLED
        assert classify_status(503, {"Retry-After": "3"}) is ErrorClass.THROTTLED
        assert classify_status(503, {"retry-after": "3"}) is ErrorClass.THROTTLED
        assert classify_status(503, {}) is ErrorClass.SERVER
        assert classify_status(500, {"retry-after": "3"}) is ErrorClass.SERVER

    @pytest.mark.parametrize("status", [401, 403])
    def test_auth(self, status: int) -> None:
        assert classify_status(status) is ErrorClass.AUTH
        assert not ErrorClass.AUTH.transient

    @pytest.mark.parametrize("status", [400, 404, 405, 409, 418, 422])
    def test_client(self, status: int) -> None:
        assert classify_status(status) is ErrorClass.CLIENT
        assert not ErrorClass.CLIENT.transient

    def test_transient_classes(self) -> None:
        assert {c for c in ErrorClass if c.transient} == {
            ErrorClass.NETWORK,
            ErrorClass.THROTTLED,
            ErrorClass.SERVER,
        }


class TestParseRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after("120", now=NOW) == 120.0
        assert parse_retry_after(" 7 ", now=NOW) == 7.0
        assert parse_retry_after("0", now=NOW) == 0.0

    def test_http_date(self) -> None:
        assert parse_retry_after(formatdate(NOW + 90, usegmt=True), now=NOW) == 90.0

    def test_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after(formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0

    @pytest.mark.parametrize(
        "value", [None, "", "soon", "-5", "1.5", "²", "Mon, 99 Foo 2020 99:99:99 GMT"]
    )
    def test_unparseable_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now=NOW) is None

    def test_huge_values_do_not_raise(self) -> None:
        assert parse_retry_after("9" * 400, now=NOW) == math.inf
        assert parse_retry_after("9" * 5000, now=NOW) == math.inf

    @settings(max_examples=300, deadline=None, database=None)
    @given(value=st.text(max_size=40))
    def test_never_raises(self, value: str) -> None:
        r = parse_retry_after(value, now=NOW)
        assert r is None or r >= 0


class TestBackoff:
    def test_exponential_cap_and_jitter(self) -> None:
        assert backoff(1, base=0.25, cap=8, u=1.0) == 0.25
        assert backoff(2, base=0.25, cap=8, u=1.0) == 0.5
        assert backoff(4, base=0.25, cap=8, u=1.0) == 2.0
        assert backoff(10, base=0.25, cap=8, u=1.0) == 8.0
        assert backoff(10_000, base=0.25, cap=8, u=1.0) == 8.0
        assert backoff(3, base=0.25, cap=8, u=0.5) == 0.5
        assert backoff(3, base=0.25, cap=8, u=0.0) == 0.0

    def test_draw_is_clamped(self) -> None:
        assert backoff(1, base=1, cap=8, u=5) == 1
        assert backoff(1, base=1, cap=8, u=-1) == 0
        assert backoff(0, base=1, cap=8, u=1) == 1

    @settings(max_examples=200, deadline=None, database=None)
    @given(attempt=st.integers(min_value=-5, max_value=10**6), u=st.floats(0, 1))
    def test_bounded(self, attempt: int, u: float) -> None:
        assert 0 <= backoff(attempt, base=0.25, cap=8, u=u) <= 8


class TestTokenRetryValidation:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": -1},
            {"attempts": "3"},
            {"attempts": 2.5},
            {"attempts": True},
            {"deadline": 0},
            {"deadline": -1},
            {"deadline": math.inf},
            {"deadline": math.nan},
            {"attempt_timeout": 0},
            {"backoff_base": -0.1},
            {"backoff_max": "8"},
            {"backoff_max": True},
        ],
        ids=repr,
    )
    def test_bad_values(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError, match="TokenRetry"):
            TokenRetry(**kwargs)

    def test_defaults(self) -> None:
        r = TokenRetry()
        assert (r.attempts, r.deadline, r.attempt_timeout) == (20, 30.0, 10.0)
        assert (r.backoff_base, r.backoff_max, r.max_response_bytes) == (0.5, 4.0, 1024 * 1024)


# ----------------------------------------------------------- against the fake IdP


def session_for(idp: FakeIdP, clock: FakeClock, **retry: Any) -> Session:
    return cc_session(idp, clock, retry=TokenRetry(**retry) if retry else None)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.refused(),
        Fault.timeout(),
        Fault(status=500),
        Fault(status=502, body="<html>bad gateway</html>", content_type="text/html"),
        Fault(status=503),
        Fault(status=504),
        Fault(status=429),
    ],
    ids=["connect-error", "timeout", "500", "502", "503", "504", "429"],
)
def test_transient_failures_are_retried(clock: FakeClock, idp: FakeIdP, fault: Fault) -> None:
    session = session_for(idp, clock)
    idp.fail_next(2, fault)
    events: list[tuple[str, dict[str, Any]]] = []
    session.add_listener(lambda kind, fields: events.append((kind, fields)))
    assert idp.validate(session.token())
    assert idp.hits == 3
    assert idp.token_calls == 1  # only the last one reached the grant logic
    assert len(clock.sleeps) == 2
    retries = [f for k, f in events if k == "retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert [r["sleep"] for r in retries] == clock.sleeps
    assert {r["error"] for r in retries} == {"TokenEndpointError"}
    assert session.stats().failures == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    [Fault.refused(), Fault.timeout(), Fault(status=503)],
    ids=["refused", "timeout", "503"],
)
async def test_transient_failures_are_retried_async(
    clock: FakeClock, idp: FakeIdP, fault: Fault
) -> None:
    session = session_for(idp, clock)
    idp.fail_next(3, fault)
    assert idp.validate(await session.atoken())
    assert idp.hits == 4
    assert len(clock.sleeps) == 3
    await session.aclose()


def test_backoff_sleeps_are_full_jitter_exponential(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock, attempts=6, deadline=1000, backoff_base=1, backoff_max=4)
    idp.fail_next(5, Fault(status=500))
    session.token()
    assert idp.hits == 6
    caps = [1, 2, 4, 4, 4]
    assert len(clock.sleeps) == 5
    for slept, cap in zip(clock.sleeps, caps, strict=True):
        assert 0 <= slept <= cap
    assert clock.monotonic() == pytest.approx(sum(clock.sleeps))


def test_retry_after_seconds_is_honoured(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock)
    idp.fail_next(1, Fault(status=429, headers={"retry-after": "7"}))
    session.token()
    assert clock.sleeps == [7.0]
    assert idp.hits == 2


def test_retry_after_http_date_is_honoured(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock)
    when = formatdate(clock.now() + 12, usegmt=True)
    idp.fail_next(1, Fault(status=503, headers={"retry-after": when}))
    session.token()
    assert clock.sleeps == [12.0]
    assert idp.hits == 2


def test_retry_after_beyond_the_deadline_is_not_slept(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock, deadline=10)
    idp.fail_next(1, Fault(status=429, headers={"retry-after": "20"}))
    with pytest.raises(TokenEndpointError) as info:
        session.token()
    exc = info.value
    assert exc.error_class is ErrorClass.THROTTLED
    assert exc.retry_after == 20
    assert exc.status_code == 429
    assert exc.attempts == 1
    assert clock.sleeps == []
    assert idp.hits == 1


@pytest.mark.parametrize("deadline", [0.5, 3.0, 10.0])
def test_never_sleeps_past_the_deadline(clock: FakeClock, idp: FakeIdP, deadline: float) -> None:
    session = session_for(
        idp, clock, attempts=100, deadline=deadline, backoff_base=0.2, backoff_max=2
    )
    idp.set_outage(Fault(status=503))
    start = clock.monotonic()
    with pytest.raises(TokenEndpointError) as info:
        session.token()
    assert info.value.error_class is ErrorClass.SERVER
    assert info.value.attempts == idp.hits
    assert sum(clock.sleeps) < deadline
    assert clock.monotonic() - start < deadline
    assert idp.hits == len(clock.sleeps) + 1


@pytest.mark.anyio
async def test_never_sleeps_past_the_deadline_async(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock, attempts=100, deadline=2.0, backoff_base=0.2)
    idp.set_outage(Fault.refused())
    with pytest.raises(TokenEndpointError) as info:
        await session.atoken()
    assert info.value.error_class is ErrorClass.NETWORK
    assert sum(clock.sleeps) < 2.0
    assert idp.hits == len(clock.sleeps) + 1 == info.value.attempts
    await session.aclose()


def test_attempts_are_limited(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock, attempts=3, deadline=1000)
    idp.set_outage(Fault.timeout())
    with pytest.raises(TokenEndpointError, match="timed out") as info:
        session.token()
    assert info.value.error_class is ErrorClass.NETWORK
    assert info.value.attempts == 3
    assert idp.hits == 3
    assert len(clock.sleeps) == 2


def test_attempt_timeout_is_cut_to_the_deadline(clock: FakeClock, idp: FakeIdP) -> None:
    timeouts: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return idp.handle(request)

    idp.fail_next(2, Fault(status=429, headers={"retry-after": "4"}))
    session = Session(
        cc_session(idp, clock).source,
        clock=clock,
        transport=httpx.MockTransport(handler),
        retry=TokenRetry(deadline=10, attempt_timeout=5),
    )
    session.token()
    assert [t["read"] for t in timeouts] == [5, 5, 2]  # 10 s deadline - 8 s slept
    assert clock.sleeps == [4.0, 4.0]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.oauth("invalid_grant"),
        Fault.oauth("invalid_client", status=401),
        Fault.oauth("temporarily_unavailable"),
        Fault.oauth("unauthorized_client", status=403),
    ],
    ids=["invalid_grant", "invalid_client", "temporarily_unavailable", "unauthorized_client"],
)
def test_oauth_errors_are_not_retried(clock: FakeClock, idp: FakeIdP, fault: Fault) -> None:
    session = session_for(idp, clock)
    idp.fail_next(1, fault)
    with pytest.raises(OAuthError) as info:
        session.token()
    assert idp.hits == 1
    assert clock.sleeps == []
    assert info.value.status_code == fault.status


def test_real_invalid_grant_is_not_retried(clock: FakeClock, idp: FakeIdP) -> None:
    session = rt_session(idp, clock, refresh_token="rt_unknown_to_the_idp")
    with pytest.raises(OAuthError) as info:
        session.token()
    assert info.value.error == "invalid_grant"
    assert info.value.permanent
    assert idp.hits == 1
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_invalid_grant_is_not_retried_async(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock)
    idp.fail_next(1, Fault.oauth("invalid_grant"))
    with pytest.raises(OAuthError):
        await session.atoken()
    assert idp.hits == 1
    assert clock.sleeps == []
    await session.aclose()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=404, body="not here", content_type="text/plain"),
        Fault(status=400, body="<html/>", content_type="text/html"),
    ],
    ids=["404-text", "400-html"],
)
def test_other_4xx_without_oauth_body_are_not_retried(
    clock: FakeClock, idp: FakeIdP, fault: Fault
) -> None:
    session = session_for(idp, clock)
    idp.fail_next(1, fault)
    with pytest.raises(TokenEndpointError) as info:
        session.token()
    assert info.value.error_class is ErrorClass.CLIENT
    assert info.value.status_code == fault.status
    assert idp.hits == 1


def test_malformed_success_is_not_retried(clock: FakeClock, idp: FakeIdP) -> None:
    session = session_for(idp, clock)
    idp.fail_next(1, Fault(status=200, body={"token": "nope"}))
    with pytest.raises(TokenResponseError):
        session.token()
    assert idp.hits == 1
    # ... and the next call tries again and succeeds
    assert idp.validate(session.token())
    assert idp.hits == 2


def test_backoff_jitter_uses_the_seeded_rng() -> None:
    # two sessions with the same seed draw the same jitter; a different seed differs
    def sleeps(seed: int) -> list[float]:
        c = FakeClock()
        idp = FakeIdP(clock=c)
        idp.fail_next(3, Fault(status=500))
        cc_session(idp, c, retry=TokenRetry(deadline=1000), seed=seed).token()
        return c.sleeps

    assert sleeps(3) == sleeps(3)
    assert sleeps(3) != sleeps(4)
    assert len(sleeps(5)) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_the_default_retry_rides_out_a_ten_second_idp_restart(
    clock: FakeClock, idp: FakeIdP, mode: str, seed: int
) -> None:
    """Connection refused for 10 s (on the fake clock): the default TokenRetry
    keeps trying within its deadline instead of giving up after a second."""
    outage_ends = clock.monotonic() + 10.0

    def handle(request: httpx.Request) -> httpx.Response:
        if clock.monotonic() < outage_ends:
            return Fault.refused().response(request)
        return idp.handle(request)

    async def ahandle(request: httpx.Request) -> httpx.Response:
        return handle(request)

    session = Session(
        ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=httpx.MockTransport(handle),
        async_transport=httpx.MockTransport(ahandle),
        seed=seed,
    )
    token = session.token() if mode == "sync" else await session.atoken()
    assert idp.validate(token)
    assert sum(clock.sleeps) >= 10.0  # it waited the outage out...
    assert sum(clock.sleeps) <= TokenRetry().deadline  # ...within the deadline
    assert len(clock.sleeps) < TokenRetry().attempts
    await session.aclose()

"""The resilience layers as wired into authpulse.Client / AsyncClient."""

from __future__ import annotations

from typing import Any

import pytest

import authpulse
from authpulse import (
    BreakerPolicy,
    CircuitOpenError,
    ClientCredentials,
    RetryPolicy,
    Session,
)
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


def make(
    idp: FakeIdP, clock: FakeClock, **session_kwargs: Any
) -> tuple[Session, list[tuple[str, dict[str, Any]]]]:
    s = Session(
        ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        **session_kwargs,
    )
    events: list[tuple[str, dict[str, Any]]] = []
    s.add_listener(lambda kind, fields: events.append((kind, fields)))
    return s, events


def test_api_5xx_is_retried_and_reported(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s, events = make(idp, clock)
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport) as c:
        assert c.get("/x").status_code == 200
        api.fail_next(2, Fault(status=503))
        r = c.get("/y")
        assert r.status_code == 200
        info = r.extensions["authpulse_retry"]
        assert info.attempts == 3
    assert [k for k, _ in events].count("api_retry_scheduled") == 2
    assert s.health().score == 100
    assert all(sleep > 0 for sleep in clock.sleeps)  # backoff slept on the injected clock


def test_post_is_not_retried_on_5xx(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s, _ = make(idp, clock)
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport) as c:
        c.get("/warm")
        hits = api.hits
        api.fail_next(1, Fault(status=503))
        assert c.post("/orders", json={"n": 1}).status_code == 503
        assert api.hits == hits + 1


def test_retry_can_be_disabled(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s, _ = make(idp, clock)
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport, retry=False) as c:
        c.get("/warm")
        api.fail_next(1, Fault(status=503))
        assert c.get("/x").status_code == 503


def test_breaker_opens_fails_fast_and_shows_in_health(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock
) -> None:
    s, events = make(idp, clock)
    policy = BreakerPolicy(minimum_calls=4, failure_rate=0.5, window=60, open_for=30)
    with authpulse.Client(
        s, base_url=api.base_url, transport=api.transport, retry=False, breaker=policy
    ) as c:
        c.get("/warm")
        api.set_outage(Fault(status=500))
        for _ in range(3):
            assert c.get("/x").status_code == 500
        hits = api.hits
        with pytest.raises(CircuitOpenError):
            c.get("/x")
        assert api.hits == hits  # failed fast: the upstream was not called
        report = s.health()
        assert any(comp.name == "breaker" and comp.penalty == 25 for comp in report.components)
        assert any(k == "api_breaker_state" for k, _ in events)
        # half-open after open_for; a good probe closes it again
        api.set_outage(None)
        clock.advance(31)
        assert c.get("/x").status_code == 200
        assert s.breaker_state() == "closed"
        assert not any(comp.name == "breaker" for comp in s.health().components)


def test_token_endpoint_breaker(idp: FakeIdP, clock: FakeClock) -> None:
    s, _ = make(
        idp,
        clock,
        breaker=BreakerPolicy(minimum_calls=2, failure_rate=0.5, open_for=30),
        retry=authpulse.TokenRetry(attempts=2),
    )
    idp.set_outage(Fault(status=503))
    with pytest.raises(authpulse.TokenEndpointError):
        s.token()
    hits = idp.hits
    with pytest.raises(CircuitOpenError):
        s.token()  # the IdP is not hammered while the breaker is open
    assert idp.hits == hits
    assert s.breaker_state() == "open"
    idp.set_outage(None)
    clock.advance(31)
    assert idp.validate(s.token())
    assert s.breaker_state() == "closed"


@pytest.mark.anyio
async def test_async_client_retries(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s, events = make(idp, clock)
    async with authpulse.AsyncClient(
        s,
        base_url=api.base_url,
        transport=api.async_transport,
        retry=RetryPolicy(attempts=3),
        breaker=False,
    ) as c:
        api.fail_next(2, Fault(status=502))
        assert (await c.get("/x")).status_code == 200
        api.set_outage(Fault.refused())
        with pytest.raises(authpulse.RequestFailedError) as info:
            await c.get("/y")
        assert info.value.error_class is authpulse.ErrorClass.NETWORK
        assert info.value.attempts == 3
    assert [k for k, _ in events].count("api_retry_scheduled") == 4


@pytest.mark.anyio
async def test_async_client_breaker(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s, _ = make(idp, clock)
    async with authpulse.AsyncClient(
        s,
        base_url=api.base_url,
        transport=api.async_transport,
        retry=False,
        breaker=BreakerPolicy(minimum_calls=3, failure_rate=0.5),
    ) as c:
        api.set_outage(Fault.refused())
        for _ in range(3):
            with pytest.raises(authpulse.RequestFailedError):
                await c.get("/x")
        hits = api.hits
        with pytest.raises(CircuitOpenError):
            await c.get("/x")
        assert api.hits == hits
    assert s.breaker_state() == "open"


def test_bad_resilience_arguments(idp: FakeIdP, clock: FakeClock) -> None:
    s, _ = make(idp, clock)
    with pytest.raises(authpulse.ConfigurationError):
        authpulse.Client(s, retry="yes")  # type: ignore[arg-type]
    with pytest.raises(authpulse.ConfigurationError):
        authpulse.Client(s, breaker=3)  # type: ignore[arg-type]
    with pytest.raises(authpulse.ConfigurationError):
        authpulse.Client(s, cache="big")  # type: ignore[arg-type]
    with pytest.raises(authpulse.ConfigurationError):
        Session(ClientCredentials(idp.token_url, "c", "s"), breaker=1)  # type: ignore[arg-type]


def test_cache_serves_stale_while_the_api_is_down(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock
) -> None:
    s, events = make(idp, clock)
    policy = authpulse.CachePolicy(ttl=30, stale_while_revalidate=60, stale_if_error=3600)
    with authpulse.Client(
        s, base_url=api.base_url, transport=api.transport, cache=policy, retry=False
    ) as c:
        first = c.get("/catalog")
        assert first.extensions["authpulse_cache"] == "miss"
        assert c.get("/catalog").extensions["authpulse_cache"] == "hit"
        api.set_outage(Fault(status=503))
        clock.advance(600)  # past fresh and stale-while-revalidate, inside stale-if-error
        r = c.get("/catalog")
        assert r.status_code == 200
        assert r.extensions["authpulse_cache"] == "stale-if-error"
        assert r.json() == first.json()
        assert c.cache is not None
        assert c.cache.stats().stale_if_error_served == 1
    report = s.health()
    assert any(comp.name == "cache" for comp in report.components)
    assert any(k == "api_stale_served" for k, _ in events)


def test_two_identities_never_share_a_cached_response(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock
) -> None:
    shared = authpulse.ResponseCache()
    a, _ = make(idp, clock, identity="alice")
    b, _ = make(idp, clock, identity="bob")
    with (
        authpulse.Client(a, base_url=api.base_url, transport=api.transport, cache=shared) as ca,
        authpulse.Client(b, base_url=api.base_url, transport=api.transport, cache=shared) as cb,
    ):
        assert ca.get("/me").extensions["authpulse_cache"] == "miss"
        assert cb.get("/me").extensions["authpulse_cache"] == "miss"
        assert ca.get("/me").extensions["authpulse_cache"] == "hit"
        assert cb.get("/me").extensions["authpulse_cache"] == "hit"
    assert shared.stats().entries == 2

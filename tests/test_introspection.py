"""IntrospectionProbe (RFC 7662): the IdP's word on a token, as a heartbeat
that feeds health; against the FakeIdP on a FakeClock."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authpulse import (
    ConfigurationError,
    Introspection,
    IntrospectionError,
    IntrospectionProbe,
    ManagedSession,
    RefreshTokenGrant,
    SessionManager,
    TickReport,
)
from authpulse._core.introspection import parse_introspection
from authpulse.testing import FakeClock, FakeIdP, Fault

HEARTBEAT = 300.0


@pytest.fixture
def idp(clock: FakeClock) -> FakeIdP:
    return FakeIdP(clock=clock, access_ttl=3600, clients={"client": "secret", "rs": "rs-pw"})


def user(m: SessionManager, idp: FakeIdP, probe: IntrospectionProbe) -> ManagedSession:
    grant = RefreshTokenGrant(
        idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
    )
    ms = m.create_session("alice", grant, probe=probe)
    ms.session.token()
    return ms


async def _atick(m: SessionManager) -> TickReport:
    return await m.atick()


def parts(m: SessionManager, ms: ManagedSession) -> dict[str, str]:
    return {c.name: c.reason for c in m.health(ms.id).components}


@pytest.mark.parametrize("use_async", [False, True])
def test_active_then_inactive_in_the_health_report(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, use_async: bool
) -> None:
    probe = IntrospectionProbe(idp.introspection_url, "rs", "rs-pw")
    ms = user(manager, idp, probe)

    def tick() -> None:
        clock.advance(HEARTBEAT)
        report = asyncio.run(_atick(manager)) if use_async else manager.tick()
        assert report.heartbeats == 1
        assert report.heartbeat_failures == 0

    tick()
    verdict = probe.last[ms.id]
    assert verdict.active is True
    assert verdict.client_id == "client"
    assert verdict.exp is not None
    assert verdict.exp > clock.now()
    assert "introspection" not in parts(manager, ms)
    idp.revoke(ms.session.token_set.refresh_token.get_secret_value())  # type: ignore[union-attr]
    tick()
    assert probe.last[ms.id] == Introspection(active=False)
    assert parts(manager, ms)["introspection"] == "the IdP says the token is inactive"
    assert manager.health(ms.id).score <= 70
    assert idp.introspections == 2


def test_a_new_token_clears_the_verdict(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    probe = IntrospectionProbe(idp.introspection_url, "rs", "rs-pw")
    ms = user(manager, idp, probe)
    idp.expire_all()  # the IdP forgets the access token; the grant still works
    assert probe(ms) is True
    assert "introspection" in parts(manager, ms)
    ms.session.force_refresh()
    assert "introspection" not in parts(manager, ms)


def test_without_a_client_id_it_authenticates_as_the_session(
    manager: SessionManager, idp: FakeIdP
) -> None:
    probe = IntrospectionProbe(idp.introspection_url)
    ms = user(manager, idp, probe)
    assert asyncio.run(probe.acall(ms)) is True
    assert probe.last[ms.id].active is True


@pytest.mark.parametrize(
    "fault",
    [Fault(status=503), Fault.refused(), Fault(status=200, body={"activ": True})],
)
def test_a_failed_introspection_is_a_failed_heartbeat(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, fault: Fault
) -> None:
    probe = IntrospectionProbe(idp.introspection_url, "rs", "rs-pw")
    ms = user(manager, idp, probe)
    idp.fail_next(1, fault)
    with pytest.raises(IntrospectionError, match="introspection"):
        probe(ms)
    idp.fail_next(1, fault)
    clock.advance(HEARTBEAT)
    assert manager.tick().heartbeat_failures == 1
    assert "heartbeat" in parts(manager, ms)
    assert "introspection" not in parts(manager, ms)


def test_wrong_credentials_and_no_secret_in_the_error(
    manager: SessionManager, idp: FakeIdP
) -> None:
    probe = IntrospectionProbe(idp.introspection_url, "rs", "wrong-but-secret-pw")
    ms = user(manager, idp, probe)
    access = ms.session.token()
    idp.fail_next(1, Fault.oauth("invalid_client", 401, description=f"echo {access}"))
    with pytest.raises(IntrospectionError) as info:
        probe(ms)
    assert info.value.status_code == 401
    text = f"{info.value} {info.value!r} {probe!r}"
    assert access not in text
    assert "wrong-but-secret-pw" not in text
    with pytest.raises(IntrospectionError, match="HTTP 401"):
        probe(ms)  # the fake refuses the wrong secret itself


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="IntrospectionProbe url"):
        IntrospectionProbe("http://idp.example/introspect")
    with pytest.raises(ConfigurationError, match="client_id"):
        IntrospectionProbe("https://idp.example/introspect", client_secret="x")


def test_a_session_without_a_token_is_not_asked_about(
    manager: SessionManager, idp: FakeIdP
) -> None:
    probe = IntrospectionProbe(idp.introspection_url, "rs", "rs-pw")
    grant = RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token="rt")
    ms = manager.create_session("bob", grant, probe=probe)
    assert probe(ms) is True
    assert idp.introspections == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(st.integers(min_value=100, max_value=599), json_values)
def test_any_answer_is_a_verdict_or_a_typed_error(status: int, body: object) -> None:
    content = json.dumps(body).encode()
    valid = status == 200 and isinstance(body, dict) and isinstance(body.get("active"), bool)
    if not valid:
        with pytest.raises(IntrospectionError, match="introspection endpoint"):
            parse_introspection(status, content, endpoint="https://idp.test/introspect")
        return
    assert isinstance(body, dict)
    verdict = parse_introspection(status, content, endpoint="https://idp.test/introspect")
    assert verdict.active is body["active"]

"""issuer= and client_auth= on the sources found by discovery last: the browser
login (its three endpoints and the RFC 9207 rule), token exchange and the
introspection probe, against the fake IdP and its authorization server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from _support import RSA_PEM, RSA_PUBLIC_PEM
from authpulse import (
    AuthorizationCodeLogin,
    AuthorizationError,
    ClientCredentials,
    ConfigurationError,
    DiscoveryError,
    IntrospectionProbe,
    PrivateKeyJWT,
    RefreshTokenGrant,
    Session,
    SessionManager,
    TickReport,
    TokenExchange,
)
from authpulse.testing import FakeAuthorizationServer, FakeClock, FakeIdP

ISSUER = "https://idp.test"
CLIENT = "native-app"
pytestmark = pytest.mark.usefixtures("fresh_metadata_cache")


class World:
    def __init__(self, *, send_iss: bool = True, **idp: Any) -> None:
        self.clock = FakeClock()
        idp.setdefault("clients", {CLIENT: "", "ex": "ex-secret", "svc": "svc-secret"})
        self.idp = FakeIdP(clock=self.clock, issuer=ISSUER, access_ttl=600, **idp)
        self.server = FakeAuthorizationServer(self.idp, send_iss=send_iss)

    def login(self, **kw: Any) -> AuthorizationCodeLogin:
        args: dict[str, Any] = {
            "issuer": ISSUER,
            "client_id": CLIENT,
            "scope": "openid offline_access",
            "open_browser": self.server.browse,
            "show_url": lambda url: None,
            "clock": self.clock,
            "transport": self.server.transport,
            "async_transport": self.server.async_transport,
            **kw,
        }
        return AuthorizationCodeLogin(**args)


# -- AuthorizationCodeLogin(issuer=) ---------------------------------------------------


def test_a_browser_login_from_the_issuer_alone() -> None:
    world = World()
    login = world.login()
    before = login.authorization_url
    assert before is None
    assert "issuer='https://idp.test'" in repr(login)
    started = login.start()
    assert started.authorization_url.startswith(world.server.authorization_url + "?")
    assert login.authorization_url == world.server.authorization_url
    session = login.wait()
    grant = session.source
    assert isinstance(grant, RefreshTokenGrant)
    assert grant.token_url == world.idp.token_url
    assert grant.revocation_url == world.idp.revocation_url
    assert world.server.exchanges == 1
    session.force_refresh()
    assert session.revoke() >= 1  # at the discovered revocation endpoint
    assert world.idp.revocations >= 1
    assert world.idp.discovery_calls == 1
    session.close()


@pytest.mark.anyio
async def test_an_async_browser_login_from_the_issuer_alone() -> None:
    world = World()
    login = world.login()
    await login.astart()
    session = await login.await_session()
    assert world.idp.validate(await session.atoken())
    assert world.idp.discovery_calls == 1
    await session.aclose()


def test_iss_is_required_as_the_metadata_says() -> None:
    world = World(send_iss=True)  # the metadata promises iss ...

    def browser(url: str) -> None:
        world.server.send_iss = False  # ... and the redirect comes without it
        world.server.browse(url)

    login = world.login(open_browser=browser)
    login.start()
    with pytest.raises(AuthorizationError, match="no iss"):
        login.wait()
    login = world.login(open_browser=browser, require_iss=False)  # given explicitly, kept
    login.start()
    login.wait().close()


def test_no_promise_of_iss_accepts_a_redirect_without_it() -> None:
    world = World(send_iss=False)
    login = world.login()
    login.start()
    login.wait().close()


def test_urls_and_issuer_keep_todays_behaviour_without_discovery() -> None:
    world = World()
    login = world.login(
        authorization_url=world.server.authorization_url, token_url=world.idp.token_url
    )
    login.start()
    login.wait().close()
    assert world.idp.discovery_calls == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"issuer": None}, "exactly one of token_url"),
        ({"authorization_url": f"{ISSUER}/authorize"}, "both authorization_url and token_url"),
        ({"token_url": f"{ISSUER}/token"}, "both authorization_url and token_url"),
        ({"issuer": "http://idp.example"}, "https"),
        ({"issuer": None, "require_iss": True, "authorization_url": f"{ISSUER}/a",
          "token_url": f"{ISSUER}/t"}, "require_iss needs"),
    ],
)  # fmt: skip
def test_bad_login_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        World().login(**kwargs)


def test_metadata_without_an_authorization_endpoint_is_a_discovery_error() -> None:
    world = World()
    login = world.login(transport=world.idp.transport)  # the IdP alone: no authorization server
    with pytest.raises(DiscoveryError) as info:
        login.start()
    assert info.value.field == "authorization_endpoint"


def test_a_browser_login_with_private_key_jwt() -> None:
    """The code exchange, the refreshes and the revocation are each
    authenticated by a signed assertion (a public client would be refused)."""
    world = World(clients={"other": "x"}, client_keys={CLIENT: RSA_PUBLIC_PEM})
    auth = PrivateKeyJWT(RSA_PEM, kid="k1")
    login = world.login(client_auth=auth)
    login.start()
    session = login.wait()
    assert session.source.client_auth is auth  # type: ignore[attr-defined]
    session.force_refresh()
    assert session.revoke() >= 1
    assert world.idp.revocations >= 1
    assert "BEGIN" not in repr(login) + repr(session.source) + repr(auth)
    session.close()


# -- TokenExchange(issuer=) ------------------------------------------------------------


def _subject(world: World) -> Session:
    return Session(
        ClientCredentials(world.idp.token_url, "svc", "svc-secret"),
        clock=world.clock,
        transport=world.idp.transport,
        async_transport=world.idp.async_transport,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_token_exchange_from_the_issuer(mode: str) -> None:
    world = World()
    grant = TokenExchange(
        issuer=ISSUER, client_id="ex", client_secret="ex-secret", subject_token=_subject(world)
    )
    assert grant.token_url == ""
    assert "issuer='https://idp.test'" in repr(grant)
    session = Session(
        grant,
        clock=world.clock,
        transport=world.idp.transport,
        async_transport=world.idp.async_transport,
    )

    async def atoken() -> str:
        return await session.atoken()

    token = asyncio.run(atoken()) if mode == "async" else session.token()
    assert world.idp.validate(token)
    assert world.idp.exchanges == 1
    assert grant.token_url == world.idp.token_url  # kept, though a copy made the request
    assert grant.revocation_url == world.idp.revocation_url
    session.force_refresh()
    assert world.idp.discovery_calls == 1
    session.close()


def test_token_exchange_with_private_key_jwt() -> None:
    world = World(client_keys={"ex-signed": RSA_PUBLIC_PEM})
    grant = TokenExchange(
        issuer=ISSUER,
        client_id="ex-signed",
        client_auth=PrivateKeyJWT(RSA_PEM, assertion_audience="issuer"),
        subject_token=SecretStr(_subject(world).token()),
    )
    with Session(grant, clock=world.clock, transport=world.idp.transport) as session:
        assert world.idp.validate(session.token())
    assert world.idp.exchanges == 1


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"token_url": f"{ISSUER}/token", "issuer": ISSUER}],
)
def test_token_exchange_needs_exactly_one_of_token_url_and_issuer(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of token_url"):
        TokenExchange(client_id="ex", subject_token=SecretStr("s"), **kwargs)


# -- IntrospectionProbe(issuer=) -------------------------------------------------------


async def _atick(manager: SessionManager) -> TickReport:
    return await manager.atick()


@pytest.mark.parametrize("use_async", [False, True])
def test_introspection_probe_from_the_issuer(use_async: bool) -> None:
    world = World(clients={"client": "secret", "rs": "rs-pw"})
    probe = IntrospectionProbe(issuer=ISSUER, client_id="rs", client_secret="rs-pw")
    before = probe.url
    assert before is None
    assert "issuer='https://idp.test'" in repr(probe)
    manager = SessionManager(
        clock=world.clock, transport=world.idp.transport, async_transport=world.idp.async_transport
    )
    try:
        grant = RefreshTokenGrant(
            world.idp.token_url, "client", "secret", refresh_token=world.idp.issue_refresh_token()
        )
        ms = manager.create_session("alice", grant, probe=probe)
        ms.session.token()
        for _ in range(2):
            world.clock.advance(300.0)
            report = asyncio.run(_atick(manager)) if use_async else manager.tick()
            assert (report.heartbeats, report.heartbeat_failures) == (1, 0)
        assert probe.url == world.idp.introspection_url
        assert probe.last[ms.id].active is True
        assert world.idp.introspections == 2
        assert world.idp.discovery_calls == 1
    finally:
        manager.shutdown()


def test_introspection_probe_as_the_sessions_own_signed_client() -> None:
    world = World(clients={"other": "x"}, client_keys={"svc": RSA_PUBLIC_PEM})
    manager = SessionManager(clock=world.clock, transport=world.idp.transport)
    try:
        grant = ClientCredentials(
            issuer=ISSUER, client_id="svc", client_auth=PrivateKeyJWT(RSA_PEM)
        )
        ms = manager.create_session("svc", grant, probe=IntrospectionProbe(issuer=ISSUER))
        ms.session.token()
        world.clock.advance(300.0)
        report = manager.tick()
        assert (report.heartbeats, report.heartbeat_failures) == (1, 0)
        assert world.idp.introspections == 1
    finally:
        manager.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of url or issuer"),
        ({"url": f"{ISSUER}/introspect", "issuer": ISSUER}, "exactly one of url or issuer"),
        ({"issuer": "ftp://idp.test"}, "issuer"),
        ({"issuer": ISSUER, "client_auth": PrivateKeyJWT(RSA_PEM)}, "needs its client_id"),
    ],
)
def test_bad_probe_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        IntrospectionProbe(**kwargs)

"""authpulse.Client / AsyncClient: real httpx clients carrying a Session."""

from __future__ import annotations

import pytest

from _support import cc_session
from authpulse import AsyncClient, Client, ConfigurationError, TokenSet
from authpulse._runtime.backend import httpx
from authpulse._sessions.auth import SessionAuth
from authpulse.testing import FakeAPI, FakeClock, FakeIdP


def test_is_a_real_httpx_client(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        assert isinstance(client, httpx.Client)
        assert isinstance(client.auth, SessionAuth)
        assert client.session is session
        r = client.get("/items", params={"page": 2})
        assert r.status_code == 200
        assert r.json() == {"ok": True, "path": "/items"}
    assert idp.hits == 1


@pytest.mark.anyio
async def test_async_client_is_a_real_httpx_client(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    async with AsyncClient(session, base_url=api.base_url, transport=api.async_transport) as c:
        assert isinstance(c, httpx.AsyncClient)
        assert c.session is session
        assert (await c.get("/items")).status_code == 200
        t = await c.force_refresh()
        assert isinstance(t, TokenSet)
        assert c.health().score == 100
    assert idp.hits == 2
    await session.aclose()


def test_default_origin_is_the_base_url(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        client.get("/items")
        client.get("https://elsewhere.test/public")
        client.get("http://api.test/public")  # same host, other scheme: another origin
    assert api.authorization_seen == [True, False, False]


def test_session_origins_win_over_base_url(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock, origins=["https://other.test"])
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        client.get("/public")
        client.get("https://other.test/items")
    assert api.authorization_seen == [False, True]


def test_without_base_url_or_origins_every_origin(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    with Client(session, transport=api.transport) as client:
        client.get("https://a.test/x")
        client.get("https://b.test/x")
    assert api.authorization_seen == [True, True]


def test_auth_argument_is_refused(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock)
    with pytest.raises(ConfigurationError, match="auth="):
        Client(session, auth=("user", "pass"))
    with pytest.raises(ConfigurationError, match="auth="):
        AsyncClient(session, auth=("user", "pass"))


def test_first_argument_must_be_a_session(idp: FakeIdP) -> None:
    with pytest.raises(ConfigurationError, match="Session"):
        Client("not a session")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Session"):
        AsyncClient(object())  # type: ignore[arg-type]


def test_force_refresh_and_health(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        assert client.health().score < 100  # no token yet
        client.get("/items")
        before = session.token()
        t = client.force_refresh()
        assert t.access_token.get_secret_value() != before
        assert client.health().score == 100
        assert client.get("/items").request.headers["authorization"] == (
            f"Bearer {t.access_token.get_secret_value()}"
        )
    assert idp.hits == 2


def test_401_replay_through_the_client(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        client.get("/items")
        idp.expire_all()
        assert client.get("/items").status_code == 200
    assert api.unauthorized == 1
    assert idp.hits == 2


def test_httpx_kwargs_are_passed_through(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with Client(
        session,
        base_url=api.base_url,
        transport=api.transport,
        headers={"X-Trace": "abc"},
        timeout=3.0,
    ) as client:
        r = client.get("/items")
    assert r.request.headers["x-trace"] == "abc"
    assert client.timeout.read == 3.0


def test_sync_join_background_waits_for_a_stale_token_refresh(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        client.get("/items")
        clock.advance(450)  # inside the refresh window, not expired: a background refresh
        assert client.get("/items").status_code == 200
        client.join_background(5)
        assert idp.hits == 2
    session.close()


@pytest.mark.anyio
async def test_async_join_background_waits_for_a_stale_token_refresh(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    # as the sync client's: join_background covers token refreshes, not only the cache
    session = cc_session(idp, clock)
    async with AsyncClient(session, base_url=api.base_url, transport=api.async_transport) as c:
        await c.get("/items")
        clock.advance(450)  # inside the refresh window, not expired: a background refresh
        assert (await c.get("/items")).status_code == 200
        await c.join_background()
        assert idp.hits == 2
    await session.aclose()


@pytest.mark.parametrize("backend", ["httpx", "httpx2"])
def test_backend_classes_are_made_once_and_found_by_their_names(backend: str) -> None:
    import importlib
    import inspect

    import authpulse
    from authpulse._http import client as _client
    from authpulse._runtime.backend import DEFAULT_BACKEND

    module = importlib.import_module(f"authpulse.{backend}")
    library = importlib.import_module(backend)
    for name, mixin in (
        ("Client", _client.SessionClientMixin),
        ("AsyncClient", _client.AsyncSessionClientMixin),
    ):
        cls = getattr(module, name)
        assert cls.__module__ == f"authpulse.{backend}"
        assert cls.__qualname__ == name
        assert issubclass(cls, mixin)
        assert issubclass(cls, getattr(library, name))
        assert f"``{backend}.{name}``" in (inspect.getdoc(cls) or "")
        if backend == DEFAULT_BACKEND:
            assert getattr(authpulse, name) is cls

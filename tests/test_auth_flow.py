"""SessionAuth: Bearer header, 401 → one refresh and one replay, origins, redirects."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from _support import cc_session, rt_session
from authpulse import OAuthError, Session
from authpulse._runtime.backend import httpx
from authpulse._sessions.auth import SessionAuth
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


def sync_client(session: Session, api: FakeAPI, *, follow_redirects: bool = False) -> httpx.Client:
    return httpx.Client(
        auth=session.auth(),
        base_url=api.base_url,
        transport=api.transport,
        follow_redirects=follow_redirects,
    )


def async_client(
    session: Session, api: FakeAPI, *, follow_redirects: bool = False
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        auth=session.auth(),
        base_url=api.base_url,
        transport=api.async_transport,
        follow_redirects=follow_redirects,
    )


class FirstCallRejected:
    """An API handler that answers 401 to the first request, 200 afterwards."""

    def __init__(self) -> None:
        self.calls = 0
        self.headers: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.headers.append(request.headers.get("authorization"))
        if self.calls == 1:
            return httpx.Response(401, json={"error": "invalid_token"})
        return httpx.Response(200, json={"ok": True, "body": request.content.decode()})


# ------------------------------------------------------------------- basics


def test_bearer_header_is_attached(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    with sync_client(session, api) as client:
        r = client.get("/items")
    assert r.status_code == 200
    assert r.request.headers["authorization"] == f"Bearer {session.token()}"
    assert api.authorization_seen == [True]
    assert idp.hits == 1


@pytest.mark.anyio
async def test_bearer_header_is_attached_async(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    async with async_client(session, api) as client:
        r = await client.get("/items")
    assert r.status_code == 200
    assert r.request.headers["authorization"] == f"Bearer {await session.atoken()}"
    await session.aclose()


def test_a_non_bearer_token_type_is_never_used_as_scheme(clock: FakeClock, api: FakeAPI) -> None:
    """RFC 6749 §7.1: a token of a type the client does not understand is not
    used. TokenSet itself refuses one, whoever makes it (parser, store, a callable)."""
    import pydantic
    from pydantic import SecretStr

    from authpulse import CallableSource, RefreshError, TokenSet

    def dpop(cur: TokenSet | None) -> TokenSet:
        return TokenSet(
            access_token=SecretStr("at_dpop"),
            token_type="DPoP",
            issued_at=clock.now(),
            expires_at=clock.now() + 600,
        )

    with pytest.raises(pydantic.ValidationError, match="only Bearer"):
        dpop(None)
    lower = TokenSet(access_token=SecretStr("at"), token_type="bearer", issued_at=1, expires_at=2)
    assert lower.token_type == "Bearer"
    session = Session(CallableSource(dpop), clock=clock)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(auth=session.auth(), transport=transport) as client,
        pytest.raises(RefreshError),
    ):
        client.get("https://api.test/x")
    assert seen == []


def test_auth_repr_names_the_session_only(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock, name="orders")
    session.token()
    auth = session.auth()
    assert isinstance(auth, SessionAuth)
    assert repr(auth) == "<SessionAuth session='orders'>"


# ------------------------------------------------------------------ 401 replay


def test_401_then_200_refreshes_and_replays_once(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = rt_session(idp, clock)
    with sync_client(session, api) as client:
        assert client.get("/warmup").status_code == 200
        old = session.token()
        idp.expire_all()  # the API now rejects the current token (a key rotation)
        r = client.get("/items")
    assert r.status_code == 200
    assert api.calls == 3  # warm-up, rejected, replay
    assert api.unauthorized == 1
    assert idp.token_calls == 2
    assert r.request.headers["authorization"] != f"Bearer {old}"
    assert r.request.headers["authorization"] == f"Bearer {session.token()}"
    assert idp.reuse_detected == 0


@pytest.mark.anyio
async def test_401_then_200_refreshes_and_replays_once_async(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = rt_session(idp, clock)
    async with async_client(session, api) as client:
        assert (await client.get("/warmup")).status_code == 200
        idp.expire_all()
        r = await client.get("/items")
    assert r.status_code == 200
    assert api.calls == 3
    assert api.unauthorized == 1
    assert idp.token_calls == 2
    await session.aclose()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"content": b"raw-bytes"}, "raw-bytes"),
        ({"json": {"a": 1}}, '{"a":1}'),
        ({"data": {"field": "value"}}, "field=value"),
    ],
    ids=["bytes", "json", "form"],
)
def test_resendable_bodies_are_replayed(
    clock: FakeClock, idp: FakeIdP, kwargs: dict[str, object], expected: str
) -> None:
    handler = FirstCallRejected()
    api = FakeAPI(idp, handler=handler)
    session = cc_session(idp, clock)
    with sync_client(session, api) as client:
        r = client.post("/upload", **kwargs)  # type: ignore[arg-type]
    # FakeAPI answers 200 through the handler; the handler itself says 401 first
    assert r.status_code == 200
    assert handler.calls == 2
    assert r.json()["body"] == expected
    assert handler.headers[0] != handler.headers[1]
    assert idp.token_calls == 2


def test_no_loop_on_repeated_401(clock: FakeClock, idp: FakeIdP) -> None:
    api = FakeAPI(idp, handler=lambda r: httpx.Response(401, json={"error": "nope"}))
    session = cc_session(idp, clock)
    with sync_client(session, api) as client:
        r = client.get("/forbidden-forever")
    assert r.status_code == 401
    assert api.calls == 2  # the request and its one replay
    assert idp.token_calls == 2  # the first token and one refresh


@pytest.mark.anyio
async def test_no_loop_on_repeated_401_async(clock: FakeClock, idp: FakeIdP) -> None:
    api = FakeAPI(idp, handler=lambda r: httpx.Response(401))
    session = cc_session(idp, clock)
    async with async_client(session, api) as client:
        r = await client.get("/forbidden-forever")
    assert r.status_code == 401
    assert api.calls == 2
    assert idp.token_calls == 2
    await session.aclose()


def test_no_refresh_if_the_rejected_token_is_no_longer_current(
    clock: FakeClock, idp: FakeIdP
) -> None:
    holder: dict[str, Session] = {}
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            holder["s"].force_refresh()  # someone else refreshed meanwhile ...
            return httpx.Response(401)  # ... and our (older) token is refused
        return httpx.Response(200)

    api = FakeAPI(idp, handler=handler)
    session = cc_session(idp, clock)
    holder["s"] = session
    first = session.token()
    with sync_client(session, api) as client:
        r = client.get("/items")
    assert r.status_code == 200
    assert idp.token_calls == 2  # the first token and the other refresh: none for the 401
    assert api.calls == 2  # replayed with the newer token
    assert r.request.headers["authorization"] == f"Bearer {session.token()}"
    assert session.token() != first


@pytest.mark.anyio
async def test_no_refresh_if_the_rejected_token_is_no_longer_current_async(
    clock: FakeClock, idp: FakeIdP
) -> None:
    session = cc_session(idp, clock)
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await session.aforce_refresh()
            return httpx.Response(401)
        return httpx.Response(200)

    await session.atoken()
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(auth=session.auth(), transport=transport) as client:
        r = await client.get("https://api.test/items")
    assert r.status_code == 200
    assert calls == 2
    assert idp.token_calls == 2
    await session.aclose()


def test_concurrent_401s_share_one_refresh(clock: FakeClock) -> None:
    idp = FakeIdP(clock=clock, access_ttl=600, latency=0.05)
    api = FakeAPI(idp)
    session = rt_session(idp, clock)
    session.token()
    idp.expire_all()
    barrier = threading.Barrier(16)
    with sync_client(session, api) as client:

        def worker() -> int:
            barrier.wait(timeout=10)
            return client.get("/items").status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: worker(), range(16)))
    assert statuses == [200] * 16
    assert idp.token_calls == 2  # the first token and exactly one refresh
    assert idp.reuse_detected == 0
    assert api.unauthorized == 16


def test_refresh_failure_after_401_is_a_typed_error(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = rt_session(idp, clock)
    session.token()
    idp.expire_all()
    idp.fail_next(1, Fault.oauth("invalid_grant"))
    with sync_client(session, api) as client, pytest.raises(OAuthError):
        client.get("/items")
    assert api.calls == 1
    # not poisoned: the next request refreshes and succeeds
    with sync_client(session, api) as client:
        assert client.get("/items").status_code == 200


# ----------------------------------------------------------- streaming bodies


class NetworkLikeTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Consumes a request body the way a socket transport does: once, unbuffered.

    (``httpx.MockTransport`` calls ``request.read()``, which buffers a generator
    body and so makes it re-sendable; a real transport does not.)
    Answers 401 to the first request and 200 afterwards.
    """

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def _answer(self, body: bytes) -> httpx.Response:
        self.bodies.append(body)
        return httpx.Response(401 if len(self.bodies) == 1 else 200)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        return self._answer(b"".join(request.stream))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        return self._answer(b"".join([chunk async for chunk in request.stream]))


def test_streaming_body_is_not_replayed(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock)
    transport = NetworkLikeTransport()
    produced = 0

    def body() -> Iterator[bytes]:
        nonlocal produced
        produced += 1
        yield b"chunk-1,"
        yield b"chunk-2"

    with httpx.Client(auth=session.auth(), transport=transport) as client:
        r = client.post("https://api.test/upload", content=body())
    assert r.status_code == 401  # handed back to the caller
    assert transport.bodies == [b"chunk-1,chunk-2"]  # sent once
    assert produced == 1
    assert idp.token_calls == 1  # no refresh either: it could not be used


def test_bytes_body_through_the_same_transport_is_replayed(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock)
    transport = NetworkLikeTransport()
    with httpx.Client(auth=session.auth(), transport=transport) as client:
        r = client.post("https://api.test/upload", content=b"payload")
    assert r.status_code == 200
    assert transport.bodies == [b"payload", b"payload"]
    assert idp.token_calls == 2


@pytest.mark.anyio
async def test_async_streaming_body_is_not_replayed(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock)
    transport = NetworkLikeTransport()

    async def body() -> AsyncIterator[bytes]:
        yield b"chunk-1,"
        await asyncio.sleep(0)
        yield b"chunk-2"

    async with httpx.AsyncClient(auth=session.auth(), transport=transport) as client:
        r = await client.post("https://api.test/upload", content=body())
    assert r.status_code == 401
    assert transport.bodies == [b"chunk-1,chunk-2"]
    assert idp.token_calls == 1
    await session.aclose()


# ------------------------------------------------------------ origins & redirects


def test_no_authorization_on_a_cross_origin_redirect(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    with sync_client(session, api, follow_redirects=True) as client:
        r = client.get("/redirect", params={"to": "https://other.test/public"})
    assert r.status_code == 200
    assert r.json()["public"] is True
    assert api.authorization_seen == [True, False]
    assert "authorization" not in r.request.headers


def test_authorization_kept_on_a_same_origin_redirect(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    with sync_client(session, api, follow_redirects=True) as client:
        r = client.get("/redirect", params={"to": "https://api.test/items"})
    assert r.status_code == 200
    assert api.authorization_seen == [True, True]


def test_401_from_a_foreign_redirect_target_does_not_refresh(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    """The other origin never saw our token: its 401 says nothing about it."""
    session = rt_session(idp, clock)
    with sync_client(session, api, follow_redirects=True) as client:
        r = client.get("/redirect", params={"to": "https://other.test/private"})
    assert r.status_code == 401
    assert api.authorization_seen == [True, False]  # no replay
    assert idp.token_calls == 1  # no refresh


@pytest.mark.anyio
async def test_401_from_a_foreign_redirect_target_does_not_refresh_async(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = rt_session(idp, clock)
    async with async_client(session, api, follow_redirects=True) as client:
        r = await client.get("/redirect", params={"to": "https://other.test/private"})
    assert r.status_code == 401
    assert api.authorization_seen == [True, False]
    assert idp.token_calls == 1
    await session.aclose()


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.test/x", True),
        ("https://api.test:443/x", True),
        ("https://API.test/x", True),
        ("http://api.test/x", False),  # scheme differs
        ("https://api.test:8443/x", False),  # port differs
        ("https://evil.test/x", False),
        ("https://api.test.evil.test/x", False),
        ("https://sub.api.test/x", False),
    ],
)
def test_authorization_only_to_configured_origins(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI, url: str, sent: bool
) -> None:
    session = cc_session(idp, clock, origins=["https://api.test"])
    with httpx.Client(auth=session.auth(), transport=api.transport) as client:
        r = client.get(url)
        r2 = client.get(url)  # the cached decision gives the same answer
    assert ("authorization" in r.request.headers) is sent
    assert ("authorization" in r2.request.headers) is sent
    assert api.authorization_seen == [sent, sent]
    assert idp.hits == (1 if sent else 0)  # no token is even fetched for other origins


def test_auth_origins_override_the_session_origins(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock, origins=["https://api.test"])
    auth = session.auth(origins=["https://other.test:8443"])
    with httpx.Client(auth=auth, transport=api.transport) as client:
        assert "authorization" not in client.get("https://api.test/x").request.headers
        assert "authorization" in client.get("https://other.test:8443/x").request.headers


def test_without_origins_every_origin_gets_the_token(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    with httpx.Client(auth=session.auth(), transport=api.transport) as client:
        client.get("https://one.test/x")
        client.get("http://two.test:8080/x")
    assert api.authorization_seen == [True, True]


def test_default_port_is_made_explicit() -> None:
    from authpulse._runtime.backend import origin_of

    assert origin_of("https://a.test") == ("https", "a.test", 443)
    assert origin_of("http://a.test/path") == ("http", "a.test", 80)
    assert origin_of("https://a.test:8443") == ("https", "a.test", 8443)
    assert origin_of(httpx.URL("HTTPS://A.TEST/")) == ("https", "a.test", 443)


# ------------------------------------------------------- what requests record


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_request_is_recorded_on_the_session_once(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI, mode: str
) -> None:
    """A plain 200, a 401 answered by one replay, and a final 404 are each
    recorded once when they end: the first waited for the first token and the
    second was replayed, so only the last reached the user cleanly."""
    session = cc_session(idp, clock)
    seen: list[bool] = []
    session.on_request = lambda ok, latency: seen.append(ok)
    statuses: list[int] = []
    if mode == "sync":
        with sync_client(session, api) as client:
            statuses.append(client.get("/items").status_code)
            api.fail_next(1, Fault(status=401))
            statuses.append(client.get("/items").status_code)
            api.fail_next(1, Fault(status=404))
            statuses.append(client.get("/items").status_code)
    else:
        async with async_client(session, api) as aclient:
            statuses.append((await aclient.get("/items")).status_code)
            api.fail_next(1, Fault(status=401))
            statuses.append((await aclient.get("/items")).status_code)
            api.fail_next(1, Fault(status=404))
            statuses.append((await aclient.get("/items")).status_code)
    assert statuses == [200, 200, 404]
    assert seen == [True, True, True]
    window = session.request_window()
    assert (window.total, window.success_rate) == (3, 1.0)
    assert window.ux_score is not None
    assert round(window.ux_score) == 33  # one clean request of three
    await session.aclose()

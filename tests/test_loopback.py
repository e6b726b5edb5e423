"""LoopbackServer: the fakes over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest

import authpulse
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault, LoopbackServer


class Echo:
    """Answers with what it received."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(
            201,
            content=request.content,
            headers={"x-method": request.method, "x-path": request.url.raw_path.decode()},
        )


class Broken:
    def handle(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in the fake")


@pytest.fixture
def served() -> Iterator[tuple[FakeIdP, FakeAPI, LoopbackServer, LoopbackServer]]:
    clock = FakeClock()
    with LoopbackServer() as idp_server, LoopbackServer() as api_server:
        idp = FakeIdP(clock=clock, issuer=idp_server.url)
        idp_server.app = idp
        api = FakeAPI(idp, base_url=api_server.url)
        api_server.app = api
        yield idp, api, idp_server, api_server


def test_a_session_and_client_over_real_http(
    served: tuple[FakeIdP, FakeAPI, LoopbackServer, LoopbackServer],
) -> None:
    idp, api, idp_server, api_server = served
    assert idp.token_url == f"{idp_server.url}/token"
    assert idp_server.url.startswith("http://127.0.0.1:")
    session = authpulse.Session(
        authpulse.RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
        ),
        clock=idp.clock,
    )
    with authpulse.Client(session, base_url=api_server.url) as client:
        for _ in range(3):
            response = client.get("/v1/items")
            assert response.status_code == 200
            assert response.json() == {"ok": True, "path": "/v1/items"}
    assert idp.token_calls == 1
    assert api.calls == 3
    assert api.unauthorized == 0
    assert session.stats().skew == 0.0  # the IdP's own Date header came through, alone
    session.close()


def test_the_fakes_own_headers_pass_and_ours_are_not_added(
    served: tuple[FakeIdP, FakeAPI, LoopbackServer, LoopbackServer],
) -> None:
    idp, _, _, _ = served
    idp.clock.advance(86_400 * 365)  # type: ignore[attr-defined]
    r = httpx.post(
        idp.token_url, data={"grant_type": "client_credentials"}, auth=("client", "secret")
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert len(r.headers.get_list("date")) == 1
    assert parsedate_to_datetime(r.headers["date"]).timestamp() == int(idp.clock.now())
    assert "server" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)


def test_requests_are_translated_faithfully() -> None:
    echo = Echo()
    with LoopbackServer(echo) as server, httpx.Client(base_url=server.url) as client:
        r = client.post("/a/b?x=1&y=%20", content=b"payload", headers={"x-custom": "yes"})
        assert r.status_code == 201
        assert r.content == b"payload"
        assert r.headers["x-method"] == "POST"
        assert r.headers["x-path"] == "/a/b?x=1&y=%20"
        sent = echo.seen[-1]
        assert sent.headers["x-custom"] == "yes"
        assert sent.url.host == "127.0.0.1"
        assert sent.url.port == server.port

        def chunks() -> Iterator[bytes]:
            yield b"chunked "
            yield b"body"

        r = client.put("/c", content=chunks())
        assert r.content == b"chunked body"
        r = client.head("/d")
        assert r.content == b""
        assert r.headers["x-method"] == "HEAD"
        for method in ("GET", "PATCH", "DELETE", "OPTIONS"):
            assert client.request(method, "/e").headers["x-method"] == method


def test_no_app_broken_app_and_network_faults() -> None:
    with LoopbackServer() as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 503
        server.app = Broken()
        r = client.get("/")
        assert r.status_code == 500
        assert "RuntimeError" in r.text
        idp = FakeIdP(issuer=server.url)
        server.app = idp
        idp.fail_next(1, Fault.refused())
        with pytest.raises(httpx.TransportError):
            client.post("/token", data={"grant_type": "client_credentials"})
        idp.fail_next(1, Fault(status=503, body={"error": "temporarily_unavailable"}))
        assert client.post("/token").status_code == 503
        assert idp.hits == 2


def test_only_apps_with_a_handle_method() -> None:
    with pytest.raises(TypeError, match="handle"):
        LoopbackServer(object())  # type: ignore[arg-type]
    with LoopbackServer() as server:
        with pytest.raises(TypeError, match="handle"):
            server.app = "nope"  # type: ignore[assignment]
        assert server.app is None
        assert "serving" in repr(server)


def test_close_is_idempotent_and_frees_the_port() -> None:
    server = LoopbackServer(Echo())
    url = server.url
    with httpx.Client() as client:
        assert client.get(url).status_code == 201  # leaves a keep-alive connection open
        server.close()
        server.close()
        assert "closed" in repr(server)
        with pytest.raises(httpx.TransportError):
            client.get(url)


def test_a_burst_of_connections_is_accepted() -> None:
    api = FakeAPI(FakeIdP())
    errors: list[BaseException] = []
    with LoopbackServer(api) as server, httpx.Client(timeout=30) as client:
        start = threading.Barrier(64)

        def hit() -> None:  # 64 threads, so 64 connections opened at once
            start.wait()
            try:
                client.get(f"{server.url}/public").raise_for_status()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hit) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert api.calls == 64

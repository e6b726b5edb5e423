"""The token endpoint call: bounded bodies, a real deadline, clear errors, safe URLs."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from _support import StreamingServer, gzip_bomb_chunks
from authpulse import (
    ClientCredentials,
    ConfigurationError,
    ErrorClass,
    JWTVerifier,
    RefreshTokenGrant,
    Session,
    StoredCredentials,
    TokenEndpointError,
    TokenResponseError,
    TokenRetry,
    TokenVerificationError,
)
from authpulse._runtime.backend import check_endpoint_url, endpoint_label, httpx
from authpulse.testing import FakeClock, FakeIdP, Fault

LIMIT = 1024 * 1024
TOKEN = json.dumps({"access_token": "at_ok", "token_type": "Bearer", "expires_in": 600}).encode()


def session_to(url: str, **retry: Any) -> Session:
    retry.setdefault("attempts", 1)
    return Session(ClientCredentials(f"{url}/token", "client", "secret"), retry=TokenRetry(**retry))


def big_body(total: int, piece: int = 64 * 1024) -> Iterable[bytes]:
    yield b'{"access_token": "'
    for _ in range(total // piece):
        yield b"a" * piece


async def fetch(session: Session, mode: str) -> str:
    if mode == "sync":
        return session.token()
    return await session.atoken()


# ----------------------------------------------------------------- body size limit


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_huge_body_is_refused_while_streaming(mode: str) -> None:
    """100 MB without a Content-Length: refused after about the limit, not read whole."""
    total = 100 * 1024 * 1024
    with StreamingServer(lambda: big_body(total)) as server:
        session = session_to(server.url, attempts=3)
        with pytest.raises(TokenResponseError, match=f"larger than the {LIMIT}-byte limit"):
            await fetch(session, mode)
        await session.aclose()
        assert server.requests == 1  # a client error: not retried
        assert not server.completed.is_set()
    assert server.sent < 32 * 1024 * 1024  # the limit, plus what socket buffers took


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_declared_length_over_the_limit_is_refused_before_reading(mode: str) -> None:
    total = 8 * 1024 * 1024
    headers = (("Content-Type", "application/json"), ("Content-Length", str(total + 18)))
    with StreamingServer(lambda: big_body(total), headers=headers) as server:
        session = session_to(server.url)
        with pytest.raises(TokenResponseError, match="byte limit"):
            await fetch(session, mode)
        await session.aclose()
        assert not server.completed.is_set()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_gzip_bomb_is_refused_after_the_limit_of_inflated_bytes(mode: str) -> None:
    """About 20 MB of gzip inflating to 20 GiB: refused after at most one read of it."""
    blocks = 20_000
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    with StreamingServer(gzip_bomb_chunks(blocks), headers=headers) as server:
        session = session_to(server.url)
        with pytest.raises(TokenResponseError, match=f"larger than the {LIMIT}-byte limit"):
            await fetch(session, mode)
        await session.aclose()
        assert not server.completed.is_set()
    assert server.sent < 16 * 1024 * 1024  # of about 20 MB compressed


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_within_the_limit_are_read(encoding: str) -> None:
    import zlib

    wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15}[encoding]
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    content = comp.compress(TOKEN) + comp.flush()
    name = "deflate" if encoding == "raw-deflate" else encoding
    headers = (("Content-Type", "application/json"), ("Content-Encoding", name))
    with StreamingServer(lambda: [content], headers=headers) as server:
        session = session_to(server.url)
        assert session.token() == "at_ok"
        session.close()


def test_the_limit_is_a_setting(clock: FakeClock) -> None:
    from authpulse import AuthpulseSettings

    assert TokenRetry().max_response_bytes == LIMIT
    settings = AuthpulseSettings(token_max_response_bytes=4096)
    assert settings.token_retry().max_response_bytes == 4096
    body = json.dumps({"access_token": "a" * 5000, "expires_in": 60}).encode()
    with StreamingServer(lambda: [body]) as server:
        session = session_to(server.url, max_response_bytes=4096)
        with pytest.raises(TokenResponseError, match="4096-byte limit"):
            session.token()
        session.close()
    for bad in (0, 1023, 2.5, True, "1MiB"):
        with pytest.raises(ConfigurationError, match="max_response_bytes"):
            TokenRetry(max_response_bytes=bad)  # type: ignore[arg-type]


def test_a_jwks_over_the_limit_is_refused_while_reading() -> None:
    total = 50 * 1024 * 1024
    with StreamingServer(lambda: big_body(total)) as server:
        verifier = JWTVerifier(algorithms=["RS256"], jwks_url=f"{server.url}/jwks")
        token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln"
        with pytest.raises(TokenVerificationError, match=f"larger than the {LIMIT}-byte limit"):
            verifier.verify(token, now=time.time())
        assert not server.completed.is_set()
    assert server.sent < 16 * 1024 * 1024


# ------------------------------------------------------------------- the deadline


def trickle() -> Iterable[bytes]:
    yield b'{"access_token": "at_'
    for _ in range(500):  # a byte every 0.2 s: 100 s in all
        yield b"a"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_trickling_body_cannot_escape_the_deadline(mode: str) -> None:
    """Every read succeeds (a byte at a time), so no read timeout fires: the
    deadline is checked between chunks (and, async, by an asyncio timeout)."""
    deadline = 2.0
    with StreamingServer(trickle, interval=0.2) as server:
        session = session_to(server.url, attempts=5, deadline=deadline)
        started = time.monotonic()
        with pytest.raises(TokenEndpointError) as info:
            await fetch(session, mode)
        elapsed = time.monotonic() - started
        await session.aclose()
    exc = info.value
    assert exc.error_class is ErrorClass.NETWORK
    assert "timed out" in str(exc)
    assert "2 s deadline" in str(exc)
    assert elapsed < deadline + 1.5
    assert server.requests == 1  # no time was left for another attempt


# ---------------------------------------------------------------- error messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_network_error_names_the_endpoint_and_the_cause(mode: str) -> None:
    port = free_port()  # nothing listens there: connection refused
    url = f"http://user:pw@127.0.0.1:{port}/token?tenant=acme"
    session = Session(ClientCredentials(url, "client", "secret"), retry=TokenRetry(attempts=1))
    with pytest.raises(TokenEndpointError) as info:
        await fetch(session, mode)
    await session.aclose()
    text = str(info.value)
    assert f"token endpoint http://127.0.0.1:{port}/token request failed: ConnectError: " in text
    cause = info.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert str(cause)
    assert str(cause) in text
    if mode == "sync":
        assert "Connection refused" in text
    assert "tenant" not in text
    assert "acme" not in text
    assert "pw" not in text
    assert info.value.endpoint == f"http://127.0.0.1:{port}/token"
    assert info.value.error_class is ErrorClass.NETWORK


def test_cause_text_is_scrubbed_printable_and_short(clock: FakeClock) -> None:
    secret = "cs_VERY_SECRET_value"

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"boom {secret}\r\n" + "x" * 5000, request=request)

    session = Session(
        ClientCredentials("https://idp.test/token", "client", secret),
        clock=clock,
        transport=httpx.MockTransport(handler),
        retry=TokenRetry(attempts=1),
    )
    with pytest.raises(TokenEndpointError) as info:
        session.token()
    text = str(info.value)
    assert secret not in text
    assert secret not in str(info.value.__cause__)
    assert "[redacted]" in text
    assert text.isprintable()
    assert len(text) < 300


def test_http_errors_name_the_endpoint(clock: FakeClock, idp: FakeIdP) -> None:
    idp.set_outage(Fault(status=503))
    session = Session(
        ClientCredentials(idp.token_url + "?x=1", "client", "secret"),
        clock=clock,
        transport=idp.transport,
        retry=TokenRetry(attempts=2),
    )
    with pytest.raises(TokenEndpointError, match=r"token endpoint https://idp.test/token answered"):
        session.token()


def test_endpoint_label() -> None:
    assert (
        endpoint_label("https://u:p@idp.test:8443/a/token?q=1#f") == "https://idp.test:8443/a/token"
    )
    assert endpoint_label("http://[::1]:9/t") == "http://[::1]:9/t"


# ----------------------------------------------------------- plain http:// URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/token",
        "http://127.1.2.3/token",
        "http://localhost/token",
        "http://LOCALHOST:9/token",
        "http://[::1]:8080/token",
        "https://idp.example/token",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert check_endpoint_url(url, what="token_url") == url
    ClientCredentials(url, "client", "secret")


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/token",
        "http://10.0.0.5/token",
        "http://localhost.evil.example/token",
        "http://128.0.0.1/token",
        "http://[::2]/token",
    ],
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    builders: list[Callable[..., object]] = [
        lambda **kw: ClientCredentials(url, "client", "secret", **kw),
        lambda **kw: RefreshTokenGrant(url, "client", "secret", refresh_token="rt", **kw),
        lambda **kw: StoredCredentials(url, "client", "secret", load=lambda: None, **kw),
        lambda **kw: JWTVerifier(jwks_url=url, **kw),
    ]
    for build in builders:
        with pytest.raises(ConfigurationError, match="plain http://") as info:
            build()
        assert "allow_insecure_http=True" in str(info.value)
        assert "unencrypted" in str(info.value)
        build(allow_insecure_http=True)  # allowed explicitly


@pytest.mark.parametrize("url", ["ftp://idp.test/token", "idp.test/token", "https://", 42, None])
def test_what_is_not_an_http_url_is_refused(url: Any) -> None:
    with pytest.raises(ConfigurationError, match="absolute http"):
        ClientCredentials(url, "client", "secret")


# ------------------------------------------------------ arguments checked up front


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"transport": "x"}, "transport must be"),
        ({"transport": httpx.AsyncHTTPTransport()}, "transport must be"),
        ({"async_transport": "x"}, "async_transport must be"),
        ({"async_transport": httpx.HTTPTransport()}, "async_transport must be"),
        ({"policy": "x"}, "policy must be"),
        ({"retry": {"attempts": 3}}, "retry must be"),
        ({"clock": object()}, "clock must be"),
        ({"verifier": "x"}, "verifier must be"),
        ({"seed": "1"}, "seed must be"),
        ({"seed": True}, "seed must be"),
        ({"rng": 3}, "rng must be"),
        ({"name": 3}, "name must be"),
        ({"identity": ""}, "identity must be"),
        ({"store_key": 1}, "store_key must be"),
        ({"lock_ttl": 0}, "lock_ttl must be"),
    ],
)
def test_session_arguments_are_checked_where_given(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        Session(ClientCredentials("https://idp.test/token", "client", "secret"), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"client_secret": 123}, "client_secret must be"),
        ({"scope": ["a", 1]}, "scope must be"),
        ({"scope": 5}, "scope must be"),
        ({"extra_params": {"a": 1}}, "extra_params must be"),
        ({"extra_params": [("a", "b")]}, "extra_params must be"),
        ({"allow_insecure_http": "yes"}, "allow_insecure_http must be"),
    ],
)
def test_grant_arguments_are_checked_where_given(kwargs: dict[str, Any], needle: str) -> None:
    args: dict[str, Any] = {"client_secret": "secret", **kwargs}
    with pytest.raises(ConfigurationError, match=needle):
        ClientCredentials("https://idp.test/token", "client", **args)
    with pytest.raises(ConfigurationError, match=needle):
        RefreshTokenGrant("https://idp.test/token", "client", refresh_token="rt", **args)


def test_refresh_token_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="refresh_token must be"):
        RefreshTokenGrant("https://idp.test/token", "client", refresh_token=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"algorithms": "HS256"}, "algorithms must be"),
        ({"algorithms": [1]}, "algorithms must be"),
        ({"leeway": -1}, "leeway must be"),
        ({"leeway": "30"}, "leeway must be"),
        ({"issuer": 5}, "issuer must be"),
        ({"audience": 5}, "audience must be"),
        ({"max_jwks_bytes": 10}, "max_jwks_bytes must be"),
        ({"jwks_client": "x", "key": None}, "jwks_client must be"),
    ],
)
def test_verifier_arguments_are_checked_where_given(kwargs: dict[str, Any], needle: str) -> None:
    args: dict[str, Any] = {"algorithms": ["HS256"], "key": "k" * 32, **kwargs}
    with pytest.raises(ConfigurationError, match=needle):
        JWTVerifier(**args)

"""Token sources: client authentication, grants, rotation, CallableSource."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr

from _support import make_token, rt_session
from authpulse import (
    CallableSource,
    ClientCredentials,
    ConfigurationError,
    FetchContext,
    NoRefreshTokenError,
    RefreshError,
    RefreshTokenGrant,
    Session,
    TokenError,
    TokenRetry,
    TokenSet,
    TokenSource,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP

URL = "https://idp.test/token"


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def ctx_for(clock: FakeClock, current: TokenSet | None = None) -> FetchContext:
    def no_http() -> httpx.Client:
        raise AssertionError("no I/O expected")

    def no_ahttp() -> httpx.AsyncClient:
        raise AssertionError("no I/O expected")

    return FetchContext(
        current=current,
        clock=clock,
        retry=TokenRetry(),
        rng=random.Random(0),
        default_lifetime=3600,
        http=no_http,
        ahttp=no_ahttp,
    )


# ----------------------------------------------------------------- configuration


class TestConfiguration:
    @pytest.mark.parametrize(
        "url", ["", "idp.test/token", "/token", "ftp://idp.test/token", "file:///etc/passwd"]
    )
    def test_bad_token_url(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="token_url"):
            ClientCredentials(url, "client", "secret")

    def test_token_url_must_be_a_string(self) -> None:
        with pytest.raises(ConfigurationError):
            ClientCredentials(None, "client", "secret")

    @pytest.mark.parametrize("client_id", ["", None, 5])
    def test_bad_client_id(self, client_id: Any) -> None:
        with pytest.raises(ConfigurationError, match="client_id"):
            ClientCredentials(URL, client_id, "secret")

    @pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
    def test_secret_methods_need_a_secret(self, method: Any) -> None:
        with pytest.raises(ConfigurationError, match="needs a client_secret"):
            ClientCredentials(URL, "client", auth_method=method)

    def test_unknown_auth_method(self) -> None:
        with pytest.raises(ConfigurationError, match="unsupported"):
            ClientCredentials(URL, "client", "secret", auth_method="client_secret_magic")  # type: ignore[arg-type]

    def test_default_method_follows_the_secret(self) -> None:
        assert ClientCredentials(URL, "c", "s").auth_method == "client_secret_basic"
        assert ClientCredentials(URL, "c", SecretStr("s")).auth_method == "client_secret_basic"
        assert ClientCredentials(URL, "c").auth_method == "none"

    def test_refresh_token_must_be_a_string(self) -> None:
        with pytest.raises(ConfigurationError, match="refresh_token"):
            RefreshTokenGrant(URL, "c", "s", refresh_token=12345)  # type: ignore[arg-type]

    def test_callable_source_needs_a_callable(self) -> None:
        with pytest.raises(ConfigurationError):
            CallableSource("not callable")  # type: ignore[arg-type]

    def test_sources_satisfy_the_protocol(self) -> None:
        assert isinstance(ClientCredentials(URL, "c", "s"), TokenSource)
        assert isinstance(RefreshTokenGrant(URL, "c", "s", refresh_token="r"), TokenSource)
        assert isinstance(CallableSource(lambda cur: make_token(0)), TokenSource)


# ------------------------------------------------------------------- the request


class TestClientAuthentication:
    def test_client_secret_basic(self) -> None:
        req = ClientCredentials(URL, "client", "secret", scope=["a", "b"]).build_request(None)
        assert req.method == "POST"
        assert str(req.url) == URL
        assert req.headers["authorization"] == "Basic " + base64.b64encode(b"client:secret").decode(
            "ascii"
        )
        assert req.headers["accept"] == "application/json"
        assert req.headers["content-type"] == "application/x-www-form-urlencoded"
        form = form_of(req)
        assert form == {"grant_type": "client_credentials", "scope": "a b"}

    def test_client_secret_basic_form_encodes_both_parts(self) -> None:
        """RFC 6749 §2.3.1: id and secret are form-url-encoded before base64."""
        req = ClientCredentials(URL, "my:client", "p@ss wörd/+").build_request(None)
        raw = base64.b64decode(req.headers["authorization"][6:]).decode()
        assert raw == "my%3Aclient:p%40ss%20w%C3%B6rd%2F%2B"

    def test_client_secret_post(self) -> None:
        req = ClientCredentials(
            URL, "client", "secret", auth_method="client_secret_post"
        ).build_request(None)
        assert "authorization" not in req.headers
        assert form_of(req) == {
            "grant_type": "client_credentials",
            "client_id": "client",
            "client_secret": "secret",
        }

    def test_none(self) -> None:
        req = ClientCredentials(URL, "public-client").build_request(None)
        assert "authorization" not in req.headers
        assert form_of(req) == {"grant_type": "client_credentials", "client_id": "public-client"}

    def test_extra_params_and_explicit_scope(self) -> None:
        req = ClientCredentials(
            URL,
            "c",
            "s",
            scope="default",
            extra_params={"audience": "api", "scope": "override"},
        ).build_request(None)
        assert form_of(req) == {
            "grant_type": "client_credentials",
            "audience": "api",
            "scope": "override",
        }

    @pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
    def test_each_method_works_against_the_idp(self, clock: FakeClock, method: Any) -> None:
        clients = {"client": "s3cret:/+ é", "public": ""}
        idp = FakeIdP(clock=clock, clients=clients)
        if method == "none":
            grant = ClientCredentials(idp.token_url, "public")
        else:
            grant = ClientCredentials(
                idp.token_url, "client", clients["client"], auth_method=method
            )
        session = Session(grant, clock=clock, transport=idp.transport)
        assert idp.validate(session.token())
        assert idp.requests[-1]["grant_type"] == "client_credentials"
        assert "client_secret" not in idp.requests[-1]  # the fake never records it

    def test_wrong_secret_is_invalid_client(self, clock: FakeClock, idp: FakeIdP) -> None:
        from authpulse import OAuthError

        session = Session(
            ClientCredentials(idp.token_url, "client", "wrong"),
            clock=clock,
            transport=idp.transport,
        )
        with pytest.raises(OAuthError) as info:
            session.token()
        assert info.value.error == "invalid_client"
        assert info.value.status_code == 401


# ---------------------------------------------------------------- refresh grant


class TestRefreshTokenGrant:
    def test_initial_refresh_token_is_used_first(self, clock: FakeClock) -> None:
        grant = RefreshTokenGrant(URL, "c", "s", refresh_token="rt_initial")
        form = form_of(grant.build_request(None))
        assert form == {"grant_type": "refresh_token", "refresh_token": "rt_initial"}

    def test_newest_refresh_token_is_used(self, clock: FakeClock) -> None:
        grant = RefreshTokenGrant(URL, "c", "s", refresh_token="rt_initial")
        current = make_token(clock.now(), refresh="rt_newer")
        assert form_of(grant.build_request(current))["refresh_token"] == "rt_newer"
        rt = grant.refresh_token_for(current)
        assert rt is not None
        assert rt.get_secret_value() == "rt_newer"

    def test_current_without_refresh_token_falls_back_to_initial(self, clock: FakeClock) -> None:
        grant = RefreshTokenGrant(URL, "c", "s", refresh_token=SecretStr("rt_initial"))
        current = make_token(clock.now())
        assert form_of(grant.build_request(current))["refresh_token"] == "rt_initial"

    @pytest.mark.parametrize("rt", [None, "", SecretStr("")], ids=["none", "empty", "empty-secret"])
    def test_no_refresh_token(self, rt: str | SecretStr | None) -> None:
        grant = RefreshTokenGrant(URL, "c", "s", refresh_token=rt)
        assert grant.refresh_token_for(None) is None
        with pytest.raises(NoRefreshTokenError):
            grant.build_request(None)

    def test_no_refresh_token_fails_without_a_request(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = Session(
            RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=None),
            clock=clock,
            transport=idp.transport,
        )
        with pytest.raises(NoRefreshTokenError):
            session.token()
        assert idp.hits == 0
        assert session.stats().failures == 1

    def test_rotation_replaces_the_refresh_token(self, clock: FakeClock, idp: FakeIdP) -> None:
        first = idp.issue_refresh_token()
        session = rt_session(idp, clock, refresh_token=first)
        t1 = session.force_refresh()
        assert t1.refresh_token is not None
        rt1 = t1.refresh_token.get_secret_value()
        assert rt1 != first
        t2 = session.force_refresh()
        assert t2.refresh_token is not None
        assert t2.refresh_token.get_secret_value() not in (first, rt1)
        assert idp.reuse_detected == 0

    def test_answer_without_refresh_token_keeps_the_old_one(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, rotate=False)
        rt = idp.issue_refresh_token()
        session = rt_session(idp, clock, refresh_token=rt)
        for _ in range(5):
            t = session.force_refresh()
            assert t.refresh_token is not None
            assert t.refresh_token.get_secret_value() == rt
        assert idp.token_calls == 5

    def test_carry_over_uses_the_current_refresh_token(self, clock: FakeClock) -> None:
        grant = RefreshTokenGrant(URL, "c", "s", refresh_token="rt_initial")
        current = make_token(clock.now(), refresh="rt_current")
        resp = httpx.Response(
            200,
            json={"access_token": "at_new", "expires_in": 60},
            request=grant.build_request(current),
        )
        fetched = grant.parse(resp, ctx_for(clock, current))
        assert fetched.token.refresh_token is not None
        assert fetched.token.refresh_token.get_secret_value() == "rt_current"

    def test_many_rotation_cycles_with_single_use_tokens(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        session = rt_session(idp, clock)
        seen: set[str] = set()
        for _ in range(50):
            clock.advance(601)  # past expiry: the next call must refresh
            access = session.token()
            assert idp.validate(access)
            ts = session.token_set
            assert ts is not None
            assert ts.refresh_token is not None
            seen.add(ts.refresh_token.get_secret_value())
        assert len(seen) == 50
        assert idp.token_calls == 50
        assert idp.reuse_detected == 0
        assert session.stats().refreshes == 50

    @pytest.mark.anyio
    async def test_many_rotation_cycles_async(self, clock: FakeClock, idp: FakeIdP) -> None:
        session = rt_session(idp, clock)
        for _ in range(30):
            clock.advance(601)
            assert idp.validate(await session.atoken())
        assert idp.token_calls == 30
        assert idp.reuse_detected == 0
        await session.aclose()

    def test_reuse_of_a_rotated_token_is_detected_by_the_idp(
        self, clock: FakeClock, idp: FakeIdP
    ) -> None:
        """The fake's reuse detection works, so the zero counts above mean something."""
        rt = idp.issue_refresh_token()
        s1 = rt_session(idp, clock, refresh_token=rt)
        s1.force_refresh()
        s2 = rt_session(idp, clock, refresh_token=rt)  # a stale copy of the old token
        from authpulse import OAuthError

        with pytest.raises(OAuthError):
            s2.force_refresh()
        assert idp.reuse_detected == 1
        with pytest.raises(OAuthError):
            s1.force_refresh()  # the whole grant died


# ---------------------------------------------------------------- parse details


class TestParse:
    def test_skew_from_date_header(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, clock_offset=300)
        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            transport=idp.transport,
        )
        session.token()
        assert session.stats().skew == pytest.approx(300, abs=1)
        ts = session.token_set
        assert ts is not None
        assert ts.issued_at == pytest.approx(clock.now() + 300, abs=1)  # IdP time

    def test_skew_from_jwt_iat(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, clock_offset=-200, jwt_access_tokens=True, send_date=False)
        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            transport=idp.transport,
        )
        session.token()
        assert session.stats().skew == pytest.approx(-200, abs=1)

    def test_no_date_no_jwt_no_skew(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, clock_offset=500, send_date=False)
        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            transport=idp.transport,
        )
        session.token()
        assert session.stats().skew == 0

    def test_jwt_exp_used_when_no_expires_in(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True, send_expires_in=False, access_ttl=900)
        grant = ClientCredentials(idp.token_url, "client", "secret")
        session = Session(grant, clock=clock, transport=idp.transport)
        t = session.force_refresh()
        assert t.expires_at_source == "jwt"
        assert t.lifetime == pytest.approx(900, abs=1)

    def test_default_lifetime_when_nothing_says(self, clock: FakeClock) -> None:
        from authpulse import RefreshPolicy

        idp = FakeIdP(clock=clock, send_expires_in=False)
        session = Session(
            ClientCredentials(idp.token_url, "client", "secret"),
            clock=clock,
            transport=idp.transport,
            policy=RefreshPolicy(default_lifetime=1234),
        )
        t = session.force_refresh()
        assert t.expires_at_source == "default"
        assert t.lifetime == 1234

    @pytest.mark.parametrize(
        "iat_json",
        [b"1e400", b"1" + b"0" * 400, b'"soon"', b"true"],
        ids=["inf", "huge-int", "string", "bool"],
    )
    def test_unusable_iat_does_not_break_parsing(self, clock: FakeClock, iat_json: bytes) -> None:
        import jwt

        at = jwt.api_jws.encode(b'{"iat": ' + iat_json + b"}", "k" * 32, algorithm="HS256")
        grant = ClientCredentials(URL, "c", "s")
        resp = httpx.Response(
            200,
            json={"access_token": at, "expires_in": 60},
            request=grant.build_request(None),
        )
        fetched = grant.parse(resp, ctx_for(clock))
        assert fetched.skew == 0.0
        assert fetched.token.issued_at == clock.now()

    def test_deeply_nested_body_is_a_typed_error(self, clock: FakeClock) -> None:
        from authpulse import TokenResponseError

        grant = ClientCredentials(URL, "c", "s")
        resp = httpx.Response(
            200,
            content=b"[" * 100_000,
            headers={"content-type": "application/json"},
            request=grant.build_request(None),
        )
        with pytest.raises(TokenResponseError):
            grant.parse(resp, ctx_for(clock))


# --------------------------------------------------------------- CallableSource


class TestCallableSource:
    def test_sync_function_in_sync_code(self, clock: FakeClock) -> None:
        calls: list[TokenSet | None] = []

        def fn(current: TokenSet | None) -> TokenSet:
            calls.append(current)
            return make_token(clock.now(), access=f"at_{len(calls)}")

        session = Session(CallableSource(fn), clock=clock)
        assert session.token() == "at_1"
        session.force_refresh()
        assert session.token() == "at_2"
        assert calls[0] is None
        assert calls[1] is not None
        assert calls[1].access_token.get_secret_value() == "at_1"

    def test_async_function_in_sync_code(self, clock: FakeClock) -> None:
        async def fn(current: TokenSet | None) -> TokenSet:
            await asyncio.sleep(0)
            return make_token(clock.now(), access="at_async")

        assert Session(CallableSource(fn), clock=clock).token() == "at_async"

    @pytest.mark.anyio
    async def test_sync_function_runs_in_a_worker_thread(self, clock: FakeClock) -> None:
        threads: list[threading.Thread] = []

        def fn(current: TokenSet | None) -> TokenSet:
            threads.append(threading.current_thread())
            return make_token(clock.now(), access="at_thread")

        session = Session(CallableSource(fn), clock=clock)
        assert await session.atoken() == "at_thread"
        assert threads[0] is not threading.main_thread()

    @pytest.mark.anyio
    async def test_async_function_in_async_code(self, clock: FakeClock) -> None:
        async def fn(current: TokenSet | None) -> TokenSet:
            return make_token(clock.now(), access="at_coro")

        assert await Session(CallableSource(fn), clock=clock).atoken() == "at_coro"

    @pytest.mark.anyio
    async def test_async_function_from_sync_call_inside_a_loop(self, clock: FakeClock) -> None:
        async def fn(current: TokenSet | None) -> TokenSet:
            return make_token(clock.now())

        seen: list[TokenSet] = []

        async def hook(ts: TokenSet) -> None:
            seen.append(ts)

        # sync code called from a coroutine: the async callable and the async hook
        # run on a private loop in a helper thread instead of failing
        session = Session(CallableSource(fn), clock=clock, on_token_update=hook)
        assert session.token() == "at_test_access_token"
        assert len(seen) == 1
        assert session.stats().refreshes == 1

    def test_wrong_return_type(self, clock: FakeClock) -> None:
        session = Session(CallableSource(lambda cur: "a string"), clock=clock)  # type: ignore[arg-type]
        with pytest.raises(TokenError, match="returned str, not a TokenSet"):
            session.token()

    def test_exception_in_the_function_reaches_the_caller_as_refresh_error(
        self, clock: FakeClock
    ) -> None:
        def fn(current: TokenSet | None) -> TokenSet:
            raise KeyError("boom")

        session = Session(CallableSource(fn), clock=clock)
        with pytest.raises(RefreshError) as info:
            session.token()
        assert isinstance(info.value.__cause__, KeyError)
        assert session.stats().last_error == "KeyError"

    def test_name_and_repr(self) -> None:
        def my_token_fn(current: TokenSet | None) -> TokenSet:
            raise NotImplementedError

        assert "my_token_fn" in repr(CallableSource(my_token_fn))
        assert repr(CallableSource(my_token_fn, name="vault")) == "CallableSource('vault')"

"""authpulse against a real OpenID Connect provider (oidc-provider on Node.js).

The fakes in :mod:`authpulse.testing` behave the way we believe IdPs
behave; these tests check the belief against a real one
(``tests/idp/server.mjs``, started by ``tests/_idp.py``): client
authentication, refresh-token rotation with reuse detection, revocation,
introspection, JWT access tokens signed with the provider's keys, its error
answers, and its ``Date`` header.

Time: the IdP's clock is real and its access tokens live 60 s. Expiry is
forced on the authpulse side, through the session's injected
:class:`~authpulse.testing.FakeClock`; no test waits for a token to expire.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from pydantic import SecretStr

import authpulse
from _idp import (
    AsyncCountingTransport,
    CountingTransport,
    IdPClient,
    OIDCProvider,
    StoreWorkerSpec,
    TokenCalls,
    expired_token_set,
    fingerprint,
    idp_fixture,  # noqa: F401 - a fixture
    oidc_provider_fixture,  # noqa: F401 - the fixture
    store_refresh_worker,
)
from _redis import RedisServer, redis_server_fixture  # noqa: F401 - the fixture
from authpulse import (
    ClientCredentials,
    ErrorClass,
    FallbackChain,
    Freshness,
    JWTVerifier,
    LoginRequired,
    LoginRequiredError,
    OAuthError,
    RefreshTokenGrant,
    Session,
    TokenSet,
    TokenSource,
    TokenVerificationError,
    open_store,
)
from authpulse.testing import FakeClock

ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]
#: the provider's JWT resource servers, by signing algorithm (tests/idp/server.mjs)
JWT_RESOURCES = {
    "RS256": "urn:authpulse:api",
    "PS256": "urn:authpulse:api:ps256",
    "ES256": "urn:authpulse:api:es256",
    "EdDSA": "urn:authpulse:api:eddsa",
}
CLIENTS = ["basic", "post"]


@pytest.fixture
def calls(idp: OIDCProvider) -> TokenCalls:
    return TokenCalls(idp.token_url)


def session_for(source: TokenSource, calls: TokenCalls, **kwargs: Any) -> Session:
    """A session whose token calls (sync and async) are counted."""
    return Session(
        source,
        transport=CountingTransport(calls),
        async_transport=AsyncCountingTransport(calls),
        **kwargs,
    )


def refresh_grant(idp: OIDCProvider, client: IdPClient, refresh_token: str) -> RefreshTokenGrant:
    return RefreshTokenGrant(
        idp.token_url,
        client.client_id,
        client.client_secret,
        refresh_token=refresh_token,
        auth_method=client.auth_method,
    )


def client_credentials(
    idp: OIDCProvider, client: IdPClient, *, secret: str | None = None, **kwargs: Any
) -> ClientCredentials:
    return ClientCredentials(
        idp.token_url,
        client.client_id,
        client.client_secret if secret is None else secret,
        auth_method=client.auth_method,
        **kwargs,
    )


def current_refresh_token(session: Session) -> str:
    token = session.token_set
    assert token is not None
    assert token.refresh_token is not None
    return token.refresh_token.get_secret_value()


def lifetime(session: Session) -> float:
    token = session.token_set
    assert token is not None
    return token.lifetime


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    for text in (str(exc), repr(exc)):
        for secret in secrets:
            for form in {secret, quote(secret, safe="")}:
                assert form not in text, "a secret leaked into an error message"


# ------------------------------------------------------------------- client credentials


@pytest.mark.parametrize("name", CLIENTS)
def test_client_credentials_with_each_client_auth_method(
    idp: OIDCProvider, calls: TokenCalls, name: str
) -> None:
    client = idp.clients[name]
    with session_for(client_credentials(idp, client), calls) as session:
        access = session.token()
        assert session.token() == access  # fresh: no second call
        token = session.token_set
        assert token is not None
        assert token.refresh_token is None  # client credentials never get one
        assert token.expires_at_source == "expires_in"
        assert token.lifetime == idp.access_ttl
        assert session.freshness() is Freshness.FRESH
    assert calls.grants == {"client_credentials": 1}
    answer = idp.introspect(access, client)
    assert answer["active"] is True
    assert answer["client_id"] == client.client_id


@pytest.mark.parametrize("name", CLIENTS)
def test_client_credentials_async(idp: OIDCProvider, calls: TokenCalls, name: str) -> None:
    client = idp.clients[name]

    async def main() -> list[str]:
        async with session_for(client_credentials(idp, client), calls) as session:
            return list(await asyncio.gather(*(session.atoken() for _ in range(8))))

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert calls.grants == {"client_credentials": 1}
    assert idp.active(tokens[0], client)


# --------------------------------------------------------------- refresh token rotation


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", CLIENTS)
def test_refresh_token_rotates_on_every_refresh_and_the_grant_survives(
    idp: OIDCProvider, calls: TokenCalls, name: str, mode: str
) -> None:
    client = idp.clients[name]
    first = idp.login(client)
    persisted: list[str] = []
    session = session_for(
        refresh_grant(idp, client, first),
        calls,
        on_token_update=lambda ts: persisted.append(
            ts.refresh_token.get_secret_value() if ts.refresh_token else ""
        ),
    )
    cycles = 10

    def run_sync() -> None:
        with session:
            for _ in range(cycles):
                session.force_refresh()

    async def run_async() -> None:
        async with session:
            for _ in range(cycles):
                await session.aforce_refresh()

    if mode == "sync":
        run_sync()
    else:
        asyncio.run(run_async())

    assert calls.grants == {"refresh_token": cycles}
    issued = [first, *persisted]
    assert len(set(issued)) == cycles + 1, "every refresh rotated the refresh token"
    assert current_refresh_token(session) == issued[-1]
    # every retired refresh token is dead; the newest one carries the grant
    assert [idp.active(rt, client) for rt in issued] == [False] * cycles + [True]
    status, body = idp.refresh(issued[-1], client)
    assert status == 200, body
    assert isinstance(body.get("refresh_token"), str)


def test_reusing_a_retired_refresh_token_revokes_the_grant(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    """Why one refresh at a time matters: the real IdP punishes reuse."""
    client = idp.basic
    first = idp.login(client)
    with session_for(refresh_grant(idp, client, first), calls) as session:
        session.force_refresh()
        live = current_refresh_token(session)
        status, body = idp.refresh(first, client)  # a peer that missed the rotation
        assert (status, body.get("error")) == (400, "invalid_grant")
        assert not idp.active(live, client), "reuse revoked the whole grant"
        with pytest.raises(OAuthError) as info:
            session.force_refresh()
    assert info.value.error == "invalid_grant"
    assert info.value.permanent
    assert_no_secret(info.value, first, live, client.client_secret)


def test_a_401_from_the_real_userinfo_endpoint_is_one_refresh_and_one_replay(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    client = idp.basic
    refresh_token = idp.login(client, user="bob")
    now = time.time()
    # an access token the session believes good for an hour, the IdP never issued
    unknown = TokenSet(
        access_token=SecretStr("revoked-elsewhere-" + uuid.uuid4().hex),
        refresh_token=SecretStr(refresh_token),
        issued_at=now,
        expires_at=now + 3600,
    )
    session = session_for(refresh_grant(idp, client, refresh_token), calls, token=unknown)
    with session, authpulse.Client(session, base_url=idp.issuer) as api:
        response = api.get(idp.userinfo_url)
        assert response.status_code == 200
        assert response.json()["sub"] == "bob"
        assert calls.grants == {"refresh_token": 1}
        response = api.get(idp.userinfo_url)
        assert response.status_code == 200
    assert calls.grants == {"refresh_token": 1}, "the replayed token stays in use"


def test_revoking_the_access_token_revokes_its_grant_so_the_401_ends_in_login_required(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    """oidc-provider revokes every token of the grant (refresh tokens included)
    when one of its access tokens is revoked: the refresh after the 401 is
    invalid_grant, and the fallback chain asks for a login."""
    client = idp.basic
    chain = FallbackChain(
        [
            refresh_grant(idp, client, idp.login(client)),
            LoginRequired("https://app.example/login"),
        ]
    )
    session = session_for(chain, calls)
    with session, authpulse.Client(session, base_url=idp.issuer) as api:
        assert api.get(idp.userinfo_url).status_code == 200
        access = session.token()
        refresh_token = current_refresh_token(session)
        idp.revoke(access, client, hint="access_token")
        assert not idp.active(refresh_token, client)
        with pytest.raises(LoginRequiredError) as info:
            api.get(idp.userinfo_url)
    assert info.value.login_url == "https://app.example/login"
    assert calls.grants == {"refresh_token": 2}
    assert_no_secret(info.value, access, refresh_token, client.client_secret)


# ---------------------------------------------------------------------------- stampede


def test_threads_and_coroutines_at_expiry_make_one_token_call(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    threads, coroutines = 16, 16
    client = idp.basic
    clock = FakeClock(start=time.time())
    session = session_for(refresh_grant(idp, client, idp.login(client)), calls, clock=clock)
    before = session.token()
    retired = current_refresh_token(session)
    assert calls.total == 1

    clock.advance(lifetime(session) + 1)  # every caller now needs a new token
    assert session.freshness() is Freshness.EXPIRED
    start = threading.Barrier(threads + 1)
    sync_done = threading.Event()
    got: list[str] = []
    errors: list[BaseException] = []

    def sync_caller() -> None:
        try:
            start.wait(timeout=30)
            got.append(session.token())
        except BaseException as exc:
            errors.append(exc)

    async def async_callers() -> None:
        start.wait(timeout=30)
        try:
            results = await asyncio.gather(
                *(session.atoken() for _ in range(coroutines)), return_exceptions=True
            )
            for result in results:
                (errors if isinstance(result, BaseException) else got).append(result)  # type: ignore[arg-type]
            await asyncio.to_thread(sync_done.wait, 60)
        finally:
            await session.aclose()  # closes the async client on its own loop

    def run_async() -> None:
        try:
            asyncio.run(async_callers())
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=sync_caller) for _ in range(threads)]
    loop_thread = threading.Thread(target=run_async)
    for t in [*workers, loop_thread]:
        t.start()
    for t in workers:
        t.join(60)
    sync_done.set()
    loop_thread.join(60)
    session.close()

    assert not errors, errors
    assert len(got) == threads + coroutines
    assert len(set(got)) == 1
    assert got[0] != before
    assert calls.grants == {"refresh_token": 2}, "one token call for the whole stampede"
    # the grant survives: the old refresh token is retired, the new one works
    assert not idp.active(retired, client)
    live = current_refresh_token(session)
    assert idp.active(live, client)
    status, body = idp.refresh(live, client)
    assert status == 200, body


# ------------------------------------------------------- processes sharing a store


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_processes_on_a_shared_store_refresh_once(
    idp: OIDCProvider, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'tokens.db'}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?namespace=idp{uuid.uuid4().hex[:10]}"
    client = idp.post
    key = f"user-{uuid.uuid4().hex[:8]}"
    first = idp.login(client)
    store = open_store(url)
    try:  # what both processes find: an expired access token and the grant's refresh token
        store.put_token(key, expired_token_set(first, time.time()))
    finally:
        store.close()

    spec = StoreWorkerSpec(
        url, key, idp.token_url, client.client_id, client.client_secret, client.auth_method
    )
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    reports: list[dict[str, Any]] = []
    procs = []
    try:
        for _ in range(2):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=store_refresh_worker, args=(spec, start, send), daemon=True)
            proc.start()
            send.close()
            procs.append((proc, receive))
        for proc, receive in procs:
            if receive.poll(90):
                reports.append(receive.recv())
            else:
                reports.append({"error": f"no report (exit code {proc.exitcode})"})
    finally:
        for proc, receive in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
            receive.close()
            proc.close()

    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "\n".join(errors)
    assert [r["failed"] for r in reports] == [[], []]
    token_calls = sum(r["token_calls"].get("refresh_token", 0) for r in reports)
    assert token_calls == 1, reports
    adopted = sorted(e["adopted"] for r in reports for e in r["refreshed"])
    assert adopted == [False, True], "one process refreshed, the other adopted its token"
    assert len({r["access"] for r in reports}) == 1
    assert len({r["refresh"] for r in reports}) == 1

    store = open_store(url)
    try:
        stored = store.get_token(key)
    finally:
        store.close()
    assert stored is not None
    assert stored.token.refresh_token is not None
    live = stored.token.refresh_token.get_secret_value()
    assert fingerprint(live) == reports[0]["refresh"]
    # the grant survives: the seed's refresh token was rotated once, never reused
    assert not idp.active(first, client)
    assert idp.active(live, client)
    status, body = idp.refresh(live, client)
    assert status == 200, body


# ------------------------------------------------------------------------- revocation


def test_a_revoked_refresh_token_ends_in_login_required(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    client = idp.basic
    login_url = f"{idp.authorization_url}?client_id={client.client_id}"
    notified: list[LoginRequiredError] = []
    clock = FakeClock(start=time.time())
    chain = FallbackChain(
        [
            refresh_grant(idp, client, idp.login(client)),
            LoginRequired(login_url, on_login_required=notified.append),
        ]
    )
    with session_for(chain, calls, clock=clock) as session:
        access = session.token()
        revoked = current_refresh_token(session)
        idp.revoke(revoked, client)
        assert not idp.active(revoked, client)
        assert not idp.active(access, client), "revoking the refresh token revoked its grant"

        clock.advance(lifetime(session) + 1)
        with pytest.raises(LoginRequiredError) as info:
            session.token()
        assert info.value.login_url == login_url
        assert len(notified) == 1
        assert calls.grants == {"refresh_token": 2}
        # until a new login, every call fails at once without asking the IdP again
        with pytest.raises(LoginRequiredError):
            session.token()
        assert calls.grants == {"refresh_token": 2}
        assert len(notified) == 1
    assert_no_secret(info.value, revoked, client.client_secret)


# ---------------------------------------------------------------------- JWT access tokens


@pytest.mark.parametrize(
    ("alg", "mode"), [*((alg, "sync") for alg in JWT_RESOURCES), ("ES256", "async")]
)
def test_jwt_access_tokens_are_verified_against_the_providers_jwks(
    idp: OIDCProvider, calls: TokenCalls, alg: str, mode: str
) -> None:
    client = idp.post
    resource = JWT_RESOURCES[alg]
    verifier = JWTVerifier(
        jwks_url=idp.jwks_uri, algorithms=ALGORITHMS, issuer=idp.issuer, audience=resource
    )
    source = client_credentials(idp, client, scope="api:read", extra_params={"resource": resource})
    session = session_for(source, calls, verifier=verifier)

    async def atoken() -> str:
        async with session:
            return await session.atoken()

    if mode == "async":
        access = asyncio.run(atoken())
    else:
        with session:
            access = session.token()
    token = session.token_set
    assert token is not None
    header = jwt.get_unverified_header(access)
    assert header["alg"] == alg
    assert header["typ"] == "at+jwt"
    claims = verifier.verify(access, now=time.time())
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == resource
    assert claims["client_id"] == client.client_id
    assert claims["scope"] == "api:read"
    assert claims["exp"] - claims["iat"] == idp.access_ttl
    assert abs(token.expires_at - claims["exp"]) <= 2
    assert calls.grants == {"client_credentials": 1}


@pytest.mark.parametrize("wrong", ["audience", "issuer", "algorithm"])
def test_a_jwt_access_token_that_fails_verification_is_refused(
    idp: OIDCProvider, calls: TokenCalls, wrong: str
) -> None:
    resource = JWT_RESOURCES["RS256"]
    verifier = JWTVerifier(
        jwks_url=idp.jwks_uri,
        algorithms=["ES256"] if wrong == "algorithm" else ALGORITHMS,
        issuer="http://127.0.0.1:1" if wrong == "issuer" else idp.issuer,
        audience="urn:somebody-else" if wrong == "audience" else resource,
    )
    source = client_credentials(idp, idp.basic, extra_params={"resource": resource})
    with session_for(source, calls, verifier=verifier) as session:
        with pytest.raises(TokenVerificationError) as info:
            session.token()
        assert session.token_set is None, "nothing unverified was installed"
    assert calls.grants == {"client_credentials": 1}
    assert_no_secret(info.value, idp.basic.client_secret)


# ------------------------------------------------------------------------- OAuth errors


@pytest.mark.parametrize("name", CLIENTS)
def test_a_wrong_client_secret_is_invalid_client(
    idp: OIDCProvider, calls: TokenCalls, name: str
) -> None:
    client = idp.clients[name]
    wrong = "wrong-" + client.client_secret[::-1]
    with session_for(client_credentials(idp, client, secret=wrong), calls) as session:
        with pytest.raises(OAuthError) as info:
            session.token()
        last_error = session.stats().last_error or ""
    exc = info.value
    assert exc.error == "invalid_client"
    assert exc.status_code == 401
    assert exc.permanent
    assert exc.error_class is ErrorClass.AUTH
    assert calls.grants == {"client_credentials": 1}, "an OAuth error is never retried"
    assert_no_secret(exc, wrong, client.client_secret)
    assert wrong not in last_error


def test_invalid_client_on_a_refresh_neither_falls_back_nor_harms_the_grant(
    idp: OIDCProvider, calls: TokenCalls
) -> None:
    client = idp.basic
    refresh_token = idp.login(client)
    wrong = "wrong-" + client.client_secret[::-1]
    chain = FallbackChain(
        [
            RefreshTokenGrant(idp.token_url, client.client_id, wrong, refresh_token=refresh_token),
            LoginRequired("https://app.example/login"),
        ]
    )
    with session_for(chain, calls) as session, pytest.raises(OAuthError) as info:
        session.token()
    assert info.value.error == "invalid_client"
    assert not isinstance(info.value, LoginRequiredError)
    assert calls.grants == {"refresh_token": 1}
    assert_no_secret(info.value, wrong, refresh_token, client.client_secret)
    assert idp.active(refresh_token, client), "a rejected client never consumed the token"


@pytest.mark.parametrize("name", CLIENTS)
def test_a_scope_the_client_may_not_have_is_invalid_scope(
    idp: OIDCProvider, calls: TokenCalls, name: str
) -> None:
    client = idp.clients[name]
    with (
        session_for(client_credentials(idp, client, scope="admin"), calls) as session,
        pytest.raises(OAuthError) as info,
    ):
        session.token()
    assert info.value.error == "invalid_scope"
    assert info.value.status_code == 400
    assert info.value.permanent
    assert calls.grants == {"client_credentials": 1}
    assert_no_secret(info.value, client.client_secret)


# ------------------------------------------------------------------------- clock skew


@pytest.mark.parametrize("token_kind", ["opaque", "jwt"])
@pytest.mark.parametrize("offset", [600.0, -600.0], ids=["ahead", "behind"])
def test_a_local_clock_ten_minutes_off_still_refreshes_on_time(
    idp: OIDCProvider, calls: TokenCalls, offset: float, token_kind: str
) -> None:
    """The skew comes from the IdP's ``Date`` header (opaque tokens) or the JWT's
    ``iat``. Without it, a clock 10 minutes ahead would take every 60 s token
    for expired, and one 10 minutes behind would use it 10 minutes too long."""
    clock = FakeClock(start=time.time() + offset)
    resource = JWT_RESOURCES["ES256"]
    jwt_kind = token_kind == "jwt"
    # the verifier checks exp and nbf at the IdP's time: the local clock plus the skew
    verifier = (
        JWTVerifier(jwks_url=idp.jwks_uri, algorithms=ALGORITHMS, issuer=idp.issuer, leeway=0)
        if jwt_kind
        else None
    )
    source = client_credentials(
        idp, idp.basic, extra_params={"resource": resource} if jwt_kind else None
    )
    with session_for(source, calls, clock=clock, verifier=verifier) as session:
        first = session.token()
        assert abs(session.stats().skew + offset) <= 5
        assert session.freshness() is Freshness.FRESH
        life = lifetime(session)
        assert life == idp.access_ttl
        refresh_at = session.refresh_at
        assert refresh_at is not None
        until_stale = refresh_at - clock.now()
        policy = session.policy
        assert life - policy.window(life, 1.0) <= until_stale <= life - policy.window(life, 0.0)

        clock.advance(until_stale - 1)  # a second before the refresh is due
        assert session.freshness() is Freshness.FRESH
        assert session.token() == first
        assert calls.total == 1, "a fresh token was never taken for an expired one"

        clock.advance(2)  # due: served while one refresh runs in the background
        assert session.freshness() is Freshness.STALE
        assert session.token() == first
        session.join_background(30)
        assert calls.total == 2
        second = session.token()
        assert second != first
        assert session.freshness() is Freshness.FRESH
    assert second.count(".") == 2 if jwt_kind else idp.active(second, idp.basic)

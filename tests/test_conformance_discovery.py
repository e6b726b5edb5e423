"""Discovery and client authentication against a real oidc-provider: discover(),
sessions built from issuer=, private_key_jwt and client_secret_jwt accepted, and
JWTVerifier(issuer=) finding the provider's keys by discovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import jwt
import pytest

from _idp import (  # noqa: F401 - the fixture
    AsyncCountingTransport,
    CountingTransport,
    OIDCProvider,
    TokenCalls,
    oidc_provider_fixture,
)
from authpulse import (
    AuthorizationCodeLogin,
    ClientCredentials,
    ClientSecretJWT,
    DeviceCodeLogin,
    DiscoveryError,
    JWTVerifier,
    OAuthError,
    PrivateKeyJWT,
    RefreshTokenGrant,
    Session,
    TokenExchange,
    TokenVerificationError,
    adiscover,
    discover,
)
from authpulse._runtime.backend import httpx
from authpulse._sessions.discovery_fetch import metadata_cache
from authpulse.testing import FakeClock

API = "urn:authpulse:api"


@pytest.fixture
def idp(oidc_provider: OIDCProvider) -> Iterator[OIDCProvider]:
    assert oidc_provider.running, f"the IdP is not running:\n{oidc_provider.log_tail()}"
    metadata_cache.clear()
    yield oidc_provider
    metadata_cache.clear()
    assert oidc_provider.running, f"the IdP died during the test:\n{oidc_provider.log_tail()}"


def test_discover_reads_the_providers_metadata(idp: OIDCProvider) -> None:
    meta = discover(idp.issuer)
    assert meta.issuer == idp.issuer
    assert meta.token_endpoint == idp.token_url
    assert meta.jwks_uri == idp.jwks_uri
    assert meta.device_authorization_endpoint == idp.device_authorization_url
    assert {"private_key_jwt", "client_secret_jwt"} <= set(
        meta.token_endpoint_auth_methods_supported
    )
    assert "S256" in meta.code_challenge_methods_supported
    assert meta.raw == idp.metadata
    assert asyncio.run(adiscover(idp.issuer)) is meta  # cached


def test_a_wrong_issuer_is_refused(idp: OIDCProvider) -> None:
    # the same server under another name: its document names the real issuer
    other = idp.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(DiscoveryError) as info:
        discover(other)
    assert info.value.field == "issuer"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_session_from_the_issuer_alone(idp: OIDCProvider, mode: str) -> None:
    client = idp.basic
    calls = TokenCalls(idp.token_url)
    grant = ClientCredentials(
        issuer=idp.issuer, client_id=client.client_id, client_secret=client.client_secret
    )
    session = Session(
        grant,
        transport=CountingTransport(calls),
        async_transport=AsyncCountingTransport(calls),
    )

    async def atoken() -> str:
        async with session:
            return await session.atoken()

    if mode == "async":
        access = asyncio.run(atoken())
    else:
        with session:
            access = session.token()
    assert access
    assert grant.token_url == idp.token_url
    assert calls.grants == {"client_credentials": 1}


@pytest.mark.parametrize("audience", ["token_endpoint", "issuer"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_private_key_jwt_is_accepted(idp: OIDCProvider, audience: str, mode: str) -> None:
    registered = idp.jwt_clients["private_key_jwt"]
    auth = PrivateKeyJWT(registered["private_jwk"], assertion_audience=audience)  # type: ignore[arg-type]
    grant = ClientCredentials(
        issuer=idp.issuer,
        client_id=registered["client_id"],
        client_auth=auth,
        scope="api:read",
        extra_params={"resource": API},
    )
    session = Session(grant)

    async def atoken() -> str:
        async with session:
            return await session.atoken()

    access = asyncio.run(atoken()) if mode == "async" else session.token()
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["client_id"] == registered["client_id"]
    session.close()


def test_a_replayed_or_foreign_assertion_is_refused(idp: OIDCProvider) -> None:
    registered = idp.jwt_clients["private_key_jwt"]
    replayed = PrivateKeyJWT(registered["private_jwk"], jti=lambda: "always-the-same")
    grant = ClientCredentials(idp.token_url, registered["client_id"], client_auth=replayed)
    with Session(grant) as session:
        session.token()
        with pytest.raises(OAuthError) as info:
            session.force_refresh()
    assert info.value.error == "invalid_client"
    # a key the provider does not know for this client
    stranger = jwt.PyJWK(registered["private_jwk"])  # the right kid, the wrong key:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    assert stranger.key_id == registered["private_jwk"]["kid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    grant = ClientCredentials(
        idp.token_url,
        registered["client_id"],
        client_auth=PrivateKeyJWT(other, kid=stranger.key_id),
    )
    with Session(grant) as session, pytest.raises(OAuthError) as info:
        session.token()
    assert info.value.error == "invalid_client"
    assert "BEGIN" not in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_client_secret_jwt_is_accepted(idp: OIDCProvider, mode: str) -> None:
    registered = idp.jwt_clients["client_secret_jwt"]
    grant = ClientCredentials(
        issuer=idp.issuer,
        client_id=registered["client_id"],
        client_auth=ClientSecretJWT(registered["client_secret"]),
    )
    session = Session(grant)

    async def atoken() -> str:
        async with session:
            return await session.atoken()

    access = asyncio.run(atoken()) if mode == "async" else session.token()
    assert access
    assert registered["client_secret"] not in repr(grant) + repr(grant.client_auth)
    session.close()


def test_jwt_verifier_finds_the_keys_by_discovery(idp: OIDCProvider) -> None:
    client = idp.post
    grant = ClientCredentials(
        issuer=idp.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        auth_method="client_secret_post",
        scope="api:read",
        extra_params={"resource": API},
    )
    with Session(grant) as session:
        access = session.token()
    verifier = JWTVerifier(issuer=idp.issuer, audience=API)
    claims = verifier.verify(access, now=time.time())
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == API
    tampered = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    with pytest.raises(TokenVerificationError, match="verification failed"):
        verifier.verify(tampered, now=time.time())


def test_discovery_goes_through_the_given_transport(idp: OIDCProvider) -> None:
    seen: list[str] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return super().handle_request(request)

    discover(idp.issuer, transport=Recording())
    discover(idp.issuer, transport=Recording())
    assert seen == ["/.well-known/openid-configuration"]


def test_a_device_login_from_the_issuer_with_private_key_jwt(idp: OIDCProvider) -> None:
    """Both of the device login's endpoints are discovered, and both requests (the
    device authorization and the polls), then the session's refreshes, are
    authenticated by the client's signed assertions."""
    registered = idp.jwt_clients["private_key_jwt"]
    login = DeviceCodeLogin(
        issuer=idp.issuer,
        client_id=registered["client_id"],
        client_auth=PrivateKeyJWT(registered["private_jwk"]),
        scope="openid offline_access",
        clock=FakeClock(),
    )
    started = login.start()
    assert started.verification_uri_complete is not None
    idp.approve_device(started.verification_uri_complete)
    session = login.wait()
    first = session.token_set
    assert first is not None
    assert first.refresh_token is not None
    refreshed = session.force_refresh()
    assert refreshed.refresh_token != first.refresh_token
    assert session.source.client_auth is login._poll.client_auth  # type: ignore[attr-defined]
    session.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_browser_login_from_the_issuer_alone(idp: OIDCProvider, mode: str) -> None:
    """The authorization, token and revocation endpoints and the iss rule all come
    from the provider's metadata; the user signs in through the loopback listener."""
    statuses: list[int] = []

    def browser(url: str) -> None:
        statuses.append(idp.browse(url).status_code)

    login = AuthorizationCodeLogin(
        issuer=idp.issuer,
        client_id=idp.native_client_id,
        scope="openid offline_access",
        prompt="consent",
        login_hint="alice",
        open_browser=browser,
        show_url=lambda url: None,
    )

    async def alogin() -> Session:
        await login.astart()
        return await login.await_session()

    if mode == "async":
        session = asyncio.run(alogin())
    else:
        login.start()
        session = login.wait()
    assert statuses == [200]
    assert login.authorization_url == idp.metadata["authorization_endpoint"]
    assert login._require_iss is bool(
        idp.metadata.get("authorization_response_iss_parameter_supported")
    )
    grant = session.source
    assert isinstance(grant, RefreshTokenGrant)
    assert grant.token_url == idp.token_url
    assert grant.revocation_url == idp.metadata["revocation_endpoint"]
    first = session.token_set
    assert first is not None
    assert first.refresh_token is not None
    assert session.force_refresh().refresh_token != first.refresh_token
    session.revoke()
    session.close()


def test_a_token_exchange_from_the_issuer(idp: OIDCProvider) -> None:
    basic = idp.basic
    subject = Session(
        ClientCredentials(
            issuer=idp.issuer,
            client_id=basic.client_id,
            client_secret=basic.client_secret,
            auth_method=basic.auth_method,
        )
    )
    client = idp.exchange_client
    grant = TokenExchange(
        issuer=idp.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        auth_method=client.auth_method,
        subject_token=subject,
        resource=API,
    )
    with subject, Session(grant) as session:
        access = session.token()
        assert access != subject.token()
    assert grant.token_url == idp.token_url
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["aud"] == API
    assert claims["client_id"] == client.client_id

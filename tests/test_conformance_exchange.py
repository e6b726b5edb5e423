"""Token exchange (RFC 8693) against a real oidc-provider, whose token
exchange is the grant type tests/idp/server.mjs registers: a client
credentials session's opaque token is exchanged for a token of another
resource; a subject token the provider did not issue is refused."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from _idp import IdPClient, OIDCProvider, idp_fixture, oidc_provider_fixture  # noqa: F401 - the fixtures
from authpulse import (
    ClientCredentials,
    JWTVerifier,
    OAuthError,
    Session,
    SubjectTokenError,
    TokenExchange,
)

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
API = "urn:authpulse:api"
OPAQUE = "urn:authpulse:opaque"


def service(idp: OIDCProvider) -> Session:
    """The subject: a service signed in with client credentials (an opaque token)."""
    client = idp.basic
    return Session(
        ClientCredentials(
            idp.token_url, client.client_id, client.client_secret, auth_method=client.auth_method
        )
    )


def exchanged(idp: OIDCProvider, subject: object, **kwargs: object) -> Session:
    client: IdPClient = idp.exchange_client
    grant = TokenExchange(
        idp.token_url,
        client.client_id,
        client.client_secret,
        subject_token=subject,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return Session(grant)


def test_a_service_token_is_exchanged_for_a_token_of_another_resource(
    idp: OIDCProvider,
) -> None:
    verifier = JWTVerifier(jwks_url=idp.jwks_uri, issuer=idp.issuer, audience=API)
    with service(idp) as subject, exchanged(idp, subject, resource=API) as session:
        access = session.token()
        assert access != subject.token()
        assert idp.active(subject.token())  # the subject's token is still its own
        claims = verifier.verify(access, now=time.time())
        assert claims["aud"] == API
        assert claims["client_id"] == idp.exchange_client.client_id
        token = session.token_set
        assert token is not None
        assert token.issued_token_type == ACCESS
        assert token.token_type == "Bearer"
        assert token.refresh_token is None


def test_the_exchange_in_async_code_and_again_on_refresh(idp: OIDCProvider) -> None:
    async def run() -> tuple[str, str]:
        async with service(idp) as subject, exchanged(idp, subject, audience=OPAQUE) as session:
            first = await session.atoken()
            await session.aforce_refresh()  # exchanges again
            return first, await session.atoken()

    first, second = asyncio.run(run())
    assert first != second
    answer = idp.introspect(second, idp.exchange_client)
    assert answer["active"] is True
    assert answer["aud"] == OPAQUE


def test_a_callable_subject_and_an_actor(idp: OIDCProvider) -> None:
    with service(idp) as subject, service(idp) as actor:
        session = exchanged(
            idp, lambda: SecretStr(subject.token()), actor_token=actor, resource=OPAQUE
        )
        with session:
            assert idp.active(session.token(), idp.exchange_client)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_subject_token_not_issued_by_the_provider_is_refused(
    idp: OIDCProvider, mode: str
) -> None:
    bogus = "not-a-token-this-provider-issued"
    session = exchanged(idp, SecretStr(bogus), resource=API)

    def sync() -> None:
        with session:
            session.token()

    async def run() -> None:
        async with session:
            await session.atoken()

    with pytest.raises(OAuthError) as info:
        sync() if mode == "sync" else asyncio.run(run())
    assert info.value.error == "invalid_grant"
    assert bogus not in f"{info.value} {info.value!r} {info.value.description}"


def test_an_empty_subject_never_reaches_the_provider(idp: OIDCProvider) -> None:
    with exchanged(idp, lambda: "", resource=API) as session, pytest.raises(SubjectTokenError):
        session.token()

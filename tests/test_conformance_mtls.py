"""Mutual TLS client authentication (RFC 8705) against a real oidc-provider.

A second IdP runs with ``AUTHPULSE_IDP_MTLS_DIR``: an https listener that
asks for client certificates, ``mtls_endpoint_aliases`` in its discovery
document, a ``tls_client_auth`` client (its certificate signed by the test
CA) and a ``self_signed_tls_client_auth`` one (its certificate registered),
both with certificate-bound access tokens. The certificates are made once
per test session (tests/_mtls.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _idp import OIDCProvider, ensure_node_modules, require_node
from _mtls import Certificates, make_certificates
from authpulse import ClientCredentials, OAuthError, Session, TLSClientAuth, discover
from authpulse._runtime.backend import backend
from authpulse._sessions.discovery_fetch import metadata_cache

TLS_CLIENT = "authpulse-mtls"
SELF_SIGNED_CLIENT = "authpulse-mtls-self"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("mtls-certs"))


@pytest.fixture(scope="module")
def mtls_idp(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OIDCProvider]:
    node, npm = require_node()
    ensure_node_modules(npm)
    env = {"AUTHPULSE_IDP_MTLS_DIR": str(certificates.directory)}
    with OIDCProvider.start(node, tmp_path_factory.mktemp("idp-mtls"), env=env) as idp:
        yield idp


@pytest.fixture
def idp(mtls_idp: OIDCProvider) -> Iterator[OIDCProvider]:
    assert mtls_idp.running, f"the IdP is not running:\n{mtls_idp.log_tail()}"
    metadata_cache.clear()
    yield mtls_idp
    metadata_cache.clear()
    assert mtls_idp.running, f"the IdP died during the test:\n{mtls_idp.log_tail()}"


def tls_context(certificates: Certificates, cert: Path, key: Path) -> ssl.SSLContext:
    """Trusts the test CA (the IdP's https listener) and presents ``cert``."""
    context = ssl.create_default_context(cafile=str(certificates.ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def mtls_session(grant: ClientCredentials, context: ssl.SSLContext) -> Session:
    hx = backend()
    return Session(
        grant,
        transport=hx.HTTPTransport(verify=context),
        async_transport=hx.AsyncHTTPTransport(verify=context),
    )


def fetch_token(session: Session, mode: str) -> str:
    async def atoken() -> str:
        async with session:
            return await session.atoken()

    if mode == "async":
        return asyncio.run(atoken())
    with session:
        return session.token()


def introspect(
    idp: OIDCProvider, context: ssl.SSLContext, client_id: str, token: str
) -> dict[str, Any]:
    url = idp.metadata["mtls_endpoint_aliases"]["introspection_endpoint"]
    with backend().Client(verify=context, timeout=10.0) as http:
        response = http.post(url, data={"token": token, "client_id": client_id})
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def test_discovery_names_the_mtls_aliases(idp: OIDCProvider) -> None:
    meta = discover(idp.issuer)
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(
        meta.token_endpoint_auth_methods_supported
    )
    alias = meta.endpoint("token_endpoint", mtls=True)
    assert alias is not None
    assert alias.startswith("https://127.0.0.1:")
    assert alias != meta.token_endpoint
    assert meta.endpoint("token_endpoint") == meta.token_endpoint == idp.token_url
    assert meta.raw["tls_client_certificate_bound_access_tokens"] is True


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tls_client_auth_gets_a_certificate_bound_token(
    idp: OIDCProvider, certificates: Certificates, mode: str
) -> None:
    context = tls_context(certificates, certificates.client, certificates.client_key)
    grant = ClientCredentials(issuer=idp.issuer, client_id=TLS_CLIENT, client_auth=TLSClientAuth())
    access = fetch_token(mtls_session(grant, context), mode)
    assert grant.token_url == idp.metadata["mtls_endpoint_aliases"]["token_endpoint"]
    answer = introspect(idp, context, TLS_CLIENT, access)
    assert answer["active"] is True
    assert answer["client_id"] == TLS_CLIENT
    assert answer["cnf"] == {"x5t#S256": certificates.thumbprint(certificates.client)}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_self_signed_tls_client_auth_gets_a_certificate_bound_token(
    idp: OIDCProvider, certificates: Certificates, mode: str
) -> None:
    context = tls_context(certificates, certificates.self_signed, certificates.self_signed_key)
    grant = ClientCredentials(
        issuer=idp.issuer,
        client_id=SELF_SIGNED_CLIENT,
        client_auth=TLSClientAuth(self_signed=True),
    )
    access = fetch_token(mtls_session(grant, context), mode)
    answer = introspect(idp, context, SELF_SIGNED_CLIENT, access)
    assert answer["active"] is True
    assert answer["cnf"] == {"x5t#S256": certificates.thumbprint(certificates.self_signed)}


@pytest.mark.parametrize(
    ("client_id", "self_signed", "presented"),
    [
        # signed by a CA the IdP does not trust
        (TLS_CLIENT, False, "stranger"),
        # trusted, but another subject than the registered one
        (TLS_CLIENT, False, "self_signed"),
        # a certificate other than the registered one
        (SELF_SIGNED_CLIENT, True, "client"),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_wrong_certificate_is_refused(
    idp: OIDCProvider,
    certificates: Certificates,
    client_id: str,
    self_signed: bool,
    presented: str,
    mode: str,
) -> None:
    cert: Path = getattr(certificates, presented)
    key: Path = getattr(certificates, f"{presented}_key")
    grant = ClientCredentials(
        issuer=idp.issuer,
        client_id=client_id,
        client_auth=TLSClientAuth(self_signed=self_signed),
    )
    session = mtls_session(grant, tls_context(certificates, cert, key))
    with pytest.raises(OAuthError) as info:
        fetch_token(session, mode)
    assert info.value.error == "invalid_client"
    assert "PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_a_certificate_the_client_is_refused(
    idp: OIDCProvider, certificates: Certificates, mode: str
) -> None:
    context = ssl.create_default_context(cafile=str(certificates.ca))
    grant = ClientCredentials(issuer=idp.issuer, client_id=TLS_CLIENT, client_auth=TLSClientAuth())
    with pytest.raises(OAuthError) as info:
        fetch_token(mtls_session(grant, context), mode)
    assert info.value.error == "invalid_client"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_revocation_goes_to_the_mtls_alias(
    idp: OIDCProvider, certificates: Certificates, mode: str
) -> None:
    context = tls_context(certificates, certificates.client, certificates.client_key)
    grant = ClientCredentials(issuer=idp.issuer, client_id=TLS_CLIENT, client_auth=TLSClientAuth())
    session = mtls_session(grant, context)

    async def arevoke() -> tuple[str, int]:
        async with session:
            return await session.atoken(), await session.arevoke()

    if mode == "async":
        access, revoked = asyncio.run(arevoke())
    else:
        with session:
            access, revoked = session.token(), session.revoke()
    assert grant.revocation_url == idp.metadata["mtls_endpoint_aliases"]["revocation_endpoint"]
    assert revoked == 1
    assert introspect(idp, context, TLS_CLIENT, access) == {"active": False}

"""Revocation (RFC 7009), introspection (RFC 7662) and refresh-token expiry
against a real oidc-provider (tests/idp/server.mjs)."""

from __future__ import annotations

import asyncio
import time

import pytest

from _idp import IdPClient, OIDCProvider, idp_fixture, oidc_provider_fixture  # noqa: F401 - the fixtures
from authpulse import (
    EventKind,
    IntrospectionProbe,
    LoginRequiredError,
    OAuthError,
    RefreshTokenGrant,
    Session,
    SessionManager,
)


def grant(idp: OIDCProvider, client: IdPClient, refresh_token: str) -> RefreshTokenGrant:
    return RefreshTokenGrant(
        idp.token_url,
        client.client_id,
        client.client_secret,
        refresh_token=refresh_token,
        auth_method=client.auth_method,
        revocation_url=str(idp.metadata["revocation_endpoint"]),
    )


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("name", ["basic", "post"])
def test_revoke_makes_the_next_refresh_need_a_login(
    idp: OIDCProvider, name: str, use_async: bool
) -> None:
    client = idp.clients[name]
    rt = idp.login(client)
    session = Session(grant(idp, client, rt))
    first = session.force_refresh()
    access = first.access_token.get_secret_value()
    current_rt = first.refresh_token.get_secret_value()  # type: ignore[union-attr]
    assert idp.active(access, client)
    assert idp.active(current_rt, client)
    if use_async:

        async def revoke_and_ask() -> int:
            revoked = await session.arevoke()
            with pytest.raises(LoginRequiredError, match="revoked"):
                await session.atoken()
            await session.aclose()  # its async client belongs to this loop
            return revoked

        revoked = asyncio.run(revoke_and_ask())
    else:
        revoked = session.revoke()
        with pytest.raises(LoginRequiredError, match="revoked"):
            session.token()
    assert revoked == 2  # the refresh token, then the opaque access token
    assert not idp.active(current_rt, client)
    assert not idp.active(access, client)
    assert session.token_set is None
    # the provider itself refuses the revoked refresh token
    status, body = idp.refresh(current_rt, client)
    assert status == 400
    assert body["error"] == "invalid_grant"
    with (
        Session(grant(idp, client, current_rt)) as other,
        pytest.raises(OAuthError, match="invalid_grant"),
    ):
        other.token()
    session.close()


def test_a_manager_close_revokes_the_grant(idp: OIDCProvider) -> None:
    client = idp.basic
    manager = SessionManager()
    ms = manager.create_session("alice", grant(idp, client, idp.login(client)))
    token = ms.session.force_refresh()
    rt = token.refresh_token.get_secret_value()  # type: ignore[union-attr]
    manager.close(ms.id)
    assert EventKind.REVOKED in [e.kind for e in manager.timeline(ms.id)]
    assert not idp.active(rt, client)
    manager.shutdown()


@pytest.mark.parametrize("use_async", [False, True])
def test_introspection_probe_in_the_health_report(idp: OIDCProvider, use_async: bool) -> None:
    client = idp.basic
    probe = IntrospectionProbe(
        str(idp.metadata["introspection_endpoint"]),
        client.client_id,
        client.client_secret,
        auth_method=client.auth_method,
    )
    manager = SessionManager(probe=probe)
    ms = manager.create_session("alice", grant(idp, client, idp.login(client)))
    token = ms.session.force_refresh()

    def ask() -> bool:
        return asyncio.run(probe.acall(ms)) if use_async else probe(ms)

    assert ask() is True
    verdict = probe.last[ms.id]
    assert verdict.active is True
    assert verdict.client_id == client.client_id
    assert verdict.exp is not None
    assert verdict.exp > time.time()
    assert "introspection" not in {c.name for c in manager.health(ms.id).components}
    # revoked outside the session (an admin, another device): the IdP says so
    idp.revoke(token.refresh_token.get_secret_value(), client)  # type: ignore[union-attr]
    assert ask() is True
    assert probe.last[ms.id].active is False
    reasons = {c.name: c.reason for c in manager.health(ms.id).components}
    assert reasons["introspection"] == "the IdP says the token is inactive"
    manager.shutdown()


def test_refresh_token_expiry_as_the_provider_sends_it(idp: OIDCProvider) -> None:
    # oidc-provider's token answers carry no refresh_expires_in: the set says
    # "unknown" rather than inventing one, and health does not count it
    client = idp.basic
    status, body = idp.refresh(idp.login(client), client)
    assert status == 200
    assert "refresh_expires_in" not in body
    assert "refresh_token_expires_in" not in body
    session = Session(grant(idp, client, idp.login(client)))
    assert session.force_refresh().refresh_expires_at is None
    assert "refresh_token" not in {c.name for c in session.health().components}
    session.close()

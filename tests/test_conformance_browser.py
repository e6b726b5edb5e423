"""The browser login (authorization code with PKCE, RFC 7636 / RFC 8252 / RFC 9207)
against a real oidc-provider, through the real loopback listener; the user's
browser is driven headless (:meth:`OIDCProvider.browse`).

The browser runs inside ``start()`` (as ``open_browser``), so the redirect has
come back before the wait begins: nothing waits on a timer.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from _idp import OIDCProvider, idp_fixture, oidc_provider_fixture  # noqa: F401 - the fixtures
from authpulse import (
    AsyncClient,
    AuthorizationCodeLogin,
    AuthorizationError,
    Client,
    JWTVerifier,
    RefreshTokenGrant,
    Session,
)
from authpulse._runtime.backend import httpx


class Browser:
    """The user's browser: signs in at the IdP and follows its redirect; records
    the loopback listener's answers."""

    def __init__(self, idp: OIDCProvider) -> None:
        self.idp = idp
        self.answers: list[int] = []

    def __call__(self, url: str) -> None:
        self.answers.append(self.idp.browse(url).status_code)


def browser_login(idp: OIDCProvider, browser: Browser, **kw: object) -> AuthorizationCodeLogin:
    args: dict[str, object] = {
        "scope": "openid offline_access",
        "prompt": "consent",  # else oidc-provider drops offline_access: no refresh token
        "login_hint": "alice",
        "issuer": idp.issuer,
        "require_iss": bool(idp.metadata.get("authorization_response_iss_parameter_supported")),
        "id_token_verifier": JWTVerifier(
            jwks_url=idp.jwks_uri, issuer=idp.issuer, audience=idp.native_client_id
        ),
        "open_browser": browser,
        "show_url": lambda url: None,
        **kw,
    }
    return AuthorizationCodeLogin(
        idp.authorization_url,
        idp.token_url,
        idp.native_client_id,
        **args,  # type: ignore[arg-type]
    )


def check_session(idp: OIDCProvider, session: Session) -> None:
    assert isinstance(session.source, RefreshTokenGrant)
    first = session.token_set
    assert first is not None
    assert first.refresh_token is not None
    assert first.id_token is not None
    with Client(session) as client:
        me = client.get(idp.userinfo_url)
        assert me.status_code == 200, me.text
        assert me.json()["sub"] == "alice"
        refreshed = session.force_refresh()
        assert refreshed.refresh_token is not None
        assert refreshed.refresh_token != first.refresh_token  # rotated
        assert client.get(idp.userinfo_url).status_code == 200


def test_a_browser_login_gives_a_session_that_refreshes(idp: OIDCProvider) -> None:
    assert idp.metadata.get("authorization_response_iss_parameter_supported") is True
    browser = Browser(idp)
    login = browser_login(idp, browser)
    started = login.start()
    assert httpx.URL(started.redirect_uri).host == "127.0.0.1"
    assert browser.answers == [200]
    session = login.wait()
    try:
        check_session(idp, session)
    finally:
        session.close()


@pytest.mark.anyio
async def test_an_async_browser_login_gives_a_session(idp: OIDCProvider) -> None:
    browser = Browser(idp)
    login = browser_login(idp, browser)
    await login.astart()
    session = await login.await_session()
    try:
        async with AsyncClient(session) as client:
            me = await client.get(idp.userinfo_url)
            assert me.status_code == 200, me.text
            first = session.token_set
            refreshed = await session.aforce_refresh()
            assert first is not None
            assert refreshed.refresh_token not in (None, first.refresh_token)
            assert (await client.get(idp.userinfo_url)).status_code == 200
    finally:
        await session.aclose()
    assert browser.answers == [200]


def test_a_login_without_pkce_is_refused_by_the_server(idp: OIDCProvider) -> None:
    params = {
        "client_id": idp.native_client_id,
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:50123/callback",
        "scope": "openid",
        "state": "s-0123456789abcdef",
    }
    with httpx.Client(timeout=10.0) as browser:
        answer = browser.get(idp.authorization_url, params=params)
    assert answer.status_code in (302, 303), answer.text
    target = httpx.URL(answer.headers["location"])
    assert (target.host, target.port, target.path) == ("127.0.0.1", 50123, "/callback")
    query = dict(parse_qsl(target.query.decode()))
    assert query["error"] == "invalid_request"
    assert "PKCE" in query.get("error_description", "")
    assert "code" not in query


def test_a_forged_state_is_refused_by_the_listener(idp: OIDCProvider) -> None:
    answers: list[int] = []

    def forging_browser(url: str) -> None:
        own = httpx.URL(idp.issuer)
        with httpx.Client(timeout=10.0) as browser:
            target = idp._follow(
                browser,
                browser.get(url),
                lambda t: (t.host, t.port) != (own.host, own.port),
                "forged login",
            )
            params = dict(target.params)
            forged = target.copy_with(params={**params, "state": "forged"})
            answers.append(browser.get(forged).status_code)
            answers.append(browser.get(target).status_code)

    login = browser_login(idp, Browser(idp), open_browser=forging_browser)
    login.start()
    assert answers == [400, 200]  # the forged redirect did not end the login
    session = login.wait()
    try:
        assert session.token()
    finally:
        session.close()


def test_an_iss_of_another_issuer_is_refused(idp: OIDCProvider) -> None:
    browser = Browser(idp)
    login = browser_login(idp, browser, issuer="http://127.0.0.1:1", id_token_verifier=None)
    login.start()
    with pytest.raises(AuthorizationError, match="issuer"):
        login.wait()
    assert browser.answers == [200]

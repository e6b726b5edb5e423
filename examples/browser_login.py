"""A desktop or CLI app signing its user in in the browser: the authorization
code grant with PKCE for native apps (RFC 7636, RFC 8252).

Runs against the embedded fakes (no network but the loopback): the fake
IdP's authorization server plays the user's browser, signs the user in and
follows the redirect to the login's listener on 127.0.0.1:

    python examples/browser_login.py

Against a real IdP, drop ``clock=``, ``transport=`` and ``open_browser=`` (the
default opens the system browser) and use its ``authorization_endpoint``,
``token_endpoint`` and ``issuer``.
"""

from __future__ import annotations

import authpulse
from authpulse.testing import FakeAPI, FakeAuthorizationServer, FakeClock, FakeIdP


def main() -> int:
    clock = FakeClock()
    # a public client: its secret in the fake IdP is "", so it sends none
    idp = FakeIdP(clock=clock, issuer="https://idp.example.test", clients={"desktop-app": ""})
    server = FakeAuthorizationServer(idp)  # /authorize, and the user's browser
    api = FakeAPI(idp, base_url="https://api.example.test")

    saved: list[authpulse.TokenSet] = []
    login = authpulse.AuthorizationCodeLogin(
        server.authorization_url,
        idp.token_url,
        "desktop-app",
        scope="openid offline_access",
        issuer=idp.issuer,  # the redirect's iss (RFC 9207) must name it
        open_browser=server.browse,  # default: webbrowser.open
        show_url=lambda url: print("opened the browser at the authorization endpoint"),
        clock=clock,
        transport=server.transport,
        on_token_update=saved.append,  # persist the refresh token here
    )
    started = login.start()  # listens on 127.0.0.1, opens the browser
    print(f"listening for the redirect at {started.redirect_uri}")
    session = login.wait()  # the code exchanged with the PKCE verifier
    print(f"signed in; the listener answered the browser with HTTP {server.last_status}")

    with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
        print("/v1/items", client.get("/v1/items").status_code)
        session.force_refresh()  # a RefreshTokenGrant, rotating against the IdP
        print("/v1/items after a refresh", client.get("/v1/items").status_code)
    session.close()
    print(f"token sets saved by on_token_update: {len(saved)}")
    return 0 if server.exchanges == 1 and len(saved) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

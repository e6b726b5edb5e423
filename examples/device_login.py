"""A CLI signing its user in with the device authorization grant (RFC 8628).

Runs against the embedded fake IdP (no network): a small device
authorization endpoint in front of ``authpulse.testing.FakeIdP``, whose
"user" approves the code after two polls; the waits are on a ``FakeClock``:

    python examples/device_login.py

Against a real IdP, drop ``clock=`` and the ``transport=`` arguments and use
its ``device_authorization_endpoint`` and ``token_endpoint``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx

import authpulse
from authpulse.testing import FakeAPI, FakeClock, FakeIdP

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceFront:
    """The device endpoints of the fake IdP: pending twice, then the tokens."""

    def __init__(self, idp: FakeIdP, approve_after: int = 2) -> None:
        self.idp = idp
        self.polls = 0
        self.approve_after = approve_after

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if request.url.path == "/device":
            return httpx.Response(
                200,
                json={
                    "device_code": "fake-device-code",
                    "user_code": "WDJB-MJHT",
                    "verification_uri": "https://idp.example.test/activate",
                    "verification_uri_complete": "https://idp.example.test/activate?user_code=WDJB-MJHT",
                    "expires_in": 600,
                    "interval": 5,
                },
            )
        if form.get("grant_type") != DEVICE_GRANT:
            return self.idp.handle(request)  # refreshes go to the fake IdP itself
        self.polls += 1
        if self.polls <= self.approve_after:
            return httpx.Response(400, json={"error": "authorization_pending"})
        # the user signed in: the fake IdP starts a grant and answers with its tokens
        refresh_token = self.idp.issue_refresh_token("cli")
        return self.idp.handle(
            httpx.Request(
                "POST",
                self.idp.token_url,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                headers={"Authorization": request.headers["authorization"]},
            )
        )

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)


def main() -> int:
    clock = FakeClock()
    idp = FakeIdP(
        clock=clock,
        issuer="https://idp.example.test",
        clients={"cli": "cli-secret"},
        access_ttl=600,
    )
    api = FakeAPI(idp, base_url="https://api.example.test")
    front = DeviceFront(idp)
    transport = httpx.MockTransport(front.handle)

    saved: list[authpulse.TokenSet] = []
    login = authpulse.DeviceCodeLogin(
        "https://idp.example.test/device",
        idp.token_url,
        "cli",
        "cli-secret",  # a public client (auth_method="none") passes no secret
        scope="openid offline_access",
        clock=clock,
        transport=transport,
        on_token_update=saved.append,  # persist the refresh token here
    )
    started = login.start()
    print(f"To sign in, open {started.verification_uri} and enter {started.user_code}")
    print(f"(or open {started.verification_uri_complete})")
    session = login.wait()  # polls every 5 s on the clock until the user signed in
    print(f"signed in after {login.polls} polls, {sum(clock.sleeps):.0f} s of waiting")

    with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
        print("/v1/items", client.get("/v1/items").status_code)
        session.force_refresh()  # the session refreshes (and rotates) on its own
        print("/v1/items after a refresh", client.get("/v1/items").status_code)
    session.close()
    print(f"token sets saved by on_token_update: {len(saved)}")
    return 0 if login.polls == 3 and len(saved) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

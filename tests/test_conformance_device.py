"""The device login (RFC 8628) against a real oidc-provider, the user's side
driven headless (:meth:`OIDCProvider.approve_device`).

The IdP's clock is real; the login's waits are on a FakeClock (no test sleeps
for an interval), and the user signs in from inside one of those waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from _idp import OIDCProvider, idp_fixture, oidc_provider_fixture  # noqa: F401 - the fixtures
from authpulse import (
    AccessDeniedError,
    Client,
    DeviceCodeLogin,
    RefreshTokenGrant,
    Session,
)
from authpulse.testing import FakeClock


class UserClock(FakeClock):
    """A FakeClock that runs ``user`` during its ``after``-th wait (the user
    signing in while the device polls)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.user: Callable[[], None] | None = None

    def _tick(self) -> None:
        if len(self.sleeps) == self.after and self.user is not None:
            self.user()

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self._tick()

    async def asleep(self, seconds: float) -> None:
        await super().asleep(seconds)
        if len(self.sleeps) == self.after and self.user is not None:
            await asyncio.to_thread(self.user)


def device_login(idp: OIDCProvider, clock: FakeClock) -> DeviceCodeLogin:
    return DeviceCodeLogin(
        idp.device_authorization_url,
        idp.token_url,
        idp.device_client_id,
        scope="openid offline_access",
        clock=clock,
    )


def assert_works_and_rotates(idp: OIDCProvider, session: Session) -> None:
    assert isinstance(session.source, RefreshTokenGrant)
    first = session.token_set
    assert first is not None
    assert first.refresh_token is not None
    with Client(session) as client:
        me = client.get(idp.userinfo_url)
        assert me.status_code == 200, me.text
        assert me.json()["sub"] == "alice"
        refreshed = session.force_refresh()
        assert refreshed.refresh_token is not None
        assert refreshed.refresh_token != first.refresh_token  # rotated
        assert refreshed.access_token != first.access_token
        again = client.get(idp.userinfo_url)
        assert again.status_code == 200, again.text


def test_device_login_pending_then_signed_in(idp: OIDCProvider) -> None:
    clock = UserClock(after=2)
    login = device_login(idp, clock)
    started = login.start()
    assert started.user_code
    assert started.verification_uri.startswith(idp.issuer)
    assert started.verification_uri_complete is not None
    assert started.interval >= 1
    clock.user = lambda: idp.approve_device(str(started.verification_uri_complete))
    session = login.wait()
    assert login.polls == 2  # one authorization_pending, then the tokens
    assert login.failed_polls == 0
    assert_works_and_rotates(idp, session)
    session.close()


def test_device_login_async(idp: OIDCProvider) -> None:
    clock = UserClock(after=1)
    login = device_login(idp, clock)

    async def main() -> Session:
        started = await login.astart()
        clock.user = lambda: idp.approve_device(str(started.verification_uri_complete))
        return await login.await_session()

    session = asyncio.run(main())
    assert login.polls == 1
    assert_works_and_rotates(idp, session)
    session.close()


def test_device_login_refused_by_the_user(idp: OIDCProvider) -> None:
    clock = UserClock(after=1)
    login = device_login(idp, clock)
    started = login.start()
    clock.user = lambda: idp.approve_device(str(started.verification_uri_complete), abort=True)
    with pytest.raises(AccessDeniedError):
        login.wait()
    assert login.polls == 1

"""DeviceCodeLogin (RFC 8628) against an httpx.MockTransport IdP, on a FakeClock."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr

from authpulse import (
    AccessDeniedError,
    Client,
    ConfigurationError,
    DeviceAuthorization,
    DeviceCodeExpiredError,
    DeviceCodeLogin,
    LoginCancelledError,
    LoginRequiredError,
    MemoryStore,
    OAuthError,
    RefreshTokenGrant,
    TokenEndpointError,
    TokenResponseError,
    TokenSet,
    UsageError,
)
from authpulse._core.device import (
    DEVICE_CODE_GRANT,
    Granted,
    PollAgain,
    parse_device_authorization,
    poll_step,
)
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP

ISSUER = "https://idp.test"
DEVICE_URL = f"{ISSUER}/device"
SECRET = "s3cret-client-secret"
DEVICE_CODE = "dc-very-secret-device-code"


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def oauth(error: str, status: int = 400) -> httpx.Response:
    return httpx.Response(status, json={"error": error})


class DeviceIdP:
    """A device authorization endpoint in front of a FakeIdP: polls answer from
    ``script`` (responses, or ``"grant"`` for a token set with a refresh token of
    the FakeIdP, so the session refreshes and rotates against it)."""

    def __init__(self, clock: FakeClock, script: list[Any], **device: Any) -> None:
        self.clock = clock
        self.idp = FakeIdP(clock=clock, access_ttl=600)
        self.script = list(script)
        self.device = {
            "device_code": DEVICE_CODE,
            "user_code": "WDJB-MJHT",
            "verification_uri": f"{ISSUER}/activate",
            "verification_uri_complete": f"{ISSUER}/activate?user_code=WDJB-MJHT",
            "expires_in": 600,
            "interval": 5,
            **device,
        }
        self.device = {k: v for k, v in self.device.items() if v is not None}
        self.requests: list[httpx.Request] = []
        self.poll_times: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        form = form_of(request)
        if request.url.path == "/device":
            return httpx.Response(200, json=self.device)
        if form.get("grant_type") != DEVICE_CODE_GRANT:
            return self.idp.handle(request)
        assert form["device_code"] == DEVICE_CODE
        self.poll_times.append(self.clock.monotonic())
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == "grant":
            rt = self.idp.issue_refresh_token("client")
            inner = httpx.Request(
                "POST",
                self.idp.token_url,
                data={"grant_type": "refresh_token", "refresh_token": rt},
                headers={"Authorization": request.headers["authorization"]},
            )
            return self.idp.handle(inner)
        if step == "grant-no-refresh":
            return httpx.Response(
                200, json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 60}
            )
        assert isinstance(step, httpx.Response)
        return step

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)

    def login(self, **kwargs: Any) -> DeviceCodeLogin:
        return DeviceCodeLogin(
            DEVICE_URL,
            self.idp.token_url,
            "client",
            kwargs.pop("client_secret", "secret"),
            clock=self.clock,
            transport=httpx.MockTransport(self.handle),
            async_transport=httpx.MockTransport(self.ahandle),
            **kwargs,
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def run(driver: str, login: DeviceCodeLogin, what: str) -> Any:
    if driver == "sync":
        return getattr(login, what)()
    name = {"start": "astart", "wait": "await_session"}[what]
    return asyncio.run(getattr(login, name)())


DRIVERS = pytest.mark.parametrize("driver", ["sync", "async"])


# ----------------------------------------------------------------- the pure parts


class TestParse:
    def test_fields_and_expiry(self) -> None:
        body = json.dumps(
            {
                "device_code": DEVICE_CODE,
                "user_code": "ABCD",
                "verification_uri": "https://idp.test/a",
                "expires_in": 300,
            }
        ).encode()
        got = parse_device_authorization(200, body, now=1000.0)
        assert isinstance(got, DeviceAuthorization)
        assert (got.user_code, got.verification_uri, got.verification_uri_complete) == (
            "ABCD",
            "https://idp.test/a",
            None,
        )
        assert got.expires_at == 1300.0
        assert got.interval == 5.0  # the RFC's default
        assert got.device_code.get_secret_value() == DEVICE_CODE
        assert DEVICE_CODE not in repr(got)

    @pytest.mark.parametrize(
        ("body", "what"),
        [
            ({"user_code": "A", "verification_uri": "u", "expires_in": 5}, "device_code"),
            ({"device_code": "d", "verification_uri": "u", "expires_in": 5}, "user_code"),
            ({"device_code": "d", "user_code": "A", "expires_in": 5}, "verification_uri"),
            ({"device_code": "d", "user_code": "A", "verification_uri": "u"}, "expires_in"),
            (
                {"device_code": "d", "user_code": "A", "verification_uri": "u", "expires_in": -1},
                "expires_in",
            ),
            (
                {
                    "device_code": "d",
                    "user_code": "A",
                    "verification_uri": "u",
                    "expires_in": 5,
                    "interval": "soon",
                },
                "interval",
            ),
        ],
    )
    def test_bad_answers_are_typed(self, body: dict[str, Any], what: str) -> None:
        got = parse_device_authorization(200, json.dumps(body).encode(), now=0.0)
        assert isinstance(got, TokenResponseError)
        assert what in str(got)

    def test_error_answer_is_an_oauth_error(self) -> None:
        got = parse_device_authorization(400, b'{"error": "invalid_client"}', now=0.0)
        assert isinstance(got, OAuthError)
        assert got.error == "invalid_client"

    def test_not_json(self) -> None:
        assert isinstance(parse_device_authorization(200, b"<html>", now=0.0), TokenResponseError)


class TestPollStep:
    def test_pending_keeps_the_interval(self) -> None:
        assert poll_step(OAuthError("authorization_pending"), 5.0) == PollAgain(5.0)

    def test_slow_down_adds_five_seconds(self) -> None:
        assert poll_step(OAuthError("slow_down"), 7.0) == PollAgain(12.0)

    def test_denied_and_expired_are_typed(self) -> None:
        assert isinstance(poll_step(OAuthError("access_denied"), 5.0), AccessDeniedError)
        expired = poll_step(OAuthError("expired_token"), 5.0, login_url="https://x/a")
        assert isinstance(expired, DeviceCodeExpiredError)
        assert expired.login_url == "https://x/a"

    def test_other_errors_end_the_login(self) -> None:
        err = OAuthError("invalid_client")
        assert poll_step(err, 5.0) is err

    def test_token_set_is_granted(self) -> None:
        token = TokenSet(access_token=SecretStr("at"), issued_at=0.0, expires_at=60.0)
        assert poll_step(token, 5.0) == Granted(token)


# ----------------------------------------------------------------- the login


class TestStart:
    @DRIVERS
    def test_start_returns_what_to_show(self, clock: FakeClock, driver: str) -> None:
        fake = DeviceIdP(clock, [], interval=7)
        login = fake.login(scope=["openid", "offline_access"])
        started = run(driver, login, "start")
        assert started.user_code == "WDJB-MJHT"
        assert started.verification_uri == f"{ISSUER}/activate"
        assert started.verification_uri_complete == f"{ISSUER}/activate?user_code=WDJB-MJHT"
        assert started.expires_at == clock.now() + 600
        assert started.interval == 7.0
        assert login.started is started
        (request,) = fake.requests
        form = form_of(request)
        assert form == {"scope": "openid offline_access"}  # no grant_type; Basic auth
        raw = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        assert raw == "client:secret"

    def test_public_client_sends_its_id(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, [])
        fake.login(client_secret=None).start()
        assert form_of(fake.requests[0]) == {"client_id": "client"}
        assert "authorization" not in fake.requests[0].headers

    def test_error_answer_is_raised_typed(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, [])
        fake.device = {"error": "invalid_client"}
        with pytest.raises(OAuthError, match="invalid_client"):
            fake.login().start()

    def test_wait_before_start_is_a_usage_error(self, clock: FakeClock) -> None:
        with pytest.raises(UsageError, match="start"):
            DeviceIdP(clock, []).login().wait()

    def test_bad_arguments(self) -> None:
        with pytest.raises(ConfigurationError, match="token_url"):
            DeviceCodeLogin(DEVICE_URL, "ftp://idp.test/token", "client")
        with pytest.raises(ConfigurationError):
            DeviceCodeLogin("not a url", f"{ISSUER}/token", "client")

    @pytest.mark.parametrize(
        ("argument", "value"),
        [
            ("clock", object()),
            ("on_token_update", "not callable"),
            ("transport", object()),
            ("retry", 5),
        ],
    )
    def test_session_arguments_are_checked_before_the_login(
        self, argument: str, value: object
    ) -> None:
        kwargs: dict[str, Any] = {argument: value}
        with pytest.raises(ConfigurationError, match=argument):
            DeviceCodeLogin(DEVICE_URL, f"{ISSUER}/token", "client", **kwargs)

    def test_repr_shows_no_secret(self, clock: FakeClock) -> None:
        login = DeviceIdP(clock, []).login(client_secret=SECRET)
        assert SECRET not in repr(login)


class TestWait:
    @DRIVERS
    def test_pending_then_success(self, clock: FakeClock, driver: str) -> None:
        pending = oauth("authorization_pending")
        fake = DeviceIdP(clock, [pending, pending, "grant"])
        login = fake.login()
        run(driver, login, "start")
        session = run(driver, login, "wait")
        assert clock.sleeps == [5.0, 5.0, 5.0]
        assert login.polls == 3
        assert login.failed_polls == 0
        assert isinstance(session.source, RefreshTokenGrant)
        assert session.token_set is not None
        assert fake.idp.validate(session.token())
        poll = form_of(fake.requests[1])
        assert poll == {"grant_type": DEVICE_CODE_GRANT, "device_code": DEVICE_CODE}

    @DRIVERS
    def test_slow_down_grows_the_interval_by_five_each_time(
        self, clock: FakeClock, driver: str
    ) -> None:
        slow, pending = oauth("slow_down"), oauth("authorization_pending")
        fake = DeviceIdP(clock, [slow, slow, pending, slow, "grant"])
        login = fake.login()
        run(driver, login, "start")
        run(driver, login, "wait")
        assert clock.sleeps == [5.0, 10.0, 15.0, 15.0, 20.0]
        assert [b - a for a, b in zip(fake.poll_times, fake.poll_times[1:], strict=False)] == [
            10.0,
            15.0,
            15.0,
            20.0,
        ]

    @DRIVERS
    def test_access_denied(self, clock: FakeClock, driver: str) -> None:
        fake = DeviceIdP(clock, [oauth("authorization_pending"), oauth("access_denied")])
        login = fake.login()
        run(driver, login, "start")
        with pytest.raises(AccessDeniedError) as info:
            run(driver, login, "wait")
        assert isinstance(info.value, OAuthError)
        assert info.value.error == "access_denied"
        assert login.polls == 2

    @DRIVERS
    def test_expired_token_answer(self, clock: FakeClock, driver: str) -> None:
        fake = DeviceIdP(clock, [oauth("expired_token")])
        login = fake.login()
        run(driver, login, "start")
        with pytest.raises(DeviceCodeExpiredError) as info:
            run(driver, login, "wait")
        assert isinstance(info.value, LoginRequiredError)
        assert info.value.login_url == f"{ISSUER}/activate"

    @DRIVERS
    def test_expires_on_the_clock(self, clock: FakeClock, driver: str) -> None:
        pending = oauth("authorization_pending")
        fake = DeviceIdP(clock, [pending] * 10, expires_in=12)
        login = fake.login()
        run(driver, login, "start")
        with pytest.raises(DeviceCodeExpiredError):
            run(driver, login, "wait")
        assert clock.sleeps == [5.0, 5.0, 2.0]  # the last wait ends at the expiry
        assert login.polls == 2

    @DRIVERS
    def test_network_errors_are_counted_and_retried_at_the_interval(
        self, clock: FakeClock, driver: str
    ) -> None:
        down = httpx.ConnectError("connection refused")
        fake = DeviceIdP(
            clock, [down, httpx.Response(503), oauth("authorization_pending"), "grant"]
        )
        login = fake.login()
        run(driver, login, "start")
        run(driver, login, "wait")
        assert clock.sleeps == [5.0, 5.0, 5.0, 5.0]
        assert (login.polls, login.failed_polls) == (4, 2)

    def test_network_errors_until_expiry(self, clock: FakeClock) -> None:
        down = httpx.ConnectError("connection refused")
        fake = DeviceIdP(clock, [down] * 10, expires_in=30)
        login = fake.login()
        login.start()
        with pytest.raises(DeviceCodeExpiredError):
            login.wait()
        assert clock.sleeps == [5.0] * 6  # no spinning: one poll per interval
        assert login.failed_polls == 5

    def test_no_secret_in_errors(self, clock: FakeClock) -> None:
        echo = httpx.Response(
            400,
            json={"error": "invalid_grant", "error_description": f"bad {DEVICE_CODE} {SECRET}"},
        )
        fake = DeviceIdP(clock, [echo])
        login = fake.login(client_secret=SECRET, auth_method="client_secret_post")
        login.start()
        with pytest.raises(OAuthError) as info:
            login.wait()
        assert DEVICE_CODE not in str(info.value)
        assert SECRET not in str(info.value)


class TestCancel:
    def test_cancel_from_another_thread(self, clock: FakeClock) -> None:
        pending = oauth("authorization_pending")
        fake = DeviceIdP(clock, [pending] * 100)
        login = fake.login()
        login.start()
        original = clock.sleep
        sleeps = 0

        def sleep(seconds: float) -> None:
            nonlocal sleeps
            sleeps += 1
            if sleeps == 3:  # cancelled by another thread while the login waits
                t = threading.Thread(target=login.cancel)
                t.start()
                t.join()
            original(seconds)

        clock.sleep = sleep  # type: ignore[method-assign]
        with pytest.raises(LoginCancelledError) as info:
            login.wait()
        assert isinstance(info.value, LoginRequiredError)
        assert login.polls == 2  # no poll after the cancel

    @pytest.mark.anyio
    async def test_cancel_from_another_task(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, [oauth("authorization_pending")] * 100)
        login = fake.login()
        await login.astart()
        original = clock.asleep
        two_polls = asyncio.Event()

        async def asleep(seconds: float) -> None:
            if login.polls == 2:
                two_polls.set()
            await original(seconds)
            await asyncio.sleep(0)  # the other task runs

        clock.asleep = asleep  # type: ignore[method-assign]

        async def cancel_soon() -> None:
            await two_polls.wait()
            login.cancel()

        canceller = asyncio.create_task(cancel_soon())
        with pytest.raises(LoginCancelledError):
            await login.await_session()
        await canceller
        assert login.polls == 2  # cancelled during the third wait: no third poll

    def test_a_new_start_clears_the_cancel(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, ["grant"])
        login = fake.login()
        login.cancel()
        login.start()
        assert login.wait().token_set is not None


class TestResultSession:
    def test_refreshes_with_rotation(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, ["grant"])
        login = fake.login()
        login.start()
        session = login.wait()
        first = session.token_set
        assert first is not None
        assert first.refresh_token is not None
        refreshed = session.force_refresh()
        assert refreshed.refresh_token is not None
        assert refreshed.refresh_token != first.refresh_token  # rotated
        with Client(session) as client:
            assert client.auth is not None

    def test_hook_and_store_get_the_login_token(self, clock: FakeClock) -> None:
        seen: list[TokenSet] = []
        store = MemoryStore()
        fake = DeviceIdP(clock, ["grant"])
        login = fake.login(store=store, store_key="cli:alice", on_token_update=seen.append)
        login.start()
        session = login.wait()
        assert seen == [session.token_set]
        stored = store.get_token("cli:alice")
        assert stored is not None
        session.force_refresh()
        assert len(seen) == 2

    def test_no_refresh_token_works_until_expiry(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, ["grant-no-refresh"])
        login = fake.login()
        login.start()
        session = login.wait()
        assert session.token() == "at-1"
        clock.advance(61)
        with pytest.raises(LoginRequiredError):
            session.token()


class TestMore:
    def test_start_on_a_server_error_is_typed(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, [])
        login = DeviceCodeLogin(
            DEVICE_URL,
            fake.idp.token_url,
            "client",
            "secret",
            clock=clock,
            transport=httpx.MockTransport(lambda request: httpx.Response(503)),
        )
        with pytest.raises(TokenEndpointError) as info:
            login.start()
        assert info.value.status_code == 503
        assert login.started is None

    @pytest.mark.anyio
    async def test_an_async_wait_is_cancelled_with_its_task(self, clock: FakeClock) -> None:
        fake = DeviceIdP(clock, [oauth("authorization_pending")] * 10)
        login = fake.login()
        await login.astart()
        waiting = asyncio.Event()

        async def asleep(seconds: float) -> None:
            waiting.set()
            await asyncio.Event().wait()  # a long wait, cut by the cancel

        clock.asleep = asleep  # type: ignore[method-assign]
        task = asyncio.create_task(login.await_session())
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert login.polls == 0

"""AuthorizationCodeLogin (RFC 6749 §4.1, RFC 7636, RFC 8252, RFC 9207) against the
fake IdP's authorization server, through the real loopback listener, on a FakeClock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from authpulse import (
    AccessDeniedError,
    AuthorizationCodeLogin,
    AuthorizationError,
    AuthorizationRequest,
    Client,
    ConfigurationError,
    LoginCancelledError,
    LoginRequiredError,
    LoginTimeoutError,
    MemoryStore,
    OAuthError,
    Session,
    TokenSet,
    UsageError,
)
from authpulse._acquire.loopback import RedirectListener
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeAuthorizationServer, FakeClock, FakeIdP

ISSUER = "https://idp.test"
CLIENT = "native-app"


class World:
    def __init__(self, **server: Any) -> None:
        self.clock = FakeClock()
        self.idp = FakeIdP(clock=self.clock, issuer=ISSUER, access_ttl=600, clients={CLIENT: ""})
        self.server = FakeAuthorizationServer(self.idp, **server)
        self.shown: list[str] = []
        self.saved: list[TokenSet] = []

    def login(self, browser: Callable[[str], object] | None = None, **kw: Any) -> Any:
        args: dict[str, Any] = {
            "scope": "openid offline_access",
            "issuer": ISSUER,
            "open_browser": browser if browser is not None else self.server.browse,
            "show_url": self.shown.append,
            "clock": self.clock,
            "transport": self.server.transport,
            "async_transport": self.server.async_transport,
            "on_token_update": self.saved.append,
            **kw,
        }
        return AuthorizationCodeLogin(
            self.server.authorization_url, self.idp.token_url, CLIENT, **args
        )


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return True
    return False


def test_a_login_gives_a_session_that_refreshes() -> None:
    world = World()
    login = world.login()
    started = login.start()
    assert isinstance(started, AuthorizationRequest)
    assert started.redirect_uri.startswith("http://127.0.0.1:")
    assert started.redirect_uri.endswith("/callback")
    assert world.shown == [started.authorization_url]
    assert world.server.last_status == 200  # the listener answered the browser
    session = login.wait()
    assert isinstance(session, Session)
    api = FakeAPI(world.idp, base_url="https://api.test")
    with Client(session, base_url=api.base_url, transport=api.transport) as client:
        assert client.get("/v1/items").status_code == 200
        session.force_refresh()  # a RefreshTokenGrant against the fake IdP
        assert client.get("/v1/items").status_code == 200
    session.close()
    assert len(world.saved) == 2
    assert world.server.exchanges == 1
    assert refused(started.redirect_uri)  # the listener is closed


@pytest.mark.anyio
async def test_an_async_login_gives_a_session() -> None:
    world = World()
    login = world.login()
    started = await login.astart()
    session = await login.await_session()
    token = await session.atoken()
    assert world.idp.validate(token)
    await session.aclose()
    assert refused(started.redirect_uri)


def test_the_authorization_url_carries_pkce_state_nonce_and_the_extras() -> None:
    world = World()
    login = world.login(
        prompt="consent", login_hint="alice", acr_values="mfa", max_age=60, resource="urn:api"
    )
    started = login.start()
    query = dict(httpx.URL(started.authorization_url).params)
    login.close()
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == started.redirect_uri
    assert query["scope"] == "openid offline_access"
    assert query["state"] == started.state.get_secret_value()
    assert len(query["nonce"]) >= 22
    assert {k: query[k] for k in ("prompt", "login_hint", "acr_values", "max_age", "resource")} == {
        "prompt": "consent",
        "login_hint": "alice",
        "acr_values": "mfa",
        "max_age": "60",
        "resource": "urn:api",
    }
    assert refused(started.redirect_uri)


def test_a_store_gets_the_logins_token_set() -> None:
    world = World()
    store = MemoryStore()
    login = world.login(store=store, store_key="user:alice")
    login.start()
    session = login.wait()
    stored = store.get_token("user:alice")
    assert stored is not None
    assert stored.token.refresh_token is not None
    session.close()


def test_the_listener_ignores_other_requests_until_the_right_one() -> None:
    world = World()
    statuses: list[int] = []

    def browser(url: str) -> None:
        redirect = dict(httpx.URL(url).params)["redirect_uri"]
        with httpx.Client(timeout=5.0) as other:
            forged = {"code": "x", "state": "forged"}
            statuses.append(other.get(redirect, params=forged).status_code)
            statuses.append(other.get(redirect, params={"code": "x"}).status_code)
            statuses.append(other.get(redirect.replace("/callback", "/other")).status_code)
            statuses.append(other.post(redirect, content=b"code=x").status_code)
        world.server.browse(url)

    login = world.login(browser)
    login.start()
    assert statuses == [400, 400, 404, 405]
    login.wait().close()
    assert world.server.exchanges == 1


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ({"deny": True}, AccessDeniedError),
        ({"error": "temporarily_unavailable"}, AuthorizationError),
        ({"iss": "https://evil.test"}, AuthorizationError),
        ({"nonce_override": "another-nonce"}, AuthorizationError),
    ],
)
def test_a_refused_or_forged_answer_is_a_typed_error(
    script: dict[str, Any], error: type[Exception]
) -> None:
    world = World()
    for name, value in script.items():
        setattr(world.server, name, value)
    login = world.login()
    started = login.start()
    with pytest.raises(error) as caught:
        login.wait()
    assert refused(started.redirect_uri)
    if script.get("error"):
        assert isinstance(caught.value, AuthorizationError)
        assert caught.value.error == "temporarily_unavailable"
        assert caught.value.login_url == world.server.authorization_url


def test_iss_is_required_when_the_server_promises_it() -> None:
    world = World(send_iss=False)
    login = world.login(require_iss=True)
    login.start()
    with pytest.raises(AuthorizationError, match="no iss"):
        login.wait()
    # without the promise, a missing iss is accepted
    login = world.login()
    login.start()
    login.wait().close()


def test_without_an_issuer_a_sent_iss_is_not_compared() -> None:
    world = World()
    world.server.iss = "https://elsewhere.test"
    login = world.login(issuer=None)
    login.start()
    login.wait().close()


def test_no_redirect_within_the_timeout_is_a_login_timeout() -> None:
    world = World()
    login = world.login(lambda url: None, timeout=30)
    started = login.start()
    began = world.clock.monotonic()
    with pytest.raises(LoginTimeoutError) as caught:
        login.wait()
    assert isinstance(caught.value, LoginRequiredError)
    assert caught.value.timeout == 30
    assert world.clock.monotonic() - began == pytest.approx(30)
    assert refused(started.redirect_uri)


@pytest.mark.anyio
async def test_an_async_wait_times_out_too() -> None:
    world = World()
    login = world.login(lambda url: None, timeout=5)
    await login.astart()
    with pytest.raises(LoginTimeoutError):
        await login.await_session()


def test_cancel_ends_the_wait() -> None:
    world = World()
    login = world.login(lambda url: login.cancel())
    started = login.start()
    with pytest.raises(LoginCancelledError):
        login.wait()
    assert refused(started.redirect_uri)


def test_waiting_before_start_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        World().login().wait()
    with pytest.raises(UsageError):
        asyncio.run(World().login().await_session())


def test_webbrowser_is_used_by_default_and_not_with_false(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    world = World()
    login = world.login(open_browser=True)
    login.start()
    login.close()
    assert opened == world.shown
    login = world.login(open_browser=False)
    login.start()
    login.close()
    assert len(opened) == 1
    assert len(world.shown) == 2


def test_the_default_show_url_prints_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    login = AuthorizationCodeLogin(
        world.server.authorization_url,
        world.idp.token_url,
        CLIENT,
        open_browser=False,
        clock=world.clock,
    )
    started = login.start()
    login.close()
    out = capsys.readouterr()
    assert out.out == ""
    assert started.authorization_url in out.err


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"code_challenge_method": "plain"}, "S256"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"redirect_path": "callback"}, "redirect_path"),
        ({"redirect_path": "/cb?x=1"}, "redirect_path"),
        ({"require_iss": True, "issuer": None}, "issuer"),
        ({"extra_params": {"state": "mine"}}, "state"),
        ({"extra_params": {"a": 1}}, "extra_params"),
        ({"max_age": -1}, "max_age"),
        ({"prompt": ""}, "prompt"),
        ({"open_browser": "yes"}, "open_browser"),
        ({"show_url": 3}, "show_url"),
    ],
)
def test_bad_arguments_are_configuration_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        World().login(**kw)


def test_an_insecure_authorization_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="authorization_url"):
        AuthorizationCodeLogin("http://idp.example/authorize", f"{ISSUER}/token", CLIENT)


def test_no_secret_reaches_a_repr_an_error_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = World()
    seen: list[str] = []

    def browser(url: str) -> None:
        seen.append(url)
        world.server.browse(url)

    world.server.error = "server_error"
    login = world.login(browser, client_secret=None)
    started = login.start()
    with pytest.raises(AuthorizationError) as caught:
        login.wait()
    state = started.state.get_secret_value()
    code_redirect = world.server.last_redirect or ""
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authpulse"))
    texts = [repr(login), repr(started), str(caught.value), repr(caught.value), logged]
    for text in texts:
        assert state not in text
    # a good login: the code and the tokens stay out of reprs and logs
    world.server.error = None
    login = world.login(browser)
    started = login.start()
    code = dict(httpx.URL(world.server.last_redirect or "").params)["code"]
    session = login.wait()
    token = session.token_set
    assert token is not None
    secrets = [code, started.state.get_secret_value(), token.access_token.get_secret_value()]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authpulse"))
    texts = [repr(login), repr(started), repr(session), repr(token), logged]
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert code_redirect
    session.close()


def test_a_wrong_verifier_is_refused_by_the_server() -> None:
    world = World()
    login = world.login()
    login.start()
    assert login._pending is not None
    login._pending.verifier = SecretStr("x" * 43)
    with pytest.raises(OAuthError) as caught:
        login.wait()
    assert caught.value.error == "invalid_grant"


def test_the_exchange_sends_code_redirect_uri_and_verifier_but_no_scope() -> None:
    world = World()
    forms: list[dict[str, str]] = []
    inner = world.server.handle

    def recording(request: httpx.Request) -> httpx.Response:
        forms.append(dict(httpx.QueryParams(request.content.decode())))
        return inner(request)

    login = world.login(transport=httpx.MockTransport(recording))
    started = login.start()
    login.wait().close()
    (form,) = forms
    assert set(form) == {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"}
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == started.redirect_uri
    assert 43 <= len(form["code_verifier"]) <= 128


def test_secrets_echoed_by_the_token_endpoint_are_scrubbed() -> None:
    world = World()

    def echoing(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        text = f"bad code {form['code']} for verifier {form['code_verifier']}"
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": text})

    login = world.login(transport=httpx.MockTransport(echoing))
    login.start()
    code = dict(httpx.URL(world.server.last_redirect or "").params)["code"]
    with pytest.raises(OAuthError) as caught:
        login.wait()
    assert caught.value.error == "invalid_grant"
    assert "bad code" in str(caught.value.description)
    assert code not in str(caught.value.description)
    assert code not in repr(caught.value)


def test_the_listener_takes_one_redirect_only() -> None:
    state = SecretStr("s" * 22)
    listener = RedirectListener(state, path="/done").open()
    try:
        with httpx.Client(timeout=5.0) as browser:
            first = browser.get(listener.redirect_uri, params={"code": "a", "state": "s" * 22})
            second = browser.get(listener.redirect_uri, params={"code": "b", "state": "s" * 22})
        assert (first.status_code, second.status_code) == (200, 400)
        assert "close this window" in first.text
        assert first.headers["cache-control"] == "no-store"
        assert listener.take() == "code=a&state=" + "s" * 22
        assert listener.refused == 1
        assert listener.redirect_uri.endswith("/done")
    finally:
        listener.close()
        listener.close()  # a second close is harmless
    assert refused(listener.redirect_uri)
    assert "s" * 22 not in repr(listener)


class CancellingClock(FakeClock):
    """Calls ``on_sleep`` at its first wait: something happening mid-wait."""

    def __init__(self) -> None:
        super().__init__()
        self.on_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.sleeps) == 1:
            self.on_sleep()


def test_cancel_from_another_thread_ends_a_wait_in_progress() -> None:
    world = World()
    clock = CancellingClock()
    login = world.login(lambda url: None, clock=clock)

    def cancel_elsewhere() -> None:
        thread = threading.Thread(target=login.cancel)
        thread.start()
        thread.join()

    clock.on_sleep = cancel_elsewhere
    started = login.start()
    with pytest.raises(LoginCancelledError):
        login.wait()
    assert clock.sleeps == [0.05]  # cancelled at the next look
    assert refused(started.redirect_uri)


@pytest.mark.anyio
async def test_cancelling_the_task_closes_the_listener() -> None:
    world = World()
    login = world.login(lambda url: None, clock=None, timeout=60)
    started = await login.astart()
    task = asyncio.create_task(login.await_session())
    for _ in range(3):  # let the wait begin
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert refused(started.redirect_uri)

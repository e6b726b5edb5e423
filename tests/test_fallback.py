from __future__ import annotations

import pytest
from pydantic import SecretStr

import authpulse
from authpulse import (
    ConfigurationError,
    CredentialsUnavailableError,
    EventKind,
    FallbackChain,
    LoginRequired,
    LoginRequiredError,
    OAuthError,
    RefreshTokenGrant,
    Session,
    SessionManager,
    SilentReauth,
    StoredCredentials,
    TokenEndpointError,
    TokenRetry,
    TokenSet,
    moves_to_next_level,
)
from authpulse.testing import FakeClock, FakeIdP, Fault


def chain(
    idp: FakeIdP,
    rt: str,
    *,
    creds: tuple[str, str] | None = None,
    silent: TokenSet | None = None,
    logins: list[LoginRequiredError] | None = None,
) -> FallbackChain:
    calls = logins if logins is not None else []
    return FallbackChain(
        [
            RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt),
            StoredCredentials(idp.token_url, "client", "secret", load=lambda: creds),
            SilentReauth(lambda current: silent),
            LoginRequired("https://app.test/login", on_login_required=calls.append),
        ],
        retry_primary_after=60,
    )


def session_for(idp: FakeIdP, clock: FakeClock, source: authpulse.TokenSource) -> Session:
    return Session(
        source,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        retry=TokenRetry(attempts=2),
    )


@pytest.fixture
def logins() -> list[LoginRequiredError]:
    return []


def test_primary_works_and_stays_at_level_zero(idp: FakeIdP, clock: FakeClock) -> None:
    src = chain(idp, idp.issue_refresh_token())
    s = session_for(idp, clock, src)
    assert idp.validate(s.token())
    assert src.level == 0
    assert idp.hits == 1
    assert s.health().score == 100


def test_revoked_grant_falls_back_to_stored_credentials(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    src = chain(idp, rt, creds=("alice", "wonderland"))
    s = session_for(idp, clock, src)
    events: list[str] = []
    s.add_listener(lambda kind, fields: events.append(kind))
    idp.revoke(rt)
    assert idp.validate(s.token())
    assert src.level == 1
    assert [r["grant_type"] for r in idp.requests] == ["refresh_token", "password"]
    assert "fallback_used" in events
    health = s.health()
    assert any(c.name == "fallback" for c in health.components)
    # the password grant gave a new refresh token: sticky level 1 until the primary retry
    clock.advance(3600)
    s.token()
    assert [r["grant_type"] for r in idp.requests][-1] == "refresh_token"  # primary revived
    assert src.level == 0
    assert "primary_recovered" in events


def test_sticky_level_is_tried_first(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    src = FallbackChain(
        [
            RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt),
            StoredCredentials(
                idp.token_url,
                "client",
                "secret",
                load=lambda: ("alice", "wonderland"),
                grant="password",
            ),
        ],
        retry_primary_after=10**6,
    )
    s = session_for(idp, clock, src)
    idp.revoke(rt)
    s.token()
    idp.revoke(s.token_set.refresh_token.get_secret_value())  # type: ignore[union-attr]
    n = len(idp.requests)
    clock.advance(600)
    s.token()
    # level 1 is tried first: no wasted refresh_token attempt
    assert [r["grant_type"] for r in idp.requests[n:]] == ["password"]


def test_network_errors_do_not_move_the_chain(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    src = chain(idp, rt, creds=("alice", "wonderland"))
    s = session_for(idp, clock, src)
    idp.set_outage(Fault.refused())
    with pytest.raises(TokenEndpointError):
        s.token()
    assert src.level == 0
    assert idp.hits == 2  # two attempts on the primary, none on the next levels
    idp.set_outage(Fault(status=503))
    with pytest.raises(TokenEndpointError):
        s.token()
    assert src.level == 0


def test_every_level_failing_ends_in_login_required(
    idp: FakeIdP, clock: FakeClock, logins: list[LoginRequiredError]
) -> None:
    rt = idp.issue_refresh_token()
    src = chain(idp, rt, creds=None, silent=None, logins=logins)
    s = session_for(idp, clock, src)
    idp.revoke(rt)
    with pytest.raises(LoginRequiredError) as info:
        s.token()
    assert info.value.login_url == "https://app.test/login"
    assert len(logins) == 1
    hits = idp.hits
    with pytest.raises(LoginRequiredError):
        s.token()  # answered at once: the chain (and the hook) is not run again
    assert len(logins) == 1
    assert idp.hits == hits
    report = s.health()
    assert report.band in (authpulse.Band.POOR, authpulse.Band.CRITICAL)
    # the user signs in again
    s.set_token(
        TokenSet(
            access_token=SecretStr("interactive"),
            issued_at=clock.now(),
            expires_at=clock.now() + 600,
        )
    )
    assert s.token() == "interactive"
    assert s.health().score == 100


def test_silent_reauth_level(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    silent = TokenSet(
        access_token=SecretStr("silent-at"), issued_at=clock.now(), expires_at=clock.now() + 900
    )
    src = chain(idp, rt, creds=None, silent=silent)
    s = session_for(idp, clock, src)
    idp.revoke(rt)
    assert s.token() == "silent-at"
    assert src.level == 2
    assert src.level_name() == "SilentReauth"


def test_stored_credentials_loader_errors_move_on_without_leaking(
    idp: FakeIdP, clock: FakeClock
) -> None:
    def broken() -> tuple[str, str]:
        raise RuntimeError("keychain locked: hunter2")

    src = FallbackChain(
        [
            StoredCredentials(idp.token_url, "client", "secret", load=broken),
            LoginRequired(),
        ]
    )
    s = session_for(idp, clock, src)
    with pytest.raises(LoginRequiredError) as info:
        s.token()
    assert info.value.login_url is None
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(s.stats())


def test_wrong_stored_password_is_scrubbed(idp: FakeIdP, clock: FakeClock) -> None:
    src = FallbackChain(
        [StoredCredentials(idp.token_url, "client", "secret", load=lambda: ("alice", "nope-pw"))]
    )
    s = session_for(idp, clock, src)
    with pytest.raises(OAuthError) as info:
        s.token()
    assert info.value.error == "invalid_grant"
    assert "nope-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("exc", "moves"),
    [
        (OAuthError("invalid_grant"), True),
        (OAuthError("access_denied"), True),
        (OAuthError("invalid_client"), False),
        (OAuthError("invalid_scope"), False),
        (authpulse.NoRefreshTokenError("none"), True),
        (CredentialsUnavailableError("none"), True),
        (TokenEndpointError("down", error_class=authpulse.ErrorClass.NETWORK), False),
        (TokenEndpointError("5xx", error_class=authpulse.ErrorClass.SERVER), False),
        (authpulse.TokenResponseError("bad"), False),
    ],
)
def test_rules_for_moving_on(exc: BaseException, moves: bool) -> None:
    assert moves_to_next_level(exc) is moves


def test_configuration_errors(idp: FakeIdP) -> None:
    with pytest.raises(ConfigurationError):
        FallbackChain([])
    with pytest.raises(ConfigurationError, match="last"):
        FallbackChain([LoginRequired(), RefreshTokenGrant(idp.token_url, "c", refresh_token="r")])
    with pytest.raises(ConfigurationError):
        LoginRequired("javascript:alert(1)")
    with pytest.raises(ConfigurationError):
        FallbackChain([object()])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        StoredCredentials(idp.token_url, "c", "s", load="nope")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_chain_with_async_levels(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    seen: list[LoginRequiredError] = []

    async def silent(current: TokenSet | None) -> TokenSet | None:
        return None

    async def on_login(err: LoginRequiredError) -> None:
        seen.append(err)

    src = FallbackChain(
        [
            RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt),
            SilentReauth(silent),
            LoginRequired("/login", on_login_required=on_login),
        ]
    )
    s = session_for(idp, clock, src)
    assert idp.validate(await s.atoken())
    idp.revoke(rt)
    clock.advance(3600)
    with pytest.raises(LoginRequiredError):
        await s.atoken()
    assert len(seen) == 1
    await s.aclose()


def test_sync_chain_with_async_login_hook(idp: FakeIdP, clock: FakeClock) -> None:
    seen: list[str | None] = []

    async def on_login(err: LoginRequiredError) -> None:
        seen.append(err.login_url)

    src = FallbackChain([LoginRequired("/login", on_login_required=on_login)])
    s = session_for(idp, clock, src)
    with pytest.raises(LoginRequiredError):
        s.token()
    assert seen == ["/login"]


def test_manager_tracks_fallback_state_and_events(idp: FakeIdP, clock: FakeClock) -> None:
    rt = idp.issue_refresh_token()
    m = SessionManager(clock=clock, transport=idp.transport)
    ms = m.create_session("alice", chain(idp, rt, creds=("alice", "wonderland")))
    idp.revoke(rt)
    ms.session.token()
    assert ms.auth_state.value == "fallback"
    kinds = [e.kind for e in m.timeline(ms.id)]
    assert EventKind.FALLBACK_USED in kinds
    assert any(c.name == "fallback" for c in m.health(ms.id).components)

    # everything fails: login required, in the state machine and the events
    rt2 = ms.session.token_set.refresh_token.get_secret_value()  # type: ignore[union-attr]
    idp.revoke(rt2)
    idp.users.clear()
    clock.advance(3600)
    with pytest.raises(LoginRequiredError):
        ms.session.token()
    assert ms.auth_state.value == "login_required"
    assert EventKind.LOGIN_REQUIRED in [e.kind for e in m.timeline(ms.id)]
    assert m.health(ms.id).band is authpulse.Band.CRITICAL
    m.shutdown()

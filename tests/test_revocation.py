"""Session.revoke / arevoke (RFC 7009) against the FakeIdP, on a FakeClock."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs

import pytest

from authpulse import (
    AuthorizationCodeLogin,
    ClientCredentials,
    ConfigurationError,
    DeviceCodeLogin,
    LoginRequiredError,
    MemoryStore,
    OAuthError,
    RefreshTokenGrant,
    RevocationError,
    Session,
    TokenSet,
)
from authpulse._runtime.backend import httpx
from authpulse._runtime.flow import run_sync
from authpulse._sessions.revocation import revocation_targets
from authpulse.testing import FakeClock, FakeIdP, Fault

SECRET = "secret"


def grant_for(idp: FakeIdP, rt: str, **kw: object) -> RefreshTokenGrant:
    return RefreshTokenGrant(
        idp.token_url,
        "client",
        SECRET,
        refresh_token=rt,
        revocation_url=idp.revocation_url,
        **kw,  # type: ignore[arg-type]
    )


def session_for(idp: FakeIdP, clock: FakeClock, **kw: object) -> tuple[Session, str]:
    rt = idp.issue_refresh_token()
    session = Session(
        grant_for(idp, rt),
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        **kw,  # type: ignore[arg-type]
    )
    return session, rt


def revoke(session: Session, use_async: bool) -> int:
    return asyncio.run(session.arevoke()) if use_async else session.revoke()


@pytest.mark.parametrize("use_async", [False, True])
class TestRevoke:
    def test_revokes_the_grant_and_the_next_token_needs_a_login(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        session, _ = session_for(idp, clock)
        access = session.token()
        rt = session.token_set.refresh_token  # type: ignore[union-attr]
        assert rt is not None
        assert revoke(session, use_async) == 2  # the refresh token, then the opaque access token
        assert session.token_set is None
        assert not idp.validate(access)
        with pytest.raises(LoginRequiredError, match="revoked"):
            session.token()
        # the IdP refuses the revoked refresh token too (not just the session)
        other = Session(grant_for(idp, rt.get_secret_value()), clock=clock, transport=idp.transport)
        with pytest.raises(OAuthError, match="invalid_grant"):
            other.token()
        session.close()

    def test_a_new_login_after_revocation_works(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        session, _ = session_for(idp, clock)
        session.token()
        revoke(session, use_async)
        fresh = Session(
            grant_for(idp, idp.issue_refresh_token()), clock=clock, transport=idp.transport
        )
        session.set_token(fresh.force_refresh())
        clock.advance(3600)
        assert idp.validate(session.token())
        session.close()

    def test_a_peer_that_can_start_afresh_gets_a_new_token_after_a_revocation(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        store = MemoryStore()
        grant = ClientCredentials(
            idp.token_url, "client", SECRET, revocation_url=idp.revocation_url
        )
        kw: dict[str, object] = {
            "clock": clock,
            "transport": idp.transport,
            "async_transport": idp.async_transport,
            "store": store,
            "store_key": "svc",
        }
        first = Session(grant, **kw)  # type: ignore[arg-type]
        first.token()
        revoke(first, use_async)
        peer = Session(grant, **kw)  # type: ignore[arg-type]
        assert idp.validate(peer.token())  # client credentials start afresh
        stored = store.get_token("svc")
        assert stored is not None
        assert stored.token.access_token.get_secret_value() == peer.token()
        first.close()
        peer.close()

    def test_a_session_that_has_not_read_its_store_revokes_the_stored_grant(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        # another process (``authpulse logout``) builds a session on the store and revokes
        store = MemoryStore()
        first, _ = session_for(idp, clock, store=store, store_key="alice")
        access = first.token()
        rt = first.token_set.refresh_token  # type: ignore[union-attr]
        assert rt is not None
        first.close()
        later = Session(
            RefreshTokenGrant(
                idp.token_url,
                "client",
                SECRET,
                refresh_token=None,
                revocation_url=idp.revocation_url,
            ),
            clock=clock,
            transport=idp.transport,
            async_transport=idp.async_transport,
            store=store,
            store_key="alice",
        )
        assert later.token_set is None
        assert revoke(later, use_async) == 2
        assert not idp.validate(access)
        other = Session(grant_for(idp, rt.get_secret_value()), clock=clock, transport=idp.transport)
        with pytest.raises(OAuthError, match="invalid_grant"):
            other.token()
        later.close()

    def test_the_stored_set_is_cleared(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        store = MemoryStore()
        session, _ = session_for(idp, clock, store=store, store_key="alice")
        session.token()
        assert store.get_token("alice") is not None
        revoke(session, use_async)
        stored = store.get_token("alice")
        assert stored is not None
        assert stored.token.refresh_token is None
        assert stored.token.expires_at <= clock.now()
        with pytest.raises(LoginRequiredError):
            session.token()
        # a peer sharing the store has nothing to use or refresh either
        peer = Session(
            RefreshTokenGrant(idp.token_url, "client", SECRET, refresh_token=None),
            clock=clock,
            transport=idp.transport,
            store=store,
            store_key="alice",
        )
        with pytest.raises(LoginRequiredError, match="revoked by a session sharing the store"):
            peer.token()
        assert idp.token_calls == 1
        session.close()

    def test_a_refused_revocation_raises_and_keeps_everything(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        session, _ = session_for(idp, clock)
        session.token()
        before = session.token_set
        idp.fail_next(1, Fault.oauth("unsupported_token_type"))
        with pytest.raises(RevocationError) as info:
            revoke(session, use_async)
        assert info.value.error == "unsupported_token_type"
        assert info.value.status_code == 400
        assert info.value.endpoint == "https://idp.test/revoke"
        assert session.token_set is before
        clock.advance(3600)
        assert idp.validate(session.token())  # the grant still works
        session.close()

    @pytest.mark.parametrize(
        "fault", [Fault(status=503), Fault.refused(), Fault(status=404, content_type="text/plain")]
    )
    def test_a_failure_is_typed_and_never_lost(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool, fault: Fault
    ) -> None:
        session, _ = session_for(idp, clock)
        session.token()
        idp.fail_next(1, fault)
        with pytest.raises(RevocationError, match="revoking the refresh token at"):
            revoke(session, use_async)
        assert session.token_set is not None
        session.close()

    def test_a_late_failure_still_forgets_the_revoked_grant(
        self, idp: FakeIdP, clock: FakeClock, use_async: bool
    ) -> None:
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(parse_qs(request.content.decode()).get("token_type_hint", [""])[0])
            if calls[-1] == "access_token":
                return httpx.Response(503)
            return idp.handle(request)

        session = Session(
            grant_for(idp, idp.issue_refresh_token()),
            clock=clock,
            transport=httpx.MockTransport(handler),
            async_transport=httpx.MockTransport(handler),
        )
        session.token()
        calls.clear()
        with pytest.raises(RevocationError, match="access token"):
            revoke(session, use_async)
        assert calls == ["refresh_token", "access_token"]
        assert session.token_set is None
        with pytest.raises(LoginRequiredError):
            session.token()
        session.close()

    def test_no_secret_in_the_error(self, clock: FakeClock, use_async: bool) -> None:
        # an IdP echoing the request (token, Basic credentials) in its error text
        idp = FakeIdP(clock=clock, clients={"client": "very-secret-client-pw"})
        grant = RefreshTokenGrant(
            idp.token_url,
            "client",
            "very-secret-client-pw",
            refresh_token=idp.issue_refresh_token(),
            revocation_url=idp.revocation_url,
        )
        session = Session(
            grant, clock=clock, transport=idp.transport, async_transport=idp.async_transport
        )
        session.token()
        rt = session.token_set.refresh_token.get_secret_value()  # type: ignore[union-attr]
        basic = base64.b64encode(b"client:very-secret-client-pw").decode()
        idp.fail_next(1, Fault.oauth("invalid_request", description=f"bad token {rt} auth {basic}"))
        with pytest.raises(RevocationError) as info:
            revoke(session, use_async)
        text = f"{info.value} {info.value!r} {info.value.args}"
        for secret in (rt, "very-secret-client-pw", basic):
            assert secret not in text
        session.close()


class TestTargets:
    def test_a_jwt_access_token_is_left_to_expire(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True)
        session, _ = session_for(idp, clock)
        session.token()
        assert session.revoke() == 1
        assert idp.revocations == 1

    def test_without_a_refresh_token_the_access_token_is_revoked(
        self, idp: FakeIdP, clock: FakeClock
    ) -> None:
        session = Session(
            ClientCredentials(idp.token_url, "client", SECRET, revocation_url=idp.revocation_url),
            clock=clock,
            transport=idp.transport,
        )
        first = session.token()
        assert session.revoke() == 1
        assert not idp.validate(first)
        second = session.token()  # client credentials: a new token is one request away
        assert second != first
        assert idp.validate(second)

    def test_targets_in_order(self, clock: FakeClock) -> None:
        grant = grant_for(FakeIdP(clock=clock), "rt-1")
        token = TokenSet(access_token="opaque", issued_at=0, expires_at=60)  # type: ignore[arg-type]
        hints = [h for _, h in revocation_targets(grant, token)]
        assert hints == ["refresh_token", "access_token"]
        assert revocation_targets(grant, None)[0][1] == "refresh_token"

    def test_without_a_revocation_url(self, idp: FakeIdP, clock: FakeClock) -> None:
        session = Session(ClientCredentials(idp.token_url, "client", SECRET), clock=clock)
        with pytest.raises(ConfigurationError, match="no revocation_url"):
            session.revoke()

    def test_an_insecure_revocation_url_is_refused(self, idp: FakeIdP) -> None:
        with pytest.raises(ConfigurationError, match="revocation_url"):
            ClientCredentials(
                idp.token_url, "client", SECRET, revocation_url="http://idp.example/revoke"
            )

    def test_the_request_authenticates_as_the_grant(self, idp: FakeIdP, clock: FakeClock) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return idp.handle(request)

        session = Session(
            RefreshTokenGrant(
                idp.token_url,
                "client",
                SECRET,
                refresh_token=idp.issue_refresh_token(),
                auth_method="client_secret_post",
                revocation_url=idp.revocation_url,
            ),
            clock=clock,
            transport=httpx.MockTransport(handler),
        )
        session.token()
        session.revoke()
        form = parse_qs(seen[1].content.decode())
        assert seen[1].url == idp.revocation_url
        assert form["client_secret"] == [SECRET]
        assert form["token_type_hint"] == ["refresh_token"]
        assert "grant_type" not in form

    @pytest.mark.parametrize("kind", [DeviceCodeLogin, AuthorizationCodeLogin])
    def test_a_login_passes_the_url_to_its_session(
        self, idp: FakeIdP, kind: type[DeviceCodeLogin | AuthorizationCodeLogin]
    ) -> None:
        login = kind(
            f"{idp.issuer}/authorize",
            idp.token_url,
            "client",
            SECRET,
            revocation_url=idp.revocation_url,
            transport=idp.transport,
        )
        token = TokenSet(
            access_token="at",  # type: ignore[arg-type]
            refresh_token="rt",  # type: ignore[arg-type]
            issued_at=0,
            expires_at=60,
        )
        session = run_sync(login._session_flow(token, f"{idp.issuer}/authorize"))
        assert getattr(session.source, "revocation_url", None) == idp.revocation_url

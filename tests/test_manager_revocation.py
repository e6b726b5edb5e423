"""SessionManager close / cancel / purge revoke the grant (revoke_on_close)."""

from __future__ import annotations

import asyncio

import pytest

from authpulse import (
    ClientCredentials,
    ConfigurationError,
    EventKind,
    ManagedSession,
    ManagerSettings,
    RefreshTokenGrant,
    SessionManager,
    SessionStatus,
)
from authpulse._surfaces.settings import AuthpulseSettings
from authpulse.metrics._labels import manager_increments
from authpulse.testing import FakeClock, FakeIdP, Fault


def make_manager(clock: FakeClock, idp: FakeIdP, **settings: object) -> SessionManager:
    return SessionManager(
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        seed=1,
        settings=ManagerSettings(**settings),  # type: ignore[arg-type]
    )


def user_grant(idp: FakeIdP, *, revocation: bool = True) -> RefreshTokenGrant:
    return RefreshTokenGrant(
        idp.token_url,
        "client",
        "secret",
        refresh_token=idp.issue_refresh_token(),
        revocation_url=idp.revocation_url if revocation else None,
    )


def started(m: SessionManager, idp: FakeIdP, **kw: object) -> ManagedSession:
    ms = m.create_session("alice", user_grant(idp, **kw))  # type: ignore[arg-type]
    ms.session.token()
    return ms


def kinds(m: SessionManager, sid: str) -> list[EventKind]:
    return [e.kind for e in m.timeline(sid)]


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("how", ["close", "cancel"])
def test_ending_a_session_revokes_its_grant(
    manager: SessionManager, idp: FakeIdP, how: str, use_async: bool
) -> None:
    ms = started(manager, idp)
    access = ms.session.token()
    if use_async:
        asyncio.run(getattr(manager, "a" + how)(ms.id))
    else:
        getattr(manager, how)(ms.id)
    assert idp.revocations == 2
    assert not idp.validate(access)
    events = list(manager.timeline(ms.id))
    revoked = [e for e in events if e.kind is EventKind.REVOKED]
    assert len(revoked) == 1
    assert revoked[0].fields["revoked"] == 2
    order = kinds(manager, ms.id)
    assert order.index(EventKind.REVOKED) < order.index(EventKind.STATUS_CHANGED)  # then it ends
    assert ms.session.token_set is None
    stored = manager.store.get_token(ms.id)
    assert stored is None or stored.token.refresh_token is None


def test_a_failed_revocation_is_on_the_timeline_and_the_close_goes_on(
    manager: SessionManager, idp: FakeIdP, caplog: pytest.LogCaptureFixture
) -> None:
    ms = started(manager, idp)
    rt = ms.session.token_set.refresh_token.get_secret_value()  # type: ignore[union-attr]
    idp.fail_next(1, Fault.oauth("invalid_client", 401, description=f"echo {rt}"))
    record = manager.close(ms.id)
    assert record.status is SessionStatus.COMPLETED
    failed = [e for e in manager.timeline(ms.id) if e.kind is EventKind.REVOCATION_FAILED]
    assert len(failed) == 1
    fields = failed[0].fields
    assert fields["error_type"] == "RevocationError"
    assert fields["status_code"] == 401
    assert "invalid_client" in str(fields["error"])
    assert rt not in str(fields)
    assert rt not in caplog.text
    assert "error" in failed[0].labels
    assert any("could not revoke" in r.message for r in caplog.records)
    assert manager_increments(failed[0]) == [("revocations", ("failed",))]


def test_the_setting_turns_it_off(clock: FakeClock, idp: FakeIdP) -> None:
    m = make_manager(clock, idp, revoke_on_close=False)
    ms = started(m, idp)
    m.close(ms.id)
    assert idp.revocations == 0
    assert EventKind.REVOKED not in kinds(m, ms.id)
    assert ms.session.token_set is not None
    m.shutdown()


def test_a_grant_without_a_revocation_url_is_left_alone(
    manager: SessionManager, idp: FakeIdP
) -> None:
    ms = started(manager, idp, revocation=False)
    cc = manager.create_session("bob", ClientCredentials(idp.token_url, "client", "secret"))
    manager.cancel(ms.id)
    manager.close(cc.id)
    assert idp.revocations == 0
    assert EventKind.REVOCATION_FAILED not in kinds(manager, ms.id)


def test_purge_revokes_a_grant_that_ended_without_one(clock: FakeClock, idp: FakeIdP) -> None:
    m = make_manager(clock, idp, revoke_on_close=False)
    ms = started(m, idp)
    m.close(ms.id)
    assert idp.revocations == 0
    object.__setattr__(m, "settings", ManagerSettings(revoke_on_close=True))
    clock.advance(10)
    assert m.purge(older_than=5) == 1
    assert idp.revocations == 2
    m.shutdown()


def test_purge_does_not_revoke_twice(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = started(manager, idp)
    manager.close(ms.id)
    clock.advance(10)
    assert manager.purge(older_than=5) == 1
    assert idp.revocations == 2


def test_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ManagerSettings().revoke_on_close is True
    with pytest.raises(ConfigurationError, match="revoke_on_close"):
        ManagerSettings(revoke_on_close="no")  # type: ignore[arg-type]
    monkeypatch.setenv("AUTHPULSE_REVOKE_ON_CLOSE", "false")
    assert AuthpulseSettings().manager_settings().revoke_on_close is False


def test_the_revoked_event_counts_as_ok() -> None:
    from authpulse import Event

    event = Event(kind=EventKind.REVOKED, at=0.0, session_id="s", fields={"revoked": 1})
    assert manager_increments(event) == [("revocations", ("ok",))]

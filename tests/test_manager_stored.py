"""SessionManager on sessions that are stored but not loaded in this process:
what operators and tools (the ``authpulse`` command) need without a token source."""

from __future__ import annotations

from typing import Any

import pytest

import authpulse
from authpulse import (
    ConfigurationError,
    EventKind,
    SessionClosedError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
)
from authpulse.testing import FakeClock, FakeIdP, Fault

DAY = 86400.0


def grant(idp: FakeIdP) -> authpulse.RefreshTokenGrant:
    return authpulse.RefreshTokenGrant(
        idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
    )


@pytest.fixture
def store() -> authpulse.MemoryStore:
    return authpulse.MemoryStore()


@pytest.fixture
def writer(store: authpulse.MemoryStore, clock: FakeClock, idp: FakeIdP) -> SessionManager:
    """The process that created the sessions."""
    return SessionManager(store, clock=clock, transport=idp.transport)


@pytest.fixture
def admin(store: authpulse.MemoryStore, clock: FakeClock) -> SessionManager:
    """Another process on the same store, with no live sessions: an operator's tool."""
    return SessionManager(store, clock=clock)


def kinds(m: SessionManager, sid: str) -> list[EventKind]:
    return [e.kind for e in m.timeline(sid)]


# ----------------------------------------------------------------------------- cancel


def test_cancel_stored_ends_a_session_that_is_not_loaded_here(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))
    with pytest.raises(authpulse.UsageError, match="recover"):
        admin.cancel(ms.id)  # the live-only method still needs the live part
    record = admin.cancel_stored(ms.id, "ops ticket 42")
    assert record.status is SessionStatus.CANCELLED
    assert record.ended_at is not None
    assert record.error is not None
    assert record.error.message == "ops ticket 42"
    assert admin.record(ms.id).status is SessionStatus.CANCELLED
    assert kinds(admin, ms.id)[-2:] == [EventKind.STATUS_CHANGED, EventKind.CLOSED]
    closed = admin.timeline(ms.id)[-1]
    assert closed.fields["from"] == "ACTIVE"
    assert closed.fields["to"] == "CANCELLED"
    assert closed.fields["error"] == "ops ticket 42"
    # the admin manager's own statistics count only its own sessions
    assert admin.stats().total == 0


def test_cancel_stored_uses_the_live_part_when_there_is_one(
    writer: SessionManager, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))
    writer.cancel_stored(ms.id)
    assert ms.status is SessionStatus.CANCELLED
    assert ms.session.closed  # the token engine was closed too, as cancel() does
    assert writer.stats().by_status["CANCELLED"] == 1


def test_cancel_stored_refuses_ended_and_unknown_sessions(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))
    writer.close(ms.id)
    with pytest.raises(SessionClosedError) as exc:
        admin.cancel_stored(ms.id)
    assert exc.value.status is SessionStatus.COMPLETED
    with pytest.raises(SessionNotFoundError):
        admin.cancel_stored("no-such-id")


# ----------------------------------------------------------------------------- cleanup


def test_cleanup_of_stored_sessions_is_opt_in(
    writer: SessionManager, admin: SessionManager, clock: FakeClock, idp: FakeIdP
) -> None:
    old = [writer.create_session("alice", grant(idp)) for _ in range(3)]
    writer.pause(old[0].id)
    clock.advance(2 * DAY)
    young = writer.create_session("bob", grant(idp))
    assert admin.cleanup(DAY) == 0  # nothing live here: the old behaviour
    seen: list[tuple[int, int]] = []
    assert admin.cleanup(DAY, include_stored=True, progress=lambda d, t: seen.append((d, t))) == 3
    assert seen == [(1, 3), (2, 3), (3, 3)]
    for ms in old:
        record = admin.record(ms.id)
        assert record.status is SessionStatus.TIMEOUT
        assert admin.timeline(ms.id)[-1].fields["reason"] == "cleanup: max age"
    assert admin.record(young.id).status is SessionStatus.ACTIVE
    assert len(admin.list(limit=10)) == 4  # nothing deleted


# ----------------------------------------------------------------------------- purge / archive


def test_purge_reports_progress_and_ended_before_lists_the_candidates(
    writer: SessionManager, admin: SessionManager, clock: FakeClock, idp: FakeIdP
) -> None:
    ended = [writer.create_session("alice", grant(idp)) for _ in range(2)]
    for ms in ended:
        writer.close(ms.id)
    writer.create_session("alice", grant(idp))
    clock.advance(DAY)
    assert sorted(r.id for r in admin.ended_before(3600)) == sorted(ms.id for ms in ended)
    assert admin.ended_before(2 * DAY) == []
    seen: list[tuple[int, int]] = []
    assert admin.purge(3600, progress=lambda d, t: seen.append((d, t))) == 2
    assert seen == [(1, 2), (2, 2)]
    for bad in (-1, float("nan"), True):
        with pytest.raises(ConfigurationError):
            admin.ended_before(bad)


def test_archive_writes_ended_sessions_once_and_marks_them(
    writer: SessionManager, admin: SessionManager, clock: FakeClock, idp: FakeIdP
) -> None:
    done = writer.create_session("alice", grant(idp))
    writer.close(done.id, "FAILED", error="boom")
    writer.create_session("bob", grant(idp))  # open: never archived
    clock.advance(60)
    lines: list[dict[str, Any]] = []
    assert admin.archive(lines.append) == 1
    (entry,) = lines
    assert entry["session"]["id"] == done.id
    assert entry["session"]["status"] == "FAILED"
    assert entry["archived_at"] == clock.now()
    assert [e["kind"] for e in entry["timeline"]][:1] == ["session_created"]
    assert "closed" in [e["kind"] for e in entry["timeline"]]
    assert kinds(admin, done.id)[-1] is EventKind.ARCHIVED
    assert admin.archive(lines.append) == 0  # archived before: skipped
    assert admin.archive(lines.append, include_archived=True) == 1
    assert admin.archive(lines.append, older_than=3600, include_archived=True) == 0
    assert admin.record(done.id).status is SessionStatus.FAILED  # nothing deleted


def test_archive_marks_nothing_when_writing_fails(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))
    writer.close(ms.id)

    def broken(entry: dict[str, Any]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        admin.archive(broken)
    assert EventKind.ARCHIVED not in kinds(admin, ms.id)


# ----------------------------------------------------------------------------- health / export


def test_health_of_a_stored_session_comes_from_its_token_and_status(
    writer: SessionManager, admin: SessionManager, clock: FakeClock, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))  # idp tokens live 600 s
    no_token = admin.health(ms.id)
    assert no_token.score == 50
    assert [c.name for c in no_token.components] == ["token"]
    ms.session.token()
    fresh = admin.health(ms.id)
    assert fresh.score == 100
    assert fresh.signals.has_token
    assert fresh.signals.remaining_fraction is not None
    assert fresh.signals.remaining_fraction > 0.9
    clock.advance(570)  # inside the refresh window
    stale = admin.health(ms.id)
    assert stale.signals.freshness == "stale"
    assert stale.components[0].name == "token"
    assert 5 <= stale.components[0].penalty < 50
    clock.advance(60)
    expired = admin.health(ms.id)
    assert expired.signals.freshness == "expired"
    assert expired.components[0].penalty == 50
    writer.close(ms.id)
    assert admin.health(ms.id).score == 0
    assert admin.health(ms.id).signals.auth_state == "closed"
    with pytest.raises(SessionNotFoundError):
        admin.health("no-such-id")


def test_health_of_a_stored_session_reflects_its_persisted_auth_state(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = writer.create_session("alice", grant(idp))
    ms.session.token()
    clock.advance(570)
    idp.set_outage(Fault(status=400, body={"error": "invalid_request"}))
    with pytest.raises(authpulse.TokenError):
        ms.session.force_refresh()
    assert admin.record(ms.id).auth_state == "degraded"
    report = admin.health(ms.id)
    assert "state" in [c.name for c in report.components]


def test_export_of_a_stored_session_has_token_metadata_and_no_tokens(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP
) -> None:
    ms = writer.create_session("alice", grant(idp))
    ts = ms.session.force_refresh()
    out = admin.export(ms.id)
    assert out["session"]["id"] == ms.id
    assert out["auth_state"] == "fresh"
    assert out["health"]["score"] == 100
    token = out["token"]
    assert token["expires_at"] == ts.expires_at
    assert token["has_refresh_token"] is True
    assert token["stored_version"] >= 1
    text = admin.export_json(ms.id)
    assert ts.access_token.get_secret_value() not in text
    assert ts.refresh_token is not None
    assert ts.refresh_token.get_secret_value() not in text


def test_export_reports_an_unreadable_token_set_instead_of_failing(
    tmp_path: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    key = authpulse.TokenCipher.generate_key()
    url = f"sqlite:///{tmp_path / 's.db'}"
    writer = SessionManager(
        authpulse.open_store(url, encryption_keys=[key]), clock=clock, transport=idp.transport
    )
    ms = writer.create_session("alice", grant(idp))
    ms.session.token()
    admin = SessionManager(authpulse.open_store(url), clock=clock)  # no key
    try:
        out = admin.export(ms.id)
        assert out["token"] is None
        assert out["token_error"] == "DecryptionError"
        assert "health" not in out
        with pytest.raises(authpulse.DecryptionError):
            admin.health(ms.id)
    finally:
        admin.shutdown()
        writer.shutdown()


# ----------------------------------------------------------------------------- stats


def test_stored_stats_count_every_stored_session(
    writer: SessionManager, admin: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    a = writer.create_session("alice", grant(idp))
    writer.create_session("alice", grant(idp), kind="integration")
    b = writer.create_session("bob", grant(idp))
    clock.advance(100)
    writer.close(a.id)
    writer.close(b.id, "FAILED", error="nope")
    assert admin.stats().total == 0
    stats = admin.stored_stats()
    assert stats.total == 3
    assert stats.active == 1
    assert stats.by_status["COMPLETED"] == 1
    assert stats.by_status["FAILED"] == 1
    assert stats.success_rate == 0.5
    assert stats.average_duration == 100
    assert stats.failure_distribution == {"failed": 1}
    assert stats.requests == 0
    assert admin.stored_stats(owner="alice").total == 2
    assert admin.stored_stats(owner="alice", kind="integration").total == 1
    with pytest.raises(ConfigurationError):
        admin.stored_stats(kind="robot")

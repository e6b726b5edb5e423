from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

import authpulse
from authpulse import (
    ClientCredentials,
    ConfigurationError,
    EventKind,
    InvalidStatusChangeError,
    ManagerSettings,
    PermissionDenied,
    SessionClosedError,
    SessionKind,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    TokenSet,
    read_journal,
)
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


def cc(idp: FakeIdP) -> ClientCredentials:
    return ClientCredentials(idp.token_url, "client", "secret")


def status_of(ms: authpulse.ManagedSession) -> SessionStatus:
    return ms.status  # a function call, so type checkers do not narrow across calls


def is_running(m: SessionManager) -> bool:
    return m.running


def kinds(m: SessionManager, sid: str) -> list[EventKind]:
    return [e.kind for e in m.timeline(sid)]


# ----------------------------------------------------------------------------- create/get


def test_create_get_and_owner_check(manager: SessionManager, idp: FakeIdP) -> None:
    ms = manager.create_session(
        "alice",
        cc(idp),
        kind="integration",
        metadata={"user_agent": "ua/1", "ip_address": "10.0.0.1", "custom": {"plan": "pro"}},
    )
    assert ms.status is SessionStatus.ACTIVE
    assert ms.record.kind is SessionKind.INTEGRATION
    assert manager.get(ms.id, owner="alice") is ms
    with pytest.raises(PermissionDenied):
        manager.get(ms.id, owner="mallory")
    assert manager.admin_get(ms.id) is ms
    with pytest.raises(SessionNotFoundError):
        manager.get("nope", owner="alice")
    assert kinds(manager, ms.id) == [EventKind.SESSION_CREATED]
    assert ms.record.metadata.custom["plan"] == "pro"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"owner": ""}, "owner"),
        ({"kind": "robot"}, "kind"),
        ({"metadata": {"colour": "red"}}, "unknown metadata"),
        ({"metadata": {"custom": {"x": [1]}}}, "custom"),
        ({"labels": ["Not Valid"]}, "labels"),
        ({"labels": "single"}, "labels"),
    ],
)
def test_create_rejects_bad_input_with_typed_errors(
    manager: SessionManager, idp: FakeIdP, kwargs: dict[str, object], match: str
) -> None:
    owner = kwargs.pop("owner", "alice")
    with pytest.raises(ConfigurationError, match=match):
        manager.create_session(owner, cc(idp), **kwargs)  # type: ignore[arg-type]
    assert manager.stats().total == 0


def test_duplicate_session_id_is_refused(manager: SessionManager, idp: FakeIdP) -> None:
    manager.create_session("a", cc(idp), session_id="s1")
    with pytest.raises(ConfigurationError, match="already exists"):
        manager.create_session("a", cc(idp), session_id="s1")


def test_list_filters_and_pages(manager: SessionManager, idp: FakeIdP, clock: FakeClock) -> None:
    ids = []
    for i in range(7):
        clock.advance(1)
        ms = manager.create_session(
            "alice" if i % 2 == 0 else "bob", cc(idp), kind="system" if i < 3 else "user"
        )
        ids.append(ms.id)
    manager.cancel(ids[0])
    assert [r.id for r in manager.list(owner="alice")] == ids[0::2]
    assert [r.id for r in manager.list(owner="alice", limit=2, offset=1)] == ids[2:6:2]
    assert [r.id for r in manager.list(status="cancelled")] == [ids[0]]
    assert [r.id for r in manager.list(kind="system", status=["ACTIVE"])] == ids[1:3]
    with pytest.raises(ConfigurationError):
        manager.list(status="sleeping")
    with pytest.raises(ConfigurationError):
        manager.list(limit=-1)


# ----------------------------------------------------------------------------- lifecycle


def test_activity_update_pause_resume_close(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = manager.create_session("alice", cc(idp))
    clock.advance(10)
    assert manager.record_activity(ms.id).last_activity_at == clock.now()
    rec = manager.update(
        ms.id, phase="draft", step="intro", metadata={"device": "phone"}, labels=["session", "vip"]
    )
    assert (rec.phase, rec.step, rec.metadata.device, rec.labels) == (
        "draft",
        "intro",
        "phone",
        ("session", "vip"),
    )
    assert manager.pause(ms.id, "user asked").status is SessionStatus.PAUSED
    assert ms.record.paused_reason == "user asked"
    with pytest.raises(InvalidStatusChangeError):
        manager.pause(ms.id)
    assert manager.resume(ms.id).status is SessionStatus.ACTIVE
    rec = manager.close(ms.id, "failed", error="upstream gone")
    assert rec.status is SessionStatus.FAILED
    assert rec.error is not None
    assert rec.error.message == "upstream gone"
    assert rec.ended_at == clock.now()
    assert "error" in rec.labels
    # terminal is terminal
    with pytest.raises(InvalidStatusChangeError):
        manager.resume(ms.id)
    with pytest.raises(InvalidStatusChangeError):
        manager.cancel(ms.id)
    with pytest.raises(InvalidStatusChangeError):
        manager.close(ms.id)
    with pytest.raises(SessionClosedError):
        manager.update(ms.id, phase="x")
    with pytest.raises(SessionClosedError):
        manager.record_activity(ms.id)
    assert kinds(manager, ms.id) == [
        EventKind.SESSION_CREATED,
        EventKind.ACTIVITY,
        EventKind.UPDATED,
        EventKind.STATUS_CHANGED,
        EventKind.PAUSED,
        EventKind.STATUS_CHANGED,
        EventKind.RESUMED,
        EventKind.STATUS_CHANGED,
        EventKind.CLOSED,
        EventKind.STATE_CHANGED,
    ]
    with pytest.raises(authpulse.UsageError):
        ms.session.token()  # the token engine of a closed session is closed too


def test_close_requires_a_terminal_status(manager: SessionManager, idp: FakeIdP) -> None:
    ms = manager.create_session("alice", cc(idp))
    with pytest.raises(ConfigurationError, match="terminal"):
        manager.close(ms.id, "PAUSED")
    with pytest.raises(ConfigurationError, match="unknown status"):
        manager.close(ms.id, "DONE")
    assert ms.status is SessionStatus.ACTIVE


def test_mutations_check_owner_when_given(manager: SessionManager, idp: FakeIdP) -> None:
    ms = manager.create_session("alice", cc(idp))
    with pytest.raises(PermissionDenied):
        manager.cancel(ms.id, owner="bob")
    assert (
        manager.cancel(ms.id, "no longer needed", owner="alice").status is SessionStatus.CANCELLED
    )


def test_secret_error_never_stored(manager: SessionManager, idp: FakeIdP) -> None:
    ms = manager.create_session("alice", cc(idp))
    ms.session.token()
    secret = ms.session.token()
    manager.close(ms.id, "FAILED", error=RuntimeError(f"boom {secret}"))
    exported = manager.export_json(ms.id)
    assert secret not in exported
    assert "RuntimeError" in exported
    assert "secret" not in exported.replace('"has_refresh_token"', "")


# ----------------------------------------------------------------------------- worker


def test_idle_timeout_pauses_then_lifetime_times_out(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = manager.create_session("alice", cc(idp))
    assert manager.tick().paused == 0
    clock.advance(29 * 60)
    manager.record_activity(ms.id)
    clock.advance(29 * 60)
    assert manager.tick().paused == 0  # activity moved the idle deadline
    clock.advance(2 * 60)
    report = manager.tick()
    assert report.paused == 1
    assert ms.status is SessionStatus.PAUSED
    assert ms.record.paused_reason == "idle"
    clock.advance(24 * 3600)
    report = manager.tick()
    assert report.timed_out == 1
    assert status_of(ms) is SessionStatus.TIMEOUT
    assert manager.list(owner="alice")[0].status is SessionStatus.TIMEOUT  # never deleted


def test_a_tick_stamps_status_changes_with_its_now(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    idle = manager.create_session("alice", cc(idp))
    paused_at = clock.now() + 31 * 60  # the clock itself stays where it is
    assert manager.tick(now=paused_at).paused == 1
    assert status_of(idle) is SessionStatus.PAUSED
    ended_at = clock.now() + 24 * 3600 + 1
    assert manager.tick(now=ended_at).timed_out == 1
    assert idle.record.ended_at == ended_at
    assert idle.machine.entered_at == ended_at  # closed at the tick's now
    stamps = {(e.kind, e.at) for e in manager.timeline(idle.id)}
    assert (EventKind.PAUSED, paused_at) in stamps
    assert (EventKind.CLOSED, ended_at) in stamps
    changes = [e.at for e in manager.timeline(idle.id) if e.kind is EventKind.STATUS_CHANGED]
    assert changes == [paused_at, ended_at]


def test_a_tick_stamps_heartbeats_with_its_now(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = manager.create_session("alice", cc(idp), probe=lambda _ms: True)
    at = clock.now() + 300
    assert manager.tick(now=at).heartbeats == 1
    assert ms.heartbeat_at == at
    beats = [e.at for e in manager.timeline(ms.id) if e.kind is EventKind.HEARTBEAT]
    assert beats == [at]


def test_requests_count_as_activity(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    api = FakeAPI(idp)
    ms = manager.create_session("alice", cc(idp))
    with ms.client(base_url=api.base_url, transport=api.transport) as client:
        for _ in range(5):
            clock.advance(25 * 60)
            assert client.get("/x").status_code == 200
            assert manager.tick().paused == 0
    assert ms.status is SessionStatus.ACTIVE
    stats = manager.stats()
    assert stats.requests == 5


def test_proactive_refresh_of_due_sessions_only(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    sessions = [manager.create_session(f"u{i}", cc(idp)) for i in range(10)]
    for ms in sessions:
        ms.session.token()
    assert idp.hits == 10
    assert manager.tick().refreshed == 0
    clock.advance(600)  # every token (600 s lifetime) is past its refresh window
    manager.pause(sessions[0].id)
    report = manager.tick()
    assert report.refreshed == 9  # paused sessions are not refreshed proactively
    assert idp.hits == 19
    assert [ms.session.generation for ms in sessions] == [1] + [2] * 9
    assert all(EventKind.TOKEN_REFRESHED in kinds(manager, ms.id) for ms in sessions[1:])


def test_failed_proactive_refresh_degrades_and_lowers_health(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    ms = manager.create_session("alice", cc(idp))
    ms.session.token()
    clock.advance(400)  # stale, still valid
    idp.set_outage(Fault(status=503))
    report = manager.tick()
    assert report.refresh_failures == 1
    assert ms.auth_state.value == "degraded"
    health = manager.health(ms.id)
    assert health.score < 100
    assert {c.name for c in health.components} >= {"refresh", "state"}
    idp.set_outage(None)
    clock.advance(60)
    assert manager.tick().refreshed == 1
    assert ms.auth_state.value == "fresh"
    assert manager.health(ms.id).score == 100


def test_stuck_refreshing_state_is_recovered(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    from authpulse import AuthEvent

    ms = manager.create_session("alice", cc(idp))
    ms.session.token()
    manager._timeline.fire(ms, AuthEvent.REFRESH_STARTED)  # a refresh that never reports back
    assert ms.auth_state.value == "refreshing"
    clock.advance(61)
    assert manager.health(ms.id).components[0].name == "state"
    report = manager.tick()
    assert report.recovered == 1
    assert ms.auth_state.value == "degraded"  # token still valid
    assert EventKind.RECOVERED in kinds(manager, ms.id)


def test_heartbeat_failures_lower_health(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    results = iter([True, False, True])
    ms = manager.create_session("alice", cc(idp), probe=lambda _ms: next(results))
    clock.advance(300)
    assert manager.tick().heartbeats == 1
    assert ms.heartbeat_ok is True
    clock.advance(300)
    report = manager.tick()
    assert report.heartbeat_failures == 1
    assert any(c.name == "heartbeat" for c in manager.health(ms.id).components)
    clock.advance(300)
    manager.tick()
    assert not any(c.name == "heartbeat" for c in manager.health(ms.id).components)


def test_http_probe_uses_the_session_auth(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    api = FakeAPI(idp)
    probe = authpulse.HttpProbe(f"{api.base_url}/health", transport=api.transport)
    ms = manager.create_session("alice", cc(idp), probe=probe)
    clock.advance(300)
    assert manager.tick().heartbeats == 1
    assert ms.heartbeat_ok is True
    assert api.authorization_seen == [True]


def test_a_crashing_tick_is_counted_and_does_not_stop_the_worker(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad_probe(_ms: authpulse.ManagedSession) -> bool:
        raise RuntimeError("probe exploded")

    ms = manager.create_session("alice", cc(idp), probe=bad_probe)
    ms.session.token()
    clock.advance(300)
    report = manager.tick()
    assert report.heartbeat_failures == 1
    manager._registry.deadlines.push(0.0, ms.id, "bogus")  # type: ignore[arg-type]
    monkeypatch.setattr("authpulse._fleet.worker.plan", None)  # the planner itself crashes
    report = manager.tick()
    assert report.errors == 1
    assert manager.tick_errors == 1
    assert any(c.name == "worker" for c in manager.health(ms.id).components)


def test_tick_with_nothing_due_pops_nothing(manager: SessionManager, idp: FakeIdP) -> None:
    for i in range(50):
        manager.create_session(f"u{i}", cc(idp))
    assert manager.due_count() == 0
    assert manager.tick().due == 0


def test_start_stop_runs_one_worker_thread_and_joins(manager: SessionManager) -> None:
    manager.start()
    workers = [t for t in threading.enumerate() if t.name == "authpulse-worker"]
    assert len(workers) == 1
    with pytest.raises(authpulse.UsageError):
        manager.start()
    manager.stop()
    assert not workers[0].is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("authpulse-worker")]


@pytest.mark.anyio
async def test_async_worker_is_one_task_and_stops(clock: FakeClock, idp: FakeIdP) -> None:
    m = SessionManager(clock=clock, async_transport=idp.async_transport)
    ms = await m.acreate_session("alice", cc(idp))
    await ms.session.atoken()
    async with m:
        assert is_running(m)
        clock.advance(600)
        report = await m.atick()
        assert report.refreshed == 1
    assert not is_running(m)
    assert (await m.alist(owner="alice"))[0].id == ms.id


# ----------------------------------------------------------------------------- recover/stats


def test_recover_reloads_from_store_and_refuses_closed(clock: FakeClock, idp: FakeIdP) -> None:
    store = authpulse.MemoryStore()
    m1 = SessionManager(store, clock=clock, transport=idp.transport)
    ms = m1.create_session("alice", cc(idp))
    m1.pause(ms.id, "crash soon")
    done = m1.create_session("bob", cc(idp))
    m1.close(done.id)
    m1.shutdown()

    m2 = SessionManager(store, clock=clock, transport=idp.transport)
    with pytest.raises(authpulse.UsageError, match="recover"):
        m2.get(ms.id, owner="alice")
    with pytest.raises(ConfigurationError, match="source"):
        m2.recover(ms.id)
    back = m2.recover(ms.id, cc(idp))
    assert back.status is SessionStatus.ACTIVE
    assert back.session.token()
    with pytest.raises(SessionClosedError):
        m2.recover(done.id, cc(idp))
    with pytest.raises(SessionNotFoundError):
        m2.recover("missing", cc(idp))
    m2.shutdown()


def test_stats_by_owner_and_kind(manager: SessionManager, idp: FakeIdP, clock: FakeClock) -> None:
    a = [manager.create_session("alice", cc(idp), kind="user") for _ in range(3)]
    b = [manager.create_session("bob", cc(idp), kind="system") for _ in range(2)]
    clock.advance(100)
    manager.close(a[0].id)
    manager.close(
        a[1].id,
        "FAILED",
        error=authpulse.TokenEndpointError("down", error_class=authpulse.ErrorClass.SERVER),
    )
    manager.cancel(b[0].id)
    s = manager.stats()
    assert (s.total, s.active, s.by_status["COMPLETED"], s.by_status["CANCELLED"]) == (5, 2, 1, 1)
    assert s.success_rate == pytest.approx(1 / 3)
    assert s.completion_rate == pytest.approx(1 / 5)
    assert s.average_duration == pytest.approx(100)
    assert s.failure_distribution == {"cancelled": 1, "server": 1}
    assert manager.stats(owner="alice").total == 3
    assert manager.stats(kind="system").total == 2
    assert manager.stats(owner="alice", kind="system").total == 0


def test_cleanup_marks_timeout_and_purge_is_the_only_deletion(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    old = manager.create_session("alice", cc(idp))
    clock.advance(7200)
    young = manager.create_session("alice", cc(idp))
    assert manager.cleanup(3600) == 1
    assert old.status is SessionStatus.TIMEOUT
    assert young.status is SessionStatus.ACTIVE
    assert manager.stats().total == 2
    assert manager.purge(older_than=3600) == 0  # ended just now
    clock.advance(3601)
    assert manager.purge(older_than=3600) == 1
    assert manager.stats().total == 1
    with pytest.raises(SessionNotFoundError):
        manager.record(old.id)


def test_export_has_timeline_and_no_secrets(manager: SessionManager, idp: FakeIdP) -> None:
    rt = idp.issue_refresh_token()
    ms = manager.create_session(
        "alice", authpulse.RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt)
    )
    token = ms.session.token()
    data = json.loads(manager.export_json(ms.id))
    assert data["session"]["owner"] == "alice"
    assert data["token"]["has_refresh_token"] is True
    assert [e["kind"] for e in data["timeline"]][:2] == ["session_created", "state_changed"]
    text = json.dumps(data)
    for secret in (token, rt, 'secret"'):
        assert secret not in text
    rotated = ms.session.token_set
    assert isinstance(rotated, TokenSet)
    assert rotated.refresh_token is not None
    assert rotated.refresh_token.get_secret_value() not in text


def test_journal_records_every_event(clock: FakeClock, idp: FakeIdP, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    m = SessionManager(clock=clock, transport=idp.transport, journal=str(path))
    ms = m.create_session("alice", cc(idp))
    m.pause(ms.id)
    m.close(ms.id)
    m.shutdown()
    events = read_journal(path)
    assert [e.kind for e in events] == [
        EventKind.SESSION_CREATED,
        EventKind.STATUS_CHANGED,
        EventKind.PAUSED,
        EventKind.STATUS_CHANGED,
        EventKind.CLOSED,
        EventKind.STATE_CHANGED,
    ]
    assert [e.to_dict() for e in events] == [e.to_dict() for e in m.timeline(ms.id)]


def test_settings_validate() -> None:
    with pytest.raises(ConfigurationError):
        ManagerSettings(idle_timeout=-1)
    with pytest.raises(ConfigurationError):
        ManagerSettings(refresh_concurrency=0)
    assert ManagerSettings(idle_timeout=None).idle_timeout is None


def test_empty_session_id_is_refused(manager: SessionManager, idp: FakeIdP) -> None:
    with pytest.raises(ConfigurationError, match="session_id"):
        manager.create_session("alice", cc(idp), session_id="")


# ----------------------------------------------------------------------------- ids

#: ids the store's lock would refuse as lock names, each with what is wrong
REFUSED_IDS = {
    "has space": "whitespace",
    "tab\there": "whitespace",
    "new\nline": "whitespace",
    "cr\r": "whitespace",
    "nbsp\u00a0x": "whitespace",
    "line\u2028sep": "whitespace",
    "esc\x1b[2J": "control character",
    "nul\x00": "control character",
    "del\x7f": "control character",
    "c1-csi\x9b31m": "control character",
    "\u202eevil": "unprintable",
    "bom\ufeff": "unprintable",
    "lone\ud800surrogate": "unprintable",
    "": "not empty",
    "x" * 201: "201 characters",
}

ACCEPTED_IDS = [
    "s1",
    "tëam:a/42",
    "user@example.com",
    "a.b.c",
    "urn:tenant:7|job=3",
    "Ωμέγα-日本語-🙂",
    "quote'\"back\\slash;semi%20",
    "x" * 128,
]


def _refuses(call: Any) -> bool:
    try:
        call()
    except ConfigurationError:
        return True
    return False


@pytest.mark.parametrize(
    "sid", list(REFUSED_IDS), ids=lambda v: ascii(v[:16]) + (f"x{len(v)}" if len(v) > 16 else "")
)
def test_ids_the_store_lock_would_refuse_are_refused_by_create_session(
    manager: SessionManager, idp: FakeIdP, sid: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"^session_id must be") as exc:
        manager.create_session("alice", cc(idp), session_id=sid)
    message = str(exc.value)
    assert REFUSED_IDS[sid] in message
    assert message.isprintable()  # an escaped excerpt at most: nothing raw
    assert message.isascii()
    assert len(message) < 200
    with pytest.raises(ConfigurationError, match=r"^lock name must be"):
        manager.store.lock(sid, ttl=30)
    # nothing stored, nothing announced, no token asked for
    assert manager.store.query() == []
    assert manager.stats().total == 0
    assert manager.list() == []
    assert idp.token_calls == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_ids_that_are_accepted_can_refresh(
    clock: FakeClock, idp: FakeIdP, tmp_path: Path, backend: str
) -> None:
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'ids.db'}"
    store = authpulse.open_store(url, clock=clock)
    m = SessionManager(store, clock=clock, transport=idp.transport, seed=1)
    try:
        for n, sid in enumerate(ACCEPTED_IDS):
            ms = m.create_session("alice", cc(idp), session_id=sid)
            assert ms.id == sid
            assert idp.validate(ms.session.token())  # the first token: through the lock
            ms.session.force_refresh()  # a refresh: the lock again, and a fenced write
            assert idp.token_calls == 2 * n + 2
            stored = store.get_token(sid)
            assert stored is not None
            assert stored.token == ms.session.token_set
            assert m.record(sid).id == sid
        assert sorted(r.id for r in store.query()) == sorted(ACCEPTED_IDS)
    finally:
        m.shutdown()
        store.close()


# every code point (surrogates too), and the characters at the edge of the rule more often
_EDGES = " \t\n\r\x0b\x0c\x1b\x7f\x85\x9b\xa0\u1680\u2007\u2028\u202e\u3000\ufeff\ud800"
_ID_TEXT = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(_EDGES), max_size=128
) | st.sampled_from([*ACCEPTED_IDS, *REFUSED_IDS, "x" * 129, "x" * 200])


def _keyed(store: authpulse.MemoryStore, idp: FakeIdP, key: str) -> bool:
    """Whether a Session takes ``key`` as its store key."""
    try:
        session = authpulse.Session(cc(idp), store=store, store_key=key)
    except ConfigurationError:
        return False
    session.close()
    return True


@settings(max_examples=300, deadline=None)
@given(_ID_TEXT)
def test_create_session_and_the_store_lock_agree_on_every_id(text: str) -> None:
    clock = FakeClock()
    idp = FakeIdP(clock=clock)
    store = authpulse.MemoryStore(clock=clock)
    m = SessionManager(store, clock=clock, transport=idp.transport)
    try:
        created = not _refuses(lambda: m.create_session("alice", cc(idp), session_id=text))
        locked = not _refuses(lambda: store.lock(text, ttl=30))
        if len(text) <= 128:
            # one rule: the manager, the lock and a Session's store key say the same
            assert created is locked, ascii(text)
            assert created is _keyed(store, idp, text), ascii(text)
        else:  # a session id is at most 128 characters; a lock name up to 200
            assert not created
            assert locked is (len(text) <= 200)
        if created:  # and its refresh lock can be taken
            assert not _refuses(lambda: store.lock(f"refresh:{text}", ttl=30)), ascii(text)
        assert len(store.query()) == (1 if created else 0)
    finally:
        m.shutdown()


def test_a_session_with_a_store_checks_its_key_where_given(idp: FakeIdP) -> None:
    store = authpulse.MemoryStore()
    for key in ("has space", "esc\x1b", "", "k" * 193):
        with pytest.raises(ConfigurationError, match=r"^store_key must be"):
            authpulse.Session(cc(idp), store=store, store_key=key)
        with pytest.raises(ConfigurationError, match=r"^store_key must be"):
            authpulse.Session(cc(idp), store_key=key)  # checked where given, store or not
    with pytest.raises(ConfigurationError, match=r"^store_key must be"):
        authpulse.Session(cc(idp), store=store, store_key=42)  # type: ignore[arg-type]
    # without store_key, the name is the store key: it must make a lock name too
    with pytest.raises(ConfigurationError, match=r"^name \(the store key"):
        authpulse.Session(cc(idp), store=store, name="billing api")
    # ... but only then: a name is just a label beside a store_key, or without a store
    authpulse.Session(cc(idp), store=store, name="billing api", store_key="billing-api").close()
    authpulse.Session(cc(idp), name="billing api").close()
    # the longest key whose lock name ("refresh:" + key) the store takes: it refreshes
    session = authpulse.Session(cc(idp), store=store, store_key="k" * 192, transport=idp.transport)
    assert idp.validate(session.token())
    assert store.get_token("k" * 192) is not None
    session.close()


def test_recover_refuses_a_stored_id_the_lock_would_refuse(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    now = clock.now()
    record = authpulse.SessionRecord(  # stored by another writer, without the check
        id="old id",
        owner="alice",
        kind=SessionKind.USER,
        status=SessionStatus.ACTIVE,
        created_at=now,
        last_activity_at=now,
    )
    manager.store.put(record, expected_version=None)
    with pytest.raises(ConfigurationError, match=r"^session_id must be .* whitespace"):
        manager.recover("old id", cc(idp))
    assert idp.token_calls == 0
    # it can still be managed from the store: ended, and purged later
    assert manager.cancel_stored("old id", "unusable id").status is SessionStatus.CANCELLED


# ----------------------------------------------------------------------------- cache identity


def test_sessions_of_one_owner_never_share_cached_answers(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    """An admin-scoped and a read-only session of the same owner, one cache:
    each gets its own answer, the API is asked once per session."""
    answers: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answers.append(len(answers) + 1)
        return httpx.Response(
            200, json={"answer": answers[-1]}, headers={"cache-control": "max-age=600"}
        )

    idp.clients.update({"admin": "s1", "reader": "s2"})
    api = FakeAPI(idp, handler=handler)
    cache = authpulse.ResponseCache()
    admin = manager.create_session(
        "alice", ClientCredentials(idp.token_url, "admin", "s1", scope="admin")
    )
    reader = manager.create_session(
        "alice", ClientCredentials(idp.token_url, "reader", "s2", scope="read")
    )
    seen = []
    for ms in (admin, reader, admin, reader):
        with ms.client(base_url=api.base_url, transport=api.transport, cache=cache) as client:
            seen.append(client.get("/items").json()["answer"])
    assert seen == [1, 2, 1, 2]
    assert api.calls == 2


# ----------------------------------------------------------------------------- stop bounds


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "authpulse-worker"]


def _hanging(clock: FakeClock, started: threading.Semaphore, release: threading.Event) -> Any:
    def fetch(_current: TokenSet | None) -> TokenSet:
        started.release()
        release.wait(30)
        now = clock.now()
        return TokenSet(access_token=SecretStr("t"), issued_at=now, expires_at=now + 3600)

    return authpulse.CallableSource(fetch)


def test_stop_returns_within_its_timeout_while_refreshes_hang_and_no_second_worker(
    clock: FakeClock,
) -> None:
    m = SessionManager(clock=clock, settings=ManagerSettings(tick_interval=0.01), seed=1)
    started, release = threading.Semaphore(0), threading.Event()
    now = clock.now()
    due = TokenSet(access_token=SecretStr("old"), issued_at=now - 3590, expires_at=now + 10)
    for i in range(6):  # more than refresh_concurrency (4): two are queued
        m.create_session(f"u{i}", _hanging(clock, started, release), token=due)
    try:
        m.start()
        for _ in range(4):
            assert started.acquire(timeout=10)  # four refreshes hang on the pool
        begun = time.monotonic()
        m.stop(timeout=0.5)
        assert time.monotonic() - begun < 0.5 + 2.0  # was: until every refresh ended
        assert not m.running
        assert len(_workers()) == 1  # still finishing its tick
        with pytest.raises(authpulse.UsageError, match="still finishing"):
            m.start()
        assert len(_workers()) == 1
    finally:
        release.set()
    m.stop(timeout=10)
    assert _workers() == []
    m.start()
    assert len(_workers()) == 1
    m.shutdown()
    assert _workers() == []


def test_stop_returns_within_its_timeout_while_a_probe_hangs(
    clock: FakeClock, idp: FakeIdP
) -> None:
    m = SessionManager(
        clock=clock,
        transport=idp.transport,
        settings=ManagerSettings(tick_interval=0.01, heartbeat_interval=60),
    )
    entered, release = threading.Event(), threading.Event()

    def slow_probe(_ms: authpulse.ManagedSession) -> bool:
        entered.set()
        return release.wait(30)

    m.create_session("alice", cc(idp), probe=slow_probe)
    clock.advance(61)
    try:
        m.start()
        assert entered.wait(10)
        begun = time.monotonic()
        m.stop(timeout=0.3)
        assert time.monotonic() - begun < 0.3 + 2.0
        with pytest.raises(authpulse.UsageError):
            m.start()
    finally:
        release.set()
    m.stop(timeout=10)
    m.start()
    assert len(_workers()) == 1
    m.shutdown()


@pytest.mark.anyio
async def test_astop_returns_within_its_timeout_and_astart_never_runs_two(
    clock: FakeClock, idp: FakeIdP
) -> None:
    m = SessionManager(
        clock=clock,
        async_transport=idp.async_transport,
        settings=ManagerSettings(tick_interval=0.01, heartbeat_interval=60),
    )
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_probe(_ms: authpulse.ManagedSession) -> bool:
        entered.set()
        await release.wait()
        return True

    await m.acreate_session("alice", cc(idp), probe=slow_probe)
    clock.advance(61)
    await m.astart()
    await asyncio.wait_for(entered.wait(), 10)
    begun = time.monotonic()
    await m.astop(timeout=0.3)
    assert time.monotonic() - begun < 0.3 + 2.0
    assert not m.running
    with pytest.raises(authpulse.UsageError):
        await m.astart()  # the cancelled tick has not unwound yet
    for _ in range(100):  # it does within a few turns of the loop
        await asyncio.sleep(0)
        with contextlib.suppress(authpulse.UsageError):
            await m.astart()
            break
    assert _is_running(m)
    await m.ashutdown()
    assert not _is_running(m)


def test_http_probes_carry_the_token_only_over_https_or_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http:// to a host that is not loopback"):
        authpulse.HttpProbe("http://api.example.com/health")
    assert authpulse.HttpProbe("http://127.0.0.1:8080/health").url.startswith("http://127")
    assert authpulse.HttpProbe("https://api.example.com/health")
    insecure = authpulse.HttpProbe("http://api.internal/health", allow_insecure_http=True)
    assert insecure.url == "http://api.internal/health"


def _is_running(manager: authpulse.SessionManager) -> bool:
    # read through a call so the type checker does not carry the narrowing of an earlier assert
    return manager.running


@pytest.mark.anyio
async def test_apurge_honours_now_and_progress(clock: FakeClock, idp: FakeIdP) -> None:
    m = SessionManager(clock=clock)
    ms = await m.acreate_session("alice", cc(idp))
    await m.aclose(ms.id)
    seen: list[tuple[int, int]] = []
    assert await m.apurge(3600, progress=lambda d, t: seen.append((d, t))) == 0
    assert seen == []  # nothing ended an hour ago: no candidate
    assert await m.apurge(3600, now=clock.now() + 3600, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 1)]
    assert m.list() == []


def test_a_generated_session_id_never_starts_with_a_dash(
    monkeypatch: pytest.MonkeyPatch, idp: FakeIdP
) -> None:
    """An id such as ``-AbC…`` would be read as an option by ``authpulse health ID``."""
    import secrets

    drawn = iter(["-startsWithDash1", "_fineUnderscore1"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    m = SessionManager()
    ms = m.create_session("alice", cc(idp))
    assert ms.id == "_fineUnderscore1"
    m.shutdown()
